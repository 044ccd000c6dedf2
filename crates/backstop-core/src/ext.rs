//! Adapters every service gets: [`ServiceExt`] maps responses and errors, lifts a plain
//! error into the stack's [`Error`], and boxes a stack into one nameable type.

use crate::{BoxService, Error, Rejected, Service};
use std::fmt;
use std::future::Future;

/// Adapters on every [`Service`].
///
/// ```
/// use backstop_core::{BoxService, Error, Service, ServiceExt, service_fn};
///
/// // A stack stored in a struct field: one named type, whatever its layers.
/// struct Gateway {
///     stack: BoxService<String, usize, Error<std::io::Error>>,
/// }
///
/// let gateway = Gateway {
///     stack: service_fn(|prompt: String| async move { Ok::<_, std::io::Error>(prompt) })
///         .map_response(|answer| answer.len())
///         .lift()
///         .boxed(),
/// };
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(gateway.stack.call("four".into()).await.unwrap(), 4);
/// # });
/// ```
pub trait ServiceExt<Req>: Service<Req> + Sized {
    /// Maps every error with `f`.
    fn map_err<F, E2>(self, f: F) -> MapErr<Self, F>
    where
        F: Fn(Self::Error) -> E2 + Send + Sync,
    {
        MapErr { inner: self, f }
    }

    /// Maps every successful response with `f`.
    fn map_response<F, T2>(self, f: F) -> MapResponse<Self, F>
    where
        F: Fn(Self::Response) -> T2 + Send + Sync,
    {
        MapResponse { inner: self, f }
    }

    /// Lifts this service's own error `E` into [`Error<E>`], the error every Backstop
    /// layer above it then shares. Call it once, on the service at the bottom of a stack.
    fn lift(self) -> Lifted<Self, Req> {
        MapErr {
            inner: self,
            f: Error::inner_error,
        }
    }

    /// Boxes the service into a [`BoxService`]: one type for any stack, cheap to clone
    /// (clones share the service and its state).
    fn boxed(self) -> BoxService<Req, Self::Response, Self::Error>
    where
        Self: 'static,
        Req: Send + 'static,
    {
        BoxService::new(self)
    }
}

impl<S: Service<Req>, Req> ServiceExt<Req> for S {}

/// A service whose own error is lifted into [`Error`], made by [`ServiceExt::lift`].
pub type Lifted<S, Req> =
    MapErr<S, fn(<S as Service<Req>>::Error) -> Error<<S as Service<Req>>::Error>>;

// A mapping service holds the inner service and the function; its debug output shows
// the inner service only, so the function need not be `Debug`.
macro_rules! mapping_service {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name<S, F> {
            inner: S,
            f: F,
        }

        impl<S: fmt::Debug, F> fmt::Debug for $name<S, F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("inner", &self.inner)
                    .finish()
            }
        }
    };
}

mapping_service!(
    /// A service whose errors are mapped, made by [`ServiceExt::map_err`] and
    /// [`ServiceExt::lift`].
    MapErr
);

mapping_service!(
    /// A service whose responses are mapped, made by [`ServiceExt::map_response`].
    MapResponse
);

impl<S, F, E2, Req> Service<Req> for MapErr<S, F>
where
    S: Service<Req>,
    F: Fn(S::Error) -> E2 + Send + Sync,
{
    type Response = S::Response;
    type Error = E2;

    fn call(&self, req: Req) -> impl Future<Output = Result<S::Response, E2>> + Send {
        let call = self.inner.call(req);
        async move { call.await.map_err(&self.f) }
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}

impl<S, F, T2, Req> Service<Req> for MapResponse<S, F>
where
    S: Service<Req>,
    F: Fn(S::Response) -> T2 + Send + Sync,
{
    type Response = T2;
    type Error = S::Error;

    fn call(&self, req: Req) -> impl Future<Output = Result<T2, S::Error>> + Send {
        let call = self.inner.call(req);
        async move { call.await.map(&self.f) }
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
