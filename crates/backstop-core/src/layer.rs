//! Middleware: [`Layer`]s wrap a [`Service`](crate::Service), [`Stack`] composes them.

use std::fmt;

/// Wraps an inner service in another service that adds behaviour (a limit, a breaker, a
/// cache…). Mirrors `tower::Layer`.
///
/// ```
/// use backstop_core::{Layer, Service, service_fn};
///
/// /// Adds one to every response of the inner service.
/// struct PlusOne;
/// struct PlusOneService<S>(S);
///
/// impl<S> Layer<S> for PlusOne {
///     type Service = PlusOneService<S>;
///     fn layer(&self, inner: S) -> Self::Service {
///         PlusOneService(inner)
///     }
/// }
///
/// impl<S: Service<u32, Response = u32>> Service<u32> for PlusOneService<S> {
///     type Response = u32;
///     type Error = S::Error;
///     async fn call(&self, req: u32) -> Result<u32, S::Error> {
///         Ok(self.0.call(req).await? + 1)
///     }
/// }
///
/// let svc = PlusOne.layer(service_fn(|n: u32| async move { Ok::<_, ()>(n) }));
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(svc.call(1).await, Ok(2));
/// # });
/// ```
pub trait Layer<S> {
    /// The service produced by wrapping `S`.
    type Service;

    /// Wraps `inner`.
    fn layer(&self, inner: S) -> Self::Service;
}

impl<L, S> Layer<S> for &L
where
    L: Layer<S> + ?Sized,
{
    type Service = L::Service;

    fn layer(&self, inner: S) -> Self::Service {
        (**self).layer(inner)
    }
}

/// The layer that returns its inner service unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<S> Layer<S> for Identity {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

/// Two layers applied one around the other: `Outer(Inner(service))`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chain<Outer, Inner> {
    outer: Outer,
    inner: Inner,
}

impl<Outer, Inner> Chain<Outer, Inner> {
    /// Applies `inner` first, then wraps the result in `outer`.
    pub fn new(outer: Outer, inner: Inner) -> Self {
        Self { outer, inner }
    }
}

impl<S, Outer, Inner> Layer<S> for Chain<Outer, Inner>
where
    Inner: Layer<S>,
    Outer: Layer<Inner::Service>,
{
    type Service = Outer::Service;

    fn layer(&self, service: S) -> Self::Service {
        self.outer.layer(self.inner.layer(service))
    }
}

/// Lifts a closure `Fn(S) -> T` into a [`Layer`].
pub fn layer_fn<F>(f: F) -> LayerFn<F> {
    LayerFn { f }
}

/// A [`Layer`] made from a closure by [`layer_fn`].
#[derive(Clone, Copy)]
pub struct LayerFn<F> {
    f: F,
}

impl<F, S, Out> Layer<S> for LayerFn<F>
where
    F: Fn(S) -> Out,
{
    type Service = Out;

    fn layer(&self, inner: S) -> Out {
        (self.f)(inner)
    }
}

impl<F> fmt::Debug for LayerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// Builds a service from layers, outermost first, like `tower::ServiceBuilder`.
///
/// `Stack::new().layer(a).layer(b).service(inner)` yields `a(b(inner))`: a request passes
/// through `a`, then `b`, then reaches `inner`; the response travels back the same way.
///
/// ```
/// use backstop_core::{Service, Stack, layer_fn, service_fn};
/// use std::sync::Arc;
///
/// let stack = Stack::new()
///     .layer(layer_fn(|inner| inner)) // e.g. a rate limiter
///     .layer(layer_fn(|inner| inner)) // e.g. a circuit breaker
///     .service(service_fn(|prompt: String| async move {
///         Ok::<_, std::io::Error>(prompt.len())
///     }));
/// let shared = Arc::new(stack); // one stack, many callers
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(shared.call("hello".to_string()).await.unwrap(), 5);
/// # });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Stack<L> {
    layers: L,
}

impl Stack<Identity> {
    /// An empty stack.
    pub fn new() -> Self {
        Self { layers: Identity }
    }
}

impl Default for Stack<Identity> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L> Stack<L> {
    /// Adds `layer` inside every layer added so far.
    pub fn layer<T>(self, layer: T) -> Stack<Chain<L, T>> {
        Stack {
            layers: Chain::new(self.layers, layer),
        }
    }

    /// Adds `layer` only when it is `Some`, so optional features can be switched by config.
    pub fn option_layer<T>(self, layer: Option<T>) -> Stack<Chain<L, Option<T>>> {
        self.layer(layer)
    }

    /// Wraps `service` in every layer of the stack.
    pub fn service<S>(&self, service: S) -> L::Service
    where
        L: Layer<S>,
    {
        self.layers.layer(service)
    }

    /// The composed layer, to be applied later or nested into another stack.
    pub fn into_inner(self) -> L {
        self.layers
    }
}

impl<S, L: Layer<S>> Layer<S> for Stack<L> {
    type Service = L::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.layers.layer(inner)
    }
}

/// An absent layer leaves the service as it is; a present one wraps it.
impl<S, L: Layer<S>> Layer<S> for Option<L> {
    type Service = Either<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match self {
            Some(layer) => Either::Left(layer.layer(inner)),
            None => Either::Right(inner),
        }
    }
}

/// One of two services with the same request, response and error types.
#[derive(Debug, Clone, Copy)]
pub enum Either<A, B> {
    /// The first kind.
    Left(A),
    /// The second kind.
    Right(B),
}

impl<A, B, Req> crate::Service<Req> for Either<A, B>
where
    A: crate::Service<Req>,
    B: crate::Service<Req, Response = A::Response, Error = A::Error>,
    Req: Send,
{
    type Response = A::Response;
    type Error = A::Error;

    async fn call(&self, req: Req) -> Result<A::Response, A::Error> {
        match self {
            Either::Left(a) => a.call(req).await,
            Either::Right(b) => b.call(req).await,
        }
    }

    fn readiness(&self) -> Result<(), crate::Rejected> {
        match self {
            Either::Left(a) => a.readiness(),
            Either::Right(b) => b.readiness(),
        }
    }
}
