//! [`PoolLayer`]: run each call of a [`Service`] with a checked-out connection.

use std::fmt;

use crate::conn::PoolManager;
use backstop_core::{Layer, Service};

use crate::error::PoolError;
use crate::pool::{Pool, Pooled};

/// The request the inner service receives: the caller's request plus a connection.
pub struct Leased<M: PoolManager, Req> {
    /// A connection checked out for this call; it returns to the pool when dropped.
    pub conn: Pooled<M>,
    /// The caller's request.
    pub request: Req,
}

impl<M: PoolManager, Req: fmt::Debug> fmt::Debug for Leased<M, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leased")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// Error of a [`PoolService`]: the checkout failed, or the inner service failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolServiceError<E, ME> {
    /// No connection could be checked out.
    #[error(transparent)]
    Pool(PoolError<ME>),
    /// The inner service failed.
    #[error(transparent)]
    Service(E),
}

/// Layer that checks a connection out for every call and marks it broken when the
/// inner service's error says so (`is_broken`), so the pool closes it instead of
/// handing it out again.
///
/// ```
/// use backstop_core::{Layer, Service, service_fn};
/// use backstop_pool::{Leased, Manager, Metrics, Pool, PoolConfig, PoolLayer, RecycleResult};
///
/// struct Counter;
/// impl Manager for Counter {
///     type Type = u64;
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<u64, std::io::Error> { Ok(0) }
///     async fn recycle(&self, _: &mut u64, _: &Metrics) -> RecycleResult<std::io::Error> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Pool::new(Counter, PoolConfig::default()).unwrap();
/// let layer = PoolLayer::new(pool, |_: &std::io::Error| true);
/// let svc = layer.layer(service_fn(|mut leased: Leased<Counter, u64>| async move {
///     *leased.conn += leased.request;
///     Ok::<_, std::io::Error>(*leased.conn)
/// }));
/// assert_eq!(svc.call(5).await.unwrap(), 5);
/// assert_eq!(svc.call(2).await.unwrap(), 7, "the same connection was reused");
/// # }
/// ```
pub struct PoolLayer<M: PoolManager, C> {
    pool: Pool<M>,
    is_broken: C,
}

impl<M: PoolManager, C> PoolLayer<M, C> {
    /// A layer over `pool`; `is_broken` classifies inner errors that mean the
    /// connection must not be reused.
    pub fn new(pool: Pool<M>, is_broken: C) -> Self {
        Self { pool, is_broken }
    }
}

impl<M: PoolManager, C: Clone> Clone for PoolLayer<M, C> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            is_broken: self.is_broken.clone(),
        }
    }
}

impl<M: PoolManager, C> fmt::Debug for PoolLayer<M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolLayer")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl<S, M: PoolManager, C: Clone> Layer<S> for PoolLayer<M, C> {
    type Service = PoolService<S, M, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PoolService {
            inner,
            pool: self.pool.clone(),
            is_broken: self.is_broken.clone(),
        }
    }
}

/// The service [`PoolLayer`] produces.
pub struct PoolService<S, M: PoolManager, C> {
    inner: S,
    pool: Pool<M>,
    is_broken: C,
}

impl<S, M: PoolManager, C> fmt::Debug for PoolService<S, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolService")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl<S, M, C, Req> Service<Req> for PoolService<S, M, C>
where
    S: Service<Leased<M, Req>>,
    M: PoolManager,
    M::Error: Send,
    C: Fn(&S::Error) -> bool + Send + Sync,
    Req: Send,
{
    type Response = S::Response;
    type Error = PoolServiceError<S::Error, M::Error>;

    async fn call(&self, request: Req) -> Result<Self::Response, Self::Error> {
        let conn = self
            .pool
            .get_labeled("PoolLayer")
            .await
            .map_err(PoolServiceError::Pool)?;
        let flag = Pooled::broken_flag(&conn);
        match self.inner.call(Leased { conn, request }).await {
            Ok(response) => Ok(response),
            Err(error) => {
                if (self.is_broken)(&error) {
                    flag.set();
                }
                Err(PoolServiceError::Service(error))
            }
        }
    }
}
