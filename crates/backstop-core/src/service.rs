//! The one request/response abstraction every Backstop layer wraps.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::Rejected;

/// An asynchronous function from a request to a response, shared behind `&self`.
///
/// This is a transport-free cousin of `tower::Service`: there is no `poll_ready` and no
/// `&mut self`, so one service value is shared by every caller (usually behind an
/// [`Arc`]) and all of its state, such as a rate limit or a circuit, is shared too.
/// Backpressure is expressed by the future itself: a limiter's future waits or fails.
/// [`readiness`](Service::readiness) lets a caller (and the tower bridge) ask, without
/// charging anything, whether a call made now would be refused.
///
/// ```
/// use backstop_core::{Service, service_fn};
///
/// let double = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) });
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(double.call(21).await, Ok(42));
/// # });
/// ```
pub trait Service<Req>: Send + Sync {
    /// What a successful call returns.
    type Response;
    /// What a failed call returns.
    type Error;

    /// Handles one request. The returned future is `Send` so it can be spawned.
    fn call(&self, req: Req) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;

    /// `Err` when a call made now would be refused before any work starts (a full
    /// bulkhead, an empty direct limiter, an open circuit), with the refusal it would get.
    ///
    /// It charges nothing and reserves nothing, so a call made after `Ok` may still be
    /// refused by a racing caller. Layers report their own state, then their inner
    /// service's. The default is always ready.
    fn readiness(&self) -> Result<(), Rejected> {
        Ok(())
    }
}

// A shared, boxed or borrowed service is the service it points to.
macro_rules! forward_service {
    ($($pointer:ty),+) => {$(
        impl<S, Req> Service<Req> for $pointer
        where
            S: Service<Req> + ?Sized,
        {
            type Response = S::Response;
            type Error = S::Error;

            fn call(
                &self,
                req: Req,
            ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send {
                (**self).call(req)
            }

            fn readiness(&self) -> Result<(), Rejected> {
                (**self).readiness()
            }
        }
    )+};
}

forward_service!(Arc<S>, Box<S>, &S);

/// Lifts an async closure `Fn(Req) -> Future<Output = Result<T, E>>` into a [`Service`].
///
/// ```
/// use backstop_core::{Service, service_fn};
///
/// let greet = service_fn(|name: String| async move {
///     Ok::<_, std::io::Error>(format!("hello, {name}"))
/// });
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(greet.call("agent".into()).await.unwrap(), "hello, agent");
/// # });
/// ```
pub fn service_fn<F, Req, Fut, T, E>(f: F) -> ServiceFn<F, Req>
where
    F: Fn(Req) -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send,
{
    ServiceFn {
        f,
        _request: PhantomData,
    }
}

/// A [`Service`] made from a closure by [`service_fn`].
pub struct ServiceFn<F, Req> {
    f: F,
    // `fn(Req)` keeps the service `Send + Sync` whatever `Req` is.
    _request: PhantomData<fn(Req)>,
}

impl<F: Clone, Req> Clone for ServiceFn<F, Req> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _request: PhantomData,
        }
    }
}

impl<F, Req> fmt::Debug for ServiceFn<F, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F, Req, Fut, T, E> Service<Req> for ServiceFn<F, Req>
where
    F: Fn(Req) -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send,
{
    type Response = T;
    type Error = E;

    fn call(&self, req: Req) -> impl Future<Output = Result<T, E>> + Send {
        (self.f)(req)
    }
}
