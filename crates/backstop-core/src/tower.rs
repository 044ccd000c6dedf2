//! Bridges to and from `tower` (feature `tower`), so axum, tonic and hyper users get every
//! Backstop layer, and Backstop stacks can wrap any tower service.
//!
//! - [`IntoTower`]: a Backstop [`Service`] as a `tower::Service`. Its `poll_ready` follows
//!   [`Service::readiness`]: a full bulkhead, an empty limiter or an open circuit is "not
//!   ready", so tower's `LoadShed` sheds in front of it and `Buffer` and balancers wait or
//!   route around it. Clones share the one service, so a limit or circuit is shared by
//!   every clone — unlike tower's own `RateLimit`, whose clones each get their own budget.
//! - [`FromTower`]: a `tower::Service` as a Backstop [`Service`]. Each call clones the
//!   tower service and waits for `poll_ready` on the clone, the pattern tower documents
//!   for sharing a service.
//! - [`TowerLayer`]: any Backstop [`Layer`] as a `tower::Layer`, usable in
//!   `tower::ServiceBuilder`.
//!
//! ```
//! use backstop_core::tower::TowerLayer;
//! use backstop_core::{Identity, layer_fn};
//! use tower::{ServiceBuilder, ServiceExt as _};
//!
//! let svc = ServiceBuilder::new()
//!     .layer(TowerLayer::new(Identity)) // e.g. a Backstop BreakerLayer
//!     .service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n + 1) });
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! assert_eq!(svc.oneshot(1).await, Ok(2));
//! # });
//! ```

use crate::{Layer, Service};
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A Backstop [`Service`] seen as a `tower::Service`.
pub struct IntoTower<S> {
    inner: Arc<S>,
}

impl<S> IntoTower<S> {
    /// Wraps `service`; clones of the result share it.
    pub fn new(service: S) -> Self {
        Self {
            inner: Arc::new(service),
        }
    }

    /// Wraps an already shared service.
    pub fn from_arc(service: Arc<S>) -> Self {
        Self { inner: service }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Clone for IntoTower<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> fmt::Debug for IntoTower<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoTower")
            .field("inner", &std::any::type_name::<S>())
            .finish()
    }
}

/// The longest a not-ready [`IntoTower`] waits before checking readiness again.
pub const READINESS_RECHECK: Duration = Duration::from_millis(50);

/// Wakes `waker` after `wait`, on the current Tokio runtime if there is one, otherwise at
/// once (the caller then polls again: a spin, but never a hang).
fn wake_after(waker: Waker, wait: Duration) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                tokio::time::sleep(wait).await;
                waker.wake();
            });
        }
        Err(_) => waker.wake(),
    }
}

impl<S, Req> ::tower::Service<Req> for IntoTower<S>
where
    S: Service<Req> + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    /// Boxed: a Backstop service's future type cannot be named, so crossing into tower's
    /// associated-type world costs one allocation per call.
    type Future = crate::BoxFuture<'static, Result<S::Response, S::Error>>;

    /// Pending while the service reports that a call now would be refused. The task is
    /// woken again when the refusal's `retry_after` has passed (capped at
    /// [`READINESS_RECHECK`]), so a `Buffer` worker rechecks without spinning. Nothing is
    /// reserved: `call` still decides, so a racing caller may take the room first.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.readiness() {
            Ok(()) => Poll::Ready(Ok(())),
            Err(rejected) => {
                let wait = rejected
                    .retry_after
                    .unwrap_or(READINESS_RECHECK)
                    .clamp(Duration::from_millis(1), READINESS_RECHECK);
                wake_after(cx.waker().clone(), wait);
                Poll::Pending
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.call(req).await })
    }
}

/// A `tower::Service` seen as a Backstop [`Service`].
#[derive(Clone)]
pub struct FromTower<T> {
    inner: T,
}

impl<T> FromTower<T> {
    /// Wraps `service`, which is cloned for every call.
    pub fn new(service: T) -> Self {
        Self { inner: service }
    }

    /// The wrapped service.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T> fmt::Debug for FromTower<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromTower")
            .field("inner", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T, Req> Service<Req> for FromTower<T>
where
    T: ::tower::Service<Req> + Clone + Send + Sync,
    T::Future: Send,
    Req: Send,
{
    type Response = T::Response;
    type Error = T::Error;

    async fn call(&self, req: Req) -> Result<T::Response, T::Error> {
        let mut service = self.inner.clone();
        poll_fn(|cx| service.poll_ready(cx)).await?;
        service.call(req).await
    }
}

/// A Backstop [`Layer`] seen as a `tower::Layer`: the tower service it wraps is adapted
/// with [`FromTower`], and the result with [`IntoTower`].
#[derive(Clone, Copy, Debug)]
pub struct TowerLayer<L> {
    layer: L,
}

impl<L> TowerLayer<L> {
    /// Wraps a Backstop layer.
    pub fn new(layer: L) -> Self {
        Self { layer }
    }
}

impl<L, S> ::tower::Layer<S> for TowerLayer<L>
where
    L: Layer<FromTower<S>>,
{
    type Service = IntoTower<L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        IntoTower::new(self.layer.layer(FromTower::new(inner)))
    }
}
