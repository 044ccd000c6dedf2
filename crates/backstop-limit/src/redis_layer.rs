//! Waiting on and layering the Redis-backed limiter.

use crate::distributed::{RedisDecision, RedisLimitError, RedisRateLimiter};
use crate::error::Rejected;
use crate::wait::{WaitPolicy, jitter};
use backstop_core::{Layer, Service};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

impl RedisRateLimiter {
    /// Waits until `cost` is admitted for `key`, sleeping for each refusal's `retry_after`
    /// (plus the policy's jitter); gives up with [`RedisLimitError::WaitTooLong`] once the
    /// next wait would pass `policy.max_wait`.
    ///
    /// Cancellation: a refused attempt charges nothing in Redis and nothing is held across
    /// the sleeps, so dropping the future while it sleeps leaves no trace. Dropped during a
    /// round trip, the attempt in flight may still be charged if Redis has already run it,
    /// as with any request a client gives up on.
    pub async fn until_key_ready(
        &self,
        key: &str,
        cost: u64,
        policy: &WaitPolicy,
    ) -> Result<RedisDecision, RedisLimitError> {
        let mut waited = Duration::ZERO;
        loop {
            let decision = self.check_key_n(key, cost).await?;
            if decision.allowed {
                return Ok(decision);
            }
            let retry_after = decision.retry_after;
            if let Some(max_wait) = policy.max_wait
                && waited.saturating_add(retry_after) > max_wait
            {
                return Err(RedisLimitError::WaitTooLong { retry_after });
            }
            // A zero wait (rounding in the script) would spin; wait at least a millisecond.
            let sleep = backstop_core::time::clamp(
                retry_after
                    .max(Duration::from_millis(1))
                    .saturating_add(jitter(policy.jitter)),
            );
            tokio::time::sleep(sleep).await;
            waited = waited.saturating_add(sleep);
        }
    }
}

/// A call refused by the Redis limiter, or the inner service's own error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedisRateLimitError<E> {
    /// Over the quota; `retry_after` feeds a 429's `Retry-After`.
    #[error(transparent)]
    Limited(Rejected),
    /// The limiter could not decide in the caller's favour: cost above the burst, Redis
    /// unavailable under fail-closed, or a wait longer than allowed.
    #[error(transparent)]
    Limit(RedisLimitError),
    /// The inner service failed.
    #[error(transparent)]
    Inner(E),
}

impl<E> RedisRateLimitError<E> {
    /// The wait after which a retry would pass, when the call was rate limited.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RedisRateLimitError::Limited(r) => Some(r.retry_after),
            RedisRateLimitError::Limit(RedisLimitError::WaitTooLong { retry_after }) => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

type KeyFn<Req> = Arc<dyn Fn(&Req) -> String + Send + Sync>;
type CostFn<Req> = Arc<dyn Fn(&Req) -> u64 + Send + Sync>;

/// Admits each request through a shared [`RedisRateLimiter`] before calling the inner
/// service: one budget for every process.
///
/// By default a refused request fails at once with [`RedisRateLimitError::Limited`];
/// [`wait`](Self::wait) makes it sleep until admitted instead, within a `max_wait`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use backstop_core::{Service, Stack, service_fn};
/// use backstop_limit::{Quota, RedisRateLimitLayer, RedisRateLimiter};
///
/// struct Call { user: String, tokens: u64 }
///
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let tpm = RedisRateLimiter::new(client, "tpm", &[Quota::per_minute(100_000)?])?;
/// let layer = RedisRateLimitLayer::new(tpm, |c: &Call| c.user.clone(), |c: &Call| c.tokens);
/// let model = service_fn(|c: Call| async move { Ok::<_, std::io::Error>(c.tokens) });
/// let svc = Stack::new().layer(layer).service(model);
/// match svc.call(Call { user: "ann".into(), tokens: 900 }).await {
///     Ok(tokens) => println!("spent {tokens}"),
///     Err(e) => println!("429, retry after {:?}", e.retry_after()),
/// }
/// # Ok(()) }
/// ```
pub struct RedisRateLimitLayer<Req> {
    limiter: RedisRateLimiter,
    key: KeyFn<Req>,
    cost: CostFn<Req>,
    wait: Option<WaitPolicy>,
}

impl<Req> Clone for RedisRateLimitLayer<Req> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
            wait: self.wait,
        }
    }
}

impl<Req> fmt::Debug for RedisRateLimitLayer<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitLayer")
            .field("limiter", &self.limiter)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl<Req> RedisRateLimitLayer<Req> {
    /// Charges `cost(&req)` to the Redis key of `key(&req)` (a user, tenant or model).
    pub fn new(
        limiter: RedisRateLimiter,
        key: impl Fn(&Req) -> String + Send + Sync + 'static,
        cost: impl Fn(&Req) -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            limiter,
            key: Arc::new(key),
            cost: Arc::new(cost),
            wait: None,
        }
    }

    /// Waits for admission following `policy` instead of refusing at once.
    pub fn wait(mut self, policy: WaitPolicy) -> Self {
        self.wait = Some(policy);
        self
    }
}

impl<S, Req> Layer<S> for RedisRateLimitLayer<Req> {
    type Service = RedisRateLimit<S, Req>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind a Redis-backed rate limit, made by [`RedisRateLimitLayer`].
pub struct RedisRateLimit<S, Req> {
    inner: S,
    layer: RedisRateLimitLayer<Req>,
}

impl<S: fmt::Debug, Req> fmt::Debug for RedisRateLimit<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimit")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, Req> Service<Req> for RedisRateLimit<S, Req>
where
    S: Service<Req> + Sync,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = RedisRateLimitError<S::Error>;

    async fn call(&self, req: Req) -> Result<Self::Response, Self::Error> {
        let (key, cost) = ((self.layer.key)(&req), (self.layer.cost)(&req));
        let limiter = &self.layer.limiter;
        let decision = match &self.layer.wait {
            Some(policy) => limiter.until_key_ready(&key, cost, policy).await,
            None => limiter.check_key_n(&key, cost).await,
        }
        .map_err(RedisRateLimitError::Limit)?;
        if !decision.allowed {
            return Err(RedisRateLimitError::Limited(Rejected {
                retry_after: decision.retry_after,
            }));
        }
        self.inner
            .call(req)
            .await
            .map_err(RedisRateLimitError::Inner)
    }
}
