//! Waiting on and layering the Redis-backed limiter.

use crate::distributed::{RedisDecision, RedisLimitError, RedisRateLimiter};
use crate::error::limited;
use crate::wait::{Attempt, WaitPolicy, wait_loop};
use backstop_core::{
    Layer, RejectKind, Rejected, Service, StackError, contain, in_span, record_key_hash,
};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
        let attempt = || async move {
            let decision = self.check_key_n(key, cost).await?;
            Ok(if decision.allowed {
                Attempt::Admitted(decision)
            } else {
                Attempt::Refused(decision.retry_after)
            })
        };
        // A zero wait (rounding in the script) would spin; wait at least a millisecond.
        wait_loop(attempt, policy, Duration::from_millis(1), |retry_after| {
            RedisLimitError::WaitTooLong { retry_after }
        })
        .await
    }
}

impl From<RedisLimitError> for Rejected {
    /// A cost no wait admits is `TooLarge`; Redis unreachable under fail-closed is
    /// `Unavailable`, and so is a misconfigured deployment (logged as an error by the
    /// limiter and counted in [`RedisStats::misconfigured`](crate::RedisStats), never
    /// admitted); a wait past `max_wait` is the rate limit it waited on.
    fn from(error: RedisLimitError) -> Self {
        match error {
            RedisLimitError::InsufficientCapacity { .. }
            | RedisLimitError::CostsMismatch { .. } => {
                Rejected::new(RejectKind::TooLarge { quota: 0 })
            }
            RedisLimitError::Unavailable(_) | RedisLimitError::Misconfigured(_) => {
                Rejected::new(RejectKind::Unavailable)
            }
            RedisLimitError::WaitTooLong { retry_after } => limited(0, retry_after),
        }
    }
}

type KeyFn<Req> = Arc<dyn Fn(&Req) -> String + Send + Sync>;
type CostFn<Req> = Arc<dyn Fn(&Req) -> u64 + Send + Sync>;

/// Admits each request through a shared [`RedisRateLimiter`] before calling the inner
/// service: one budget for every process.
///
/// Every request spends the budget of the key `"global"` at a cost of one until
/// [`key`](Self::key) and [`cost`](Self::cost) say otherwise. By default a refused request
/// fails at once with the stack's error built from a [`Rejected`] (`RateLimited`, with
/// `retry_after`; `Unavailable` when Redis is unreachable and the policy fails closed);
/// [`wait`](Self::wait) makes it sleep until admitted instead, within a `max_wait`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use backstop_core::{Service, ServiceExt, Stack, service_fn};
/// use backstop_limit::{Quota, RedisRateLimitLayer, RedisRateLimiter};
///
/// struct Call { user: String, tokens: u64 }
///
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let tpm = RedisRateLimiter::new(client, "tpm", &[Quota::per_minute(100_000)?])?;
/// let layer = RedisRateLimitLayer::new(tpm)
///     .key(|c: &Call| c.user.clone())
///     .cost(|c: &Call| c.tokens);
/// let model = service_fn(|c: Call| async move { Ok::<_, std::io::Error>(c.tokens) }).lift();
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
    /// Charges `limiter`: one cell per request to the key `"global"` until
    /// [`key`](Self::key) and [`cost`](Self::cost) say otherwise.
    pub fn new(limiter: RedisRateLimiter) -> Self {
        Self {
            limiter,
            key: Arc::new(|_| String::from("global")),
            cost: Arc::new(|_| 1),
            wait: None,
        }
    }

    /// Charges the Redis key of `key(&request)` (a user, tenant or model).
    pub fn key(mut self, key: impl Fn(&Req) -> String + Send + Sync + 'static) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Charges `cost(&request)` cells (the tokens of an LLM call).
    pub fn cost(mut self, cost: impl Fn(&Req) -> u64 + Send + Sync + 'static) -> Self {
        self.cost = Arc::new(cost);
        self
    }

    /// Waits for admission following `policy` instead of refusing at once.
    pub fn wait(mut self, policy: WaitPolicy) -> Self {
        self.wait = Some(policy);
        self
    }
}

impl<S, Req> Layer<S> for RedisRateLimitLayer<Req> {
    type Service = RedisRateLimitService<S, Req>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimitService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind a Redis-backed rate limit, made by [`RedisRateLimitLayer`].
pub struct RedisRateLimitService<S, Req> {
    inner: S,
    layer: RedisRateLimitLayer<Req>,
}

impl<S: Clone, Req> Clone for RedisRateLimitService<S, Req> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, Req> fmt::Debug for RedisRateLimitService<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, Req> Service<Req> for RedisRateLimitService<S, Req>
where
    S: Service<Req> + Sync,
    S::Error: StackError,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<Self::Response, Self::Error> {
        // One span per call (issue 27), as `RateLimitLayer`'s, with a hash of the Redis
        // key (never the key: it names a user or a tenant).
        let span = backstop_core::layer_span!("backstop.limit", key_hash; store = "redis");
        in_span(&span, || async {
            let charge = contain("redis rate limit key or cost", || {
                ((self.layer.key)(&req), (self.layer.cost)(&req))
            });
            let (key, cost) = charge.map_err(S::Error::panicked)?;
            record_key_hash(&span, key.as_str());
            let limiter = &self.layer.limiter;
            let decision = match &self.layer.wait {
                Some(policy) => limiter.until_key_ready(&key, cost, policy).await,
                None => limiter.check_key_n(&key, cost).await,
            }
            .map_err(|error| S::Error::rejected(error.into()))?;
            if !decision.allowed {
                return Err(S::Error::rejected(limited(0, decision.retry_after)));
            }
            self.inner.call(req).await
        })
        .await
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
