//! [`BoxService`]: any stack as one nameable, cheaply cloned type.

use crate::{Rejected, Service};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future borrowing the service that made it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Service`] that [`BoxService`] stores.
trait DynService<Req, T, E>: Send + Sync {
    fn call_boxed(&self, req: Req) -> BoxFuture<'_, Result<T, E>>;
    fn readiness(&self) -> Result<(), Rejected>;
}

impl<S, Req> DynService<Req, S::Response, S::Error> for S
where
    S: Service<Req>,
    Req: 'static,
{
    fn call_boxed(&self, req: Req) -> BoxFuture<'_, Result<S::Response, S::Error>> {
        Box::pin(self.call(req))
    }

    fn readiness(&self) -> Result<(), Rejected> {
        Service::readiness(self)
    }
}

/// Any service from `Req` to `Result<T, E>`, type-erased and shared.
///
/// Clones share one service, so a limiter or circuit inside is shared by every clone. Each
/// call costs one allocation for its future. Made by
/// [`ServiceExt::boxed`](crate::ServiceExt::boxed).
///
/// ```
/// use backstop_core::{BoxService, Service, ServiceExt, service_fn};
///
/// let stacks: Vec<BoxService<u32, u32, ()>> = vec![
///     service_fn(|n: u32| async move { Ok(n + 1) }).boxed(),
///     service_fn(|n: u32| async move { Ok(n * 2) }).boxed(),
/// ];
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(stacks[0].call(3).await, Ok(4));
/// assert_eq!(stacks[1].clone().call(3).await, Ok(6));
/// # });
/// ```
pub struct BoxService<Req, T, E> {
    inner: Arc<dyn DynService<Req, T, E>>,
}

impl<Req, T, E> BoxService<Req, T, E> {
    /// Boxes `service`.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Req, Response = T, Error = E> + 'static,
        Req: Send + 'static,
    {
        Self {
            inner: Arc::new(service),
        }
    }
}

impl<Req, T, E> Clone for BoxService<Req, T, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Req, T, E> fmt::Debug for BoxService<Req, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxService").finish_non_exhaustive()
    }
}

impl<Req, T, E> Service<Req> for BoxService<Req, T, E> {
    type Response = T;
    type Error = E;

    fn call(&self, req: Req) -> impl Future<Output = Result<T, E>> + Send {
        self.inner.call_boxed(req)
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
