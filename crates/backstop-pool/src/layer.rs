//! [`PoolLayer`]: run each call of a [`Service`] with a checked-out connection.

use std::fmt;

use crate::conn::PoolManager;
use backstop_core::{Layer, RejectKind, Rejected, Service, StackError, in_span};

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

/// Layer that checks a connection out for every call.
///
/// `PoolLayer::new(pool)` hands each call a [`Leased`] connection; [`classify`]
/// (`PoolLayer::classify`) says which inner errors mean the connection is broken, so the
/// pool closes it instead of handing it out again. The service's error is the inner
/// service's own (`S::Error: StackError`): a checkout that timed out is
/// [`StackError::rejected`] ([`RejectKind::PoolExhausted`]), a closed pool
/// [`RejectKind::Closed`], a failed connection [`StackError::backend`], a panicking
/// manager [`StackError::panicked`].
///
/// [`classify`]: PoolLayer::classify
///
/// ```
/// use backstop_core::{Layer, Service, ServiceExt, service_fn};
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
/// let layer = PoolLayer::new(pool).classify(|_: &backstop_core::Error<std::io::Error>| true);
/// let svc = layer.layer(service_fn(|mut leased: Leased<Counter, u64>| async move {
///     *leased.conn += leased.request;
///     Ok::<_, std::io::Error>(*leased.conn)
/// }).lift());
/// assert_eq!(svc.call(5).await.unwrap(), 5);
/// assert_eq!(svc.call(2).await.unwrap(), 7, "the same connection was reused");
/// # }
/// ```
pub struct PoolLayer<M: PoolManager, C = NeverBroken> {
    pool: Pool<M>,
    is_broken: C,
}

/// The default classifier of a [`PoolLayer`]: no error breaks the connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverBroken;

/// Says whether an inner service's error means its connection must not be reused: a
/// closure `Fn(&E) -> bool`, or [`NeverBroken`].
pub trait BrokenClassifier<E>: Send + Sync {
    /// `true` when the connection the call used is broken.
    fn is_broken(&self, error: &E) -> bool;
}

impl<E, F: Fn(&E) -> bool + Send + Sync> BrokenClassifier<E> for F {
    fn is_broken(&self, error: &E) -> bool {
        self(error)
    }
}

impl<E> BrokenClassifier<E> for NeverBroken {
    fn is_broken(&self, _: &E) -> bool {
        false
    }
}

impl<M: PoolManager> PoolLayer<M> {
    /// A layer over `pool` that never marks connections broken until
    /// [`classify`](PoolLayer::classify) says otherwise.
    pub fn new(pool: Pool<M>) -> Self {
        Self {
            pool,
            is_broken: NeverBroken,
        }
    }
}

impl<M: PoolManager, C> PoolLayer<M, C> {
    /// Marks the connection broken (closed, not reused) when `is_broken(&error)`.
    pub fn classify<F>(self, is_broken: F) -> PoolLayer<M, F> {
        PoolLayer {
            pool: self.pool,
            is_broken,
        }
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

/// The service [`PoolLayer`] produces; its error is the inner service's.
pub struct PoolService<S, M: PoolManager, C = NeverBroken> {
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

/// A checkout failure as the stack's error.
fn checkout_error<E: StackError, ME: fmt::Display>(error: PoolError<ME>) -> E {
    match error {
        PoolError::Timeout { rejected, .. } => E::rejected(rejected),
        PoolError::Closed => E::rejected(Rejected::new(RejectKind::Closed)),
        PoolError::Panicked(panicked) => E::panicked(panicked),
        // A creation failure is the backend's; `M::Error` is only `Display`, so its
        // message travels as the backend error.
        other => E::backend(std::sync::Arc::new(std::io::Error::other(
            other.to_string(),
        ))),
    }
}

impl<S, M, C, Req> Service<Req> for PoolService<S, M, C>
where
    S: Service<Leased<M, Req>>,
    S::Error: StackError,
    M: PoolManager,
    M::Error: Send,
    C: BrokenClassifier<S::Error>,
    Req: Send,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, request: Req) -> Result<Self::Response, Self::Error> {
        // One span per call (issue 27); disabled without a subscriber.
        let span = backstop_core::layer_span!("backstop.pool");
        in_span(&span, || async {
            let conn = self
                .pool
                .get_labeled("PoolLayer")
                .await
                .map_err(checkout_error)?;
            let flag = Pooled::broken_flag(&conn);
            match self.inner.call(Leased { conn, request }).await {
                Ok(response) => Ok(response),
                Err(error) => {
                    if self.is_broken.is_broken(&error) {
                        flag.set();
                    }
                    Err(error)
                }
            }
        })
        .await
    }

    /// Not ready when no connection is idle and the pool is full: a call now would wait.
    fn readiness(&self) -> Result<(), Rejected> {
        if self.pool.would_wait() {
            return Err(Rejected::new(RejectKind::PoolExhausted));
        }
        self.inner.readiness()
    }
}
