//! Waiting on the Redis-backed limiter, and the limiter as a [`RateLimitHandle`].

use crate::distributed::{RedisDecision, RedisRateLimiter};
use crate::error::{CheckError, WaitError, limited};
use crate::layer::{Admission, RateLimitHandle};
use crate::wait::{Attempt, WaitPolicy, wait_loop};
use backstop_core::{BoxFuture, Rejected};
use std::time::Duration;

impl RedisRateLimiter {
    /// Waits until `cost` is admitted for `key`, sleeping for each refusal's `retry_after`
    /// (plus the policy's jitter); gives up with [`WaitError::TooLong`] once the next wait
    /// would pass `policy.max_wait`, and with [`WaitError::Impossible`] when a check fails
    /// (a cost no wait admits, Redis down under fail-closed or misconfigured).
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
    ) -> Result<RedisDecision, WaitError> {
        let attempt = || async move {
            let decision = self
                .check_key_n(key, cost)
                .await
                .map_err(WaitError::Impossible)?;
            Ok(if decision.admitted {
                Attempt::Admitted(decision)
            } else {
                Attempt::Refused(limited(0, decision.retry_after))
            })
        };
        // A zero wait (rounding in the script) would spin; wait at least a millisecond.
        wait_loop(
            attempt,
            policy,
            Duration::from_millis(1),
            WaitError::too_long,
        )
        .await
    }
}

/// The Redis-backed limiter under [`RateLimitLayer`](crate::RateLimitLayer): each charge
/// is one script round trip for the `String` key of the layer's `key` closure, shared by
/// every process. A refusal is `RateLimited` with the script's `retry_after` (quota 0: the
/// script reports the wait, not which quota); a cost no wait admits is `TooLarge`, and
/// Redis unreachable under fail-closed is `Unavailable`. Give the layer a
/// [`wait`](crate::RateLimitLayer::wait) policy to sleep until admitted instead.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use backstop_core::{Service, ServiceExt, Stack, service_fn};
/// use backstop_limit::{Quota, RateLimitLayer, RedisRateLimiter};
///
/// struct Call { user: String, tokens: u64 }
///
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let tpm = RedisRateLimiter::new(client, "tpm", &[Quota::per_minute(100_000)?])?;
/// let layer = RateLimitLayer::new(tpm)
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
impl RateLimitHandle<u64> for RedisRateLimiter {
    type Key = String;
    type Pending<'a> = BoxFuture<'a, Result<(), Rejected>>;

    fn admit(&self, key: &String, cost: u64) -> Admission<Self::Pending<'_>> {
        let key = key.clone();
        Admission::Later(Box::pin(async move {
            decided(self.check_key_n(&key, cost).await)
        }))
    }
}

/// Each quota charged its own cost (requests and tokens), all or none, in one round trip.
impl<const N: usize> RateLimitHandle<[u64; N]> for RedisRateLimiter {
    type Key = String;
    type Pending<'a> = BoxFuture<'a, Result<(), Rejected>>;

    fn admit(&self, key: &String, costs: [u64; N]) -> Admission<Self::Pending<'_>> {
        let key = key.clone();
        Admission::Later(Box::pin(async move {
            decided(self.check_key_costs(&key, &costs).await)
        }))
    }
}

/// A Redis decision as the layer's answer.
fn decided(outcome: Result<RedisDecision, CheckError>) -> Result<(), Rejected> {
    match outcome {
        Ok(decision) if decision.admitted => Ok(()),
        Ok(decision) => Err(limited(0, decision.retry_after)),
        Err(error) => Err(error.into()),
    }
}
