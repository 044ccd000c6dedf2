//! The limiters as a [`Layer`] over any [`Service`].

use crate::bulkhead::{Bulkhead, BulkheadError};
use crate::error::CheckError;
use crate::gcra::RateLimiter;
use crate::keyed::KeyedRateLimiter;
use backstop_core::{Clock, Layer, Service};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use thiserror::Error;

/// A call refused by a limiter, or the inner service's own error.
#[derive(Debug, Error)]
pub enum RateLimitError<E> {
    /// The limiter refused the call; [`CheckError::retry_after`] feeds `Retry-After`.
    #[error(transparent)]
    Limited(CheckError),
    /// The inner service failed.
    #[error(transparent)]
    Inner(E),
}

impl<E> RateLimitError<E> {
    /// The wait after which a retry would pass, when the call was rate limited.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            RateLimitError::Limited(e) => e.retry_after(),
            RateLimitError::Inner(_) => None,
        }
    }
}

type Admit<Req> = Arc<dyn Fn(&Req) -> Result<(), CheckError> + Send + Sync>;

/// Admits each request through a shared limiter before calling the inner service.
///
/// Every clone of the layer, and every service it makes, charges the same limiter.
///
/// ```
/// use backstop_core::{Service, Stack, service_fn};
/// use backstop_limit::{KeyedRateLimiter, Quota, RateLimitLayer};
/// use std::sync::Arc;
///
/// struct Call { user: String, tokens: u64 }
///
/// let tpm = Arc::new(KeyedRateLimiter::new(Quota::per_minute(1_000).unwrap()));
/// let layer = RateLimitLayer::keyed(tpm, |c: &Call| c.user.clone(), |c: &Call| c.tokens);
/// let model = service_fn(|c: Call| async move { Ok::<_, std::io::Error>(c.tokens) });
/// let svc = Stack::new().layer(layer).service(model);
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert!(svc.call(Call { user: "ann".into(), tokens: 900 }).await.is_ok());
/// let err = svc.call(Call { user: "ann".into(), tokens: 200 }).await.unwrap_err();
/// assert!(err.retry_after().is_some());
/// # });
/// ```
pub struct RateLimitLayer<Req> {
    admit: Admit<Req>,
}

impl<Req> Clone for RateLimitLayer<Req> {
    fn clone(&self) -> Self {
        Self {
            admit: self.admit.clone(),
        }
    }
}

impl<Req> fmt::Debug for RateLimitLayer<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}

impl<Req: 'static> RateLimitLayer<Req> {
    /// Charges `cost(&req)` cells to one shared limiter.
    pub fn direct<C: Clock>(
        limiter: Arc<RateLimiter<C>>,
        cost: impl Fn(&Req) -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self::from_fn(move |req| limiter.check_n(cost(req)))
    }

    /// Charges `cost(&req)` cells to the key `key(&req)` (a user, tenant or model).
    pub fn keyed<K, C>(
        limiter: Arc<KeyedRateLimiter<K, C>>,
        key: impl Fn(&Req) -> K + Send + Sync + 'static,
        cost: impl Fn(&Req) -> u64 + Send + Sync + 'static,
    ) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        C: Clock,
    {
        Self::from_fn(move |req| limiter.check_key_n(&key(req), cost(req)))
    }

    /// Admits with any decision function, e.g. several limiters checked in turn.
    pub fn from_fn(admit: impl Fn(&Req) -> Result<(), CheckError> + Send + Sync + 'static) -> Self {
        Self {
            admit: Arc::new(admit),
        }
    }
}

impl<S, Req> Layer<S> for RateLimitLayer<Req> {
    type Service = RateLimit<S, Req>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            admit: self.admit.clone(),
        }
    }
}

/// A service behind a rate limit, made by [`RateLimitLayer`].
pub struct RateLimit<S, Req> {
    inner: S,
    admit: Admit<Req>,
}

impl<S: fmt::Debug, Req> fmt::Debug for RateLimit<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for RateLimit<S, Req>
where
    S: Service<Req>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = RateLimitError<S::Error>;

    async fn call(&self, req: Req) -> Result<Self::Response, Self::Error> {
        (self.admit)(&req).map_err(RateLimitError::Limited)?;
        self.inner.call(req).await.map_err(RateLimitError::Inner)
    }
}

/// Runs every call through a shared [`Bulkhead`].
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

impl BulkheadLayer {
    /// Wraps services in `bulkhead` (clones share it).
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

/// A service behind a bulkhead, made by [`BulkheadLayer`].
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

/// A call refused by the bulkhead, or the inner service's own error.
///
/// `Clone` when `E` is, so a deduplicating layer above can hand one error to every caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BulkheadServiceError<E> {
    /// No slot was available.
    #[error(transparent)]
    Bulkhead(BulkheadError),
    /// The inner service failed.
    #[error(transparent)]
    Inner(E),
}

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BulkheadServiceError<S::Error>;

    async fn call(&self, req: Req) -> Result<Self::Response, Self::Error> {
        let _permit = self
            .bulkhead
            .acquire()
            .await
            .map_err(BulkheadServiceError::Bulkhead)?;
        self.inner
            .call(req)
            .await
            .map_err(BulkheadServiceError::Inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BulkheadConfig, Quota};
    use backstop_core::{ManualClock, service_fn};
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn clones_share_one_limit_and_rejections_skip_the_inner_service() {
        let clock = ManualClock::new();
        let limiter = Arc::new(RateLimiter::with_clock(
            Quota::per_second(3).unwrap(),
            clock.clone(),
        ));
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let inner = Arc::new(service_fn(move |n: u64| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, Infallible>(n) }
        }));
        let layer = RateLimitLayer::direct(limiter.clone(), |n: &u64| *n);
        let a = layer.layer(inner.clone());
        let b = layer.clone().layer(inner);
        assert_eq!(a.call(2).await.unwrap(), 2);
        let err = b.call(2).await.unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1) / 3));
        assert!(matches!(
            b.call(4).await,
            Err(RateLimitError::Limited(
                CheckError::InsufficientCapacity { .. }
            ))
        ));
        b.call(1).await.unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(limiter.stats().admitted, 2);
    }

    #[tokio::test]
    async fn inner_errors_pass_through_and_bulkhead_layer_frees_its_slot() {
        let bulkhead = Bulkhead::new(BulkheadConfig {
            max_concurrent: 1,
            max_queued: 0,
            max_wait: None,
        })
        .unwrap();
        let svc = BulkheadLayer::new(bulkhead.clone()).layer(service_fn(|fail: bool| async move {
            if fail { Err("boom") } else { Ok(()) }
        }));
        assert!(matches!(
            svc.call(true).await,
            Err(BulkheadServiceError::Inner("boom"))
        ));
        svc.call(false).await.unwrap();
        assert_eq!(bulkhead.stats().in_flight, 0);
    }
}
