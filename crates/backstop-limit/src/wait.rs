//! Async waiting for admission: sleep until the limiter would admit, bounded by `max_wait`.

use backstop_core::config::{ConfigError, Validate, ensure_duration};
use serde::Deserialize;
use std::time::Duration;
#[cfg(feature = "tokio")]
use {
    crate::error::{CheckError, WaitError},
    crate::layer::{Admission, RateLimitHandle},
    crate::limiter::Limiter,
    crate::store::{DirectStore, KeyedStore, RateAlgorithm},
    backstop_core::{BoxFuture, Clock, RejectKind, Rejected},
    std::hash::Hash,
    std::sync::Arc,
};

/// How an async wait behaves; both durations are at most
/// [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (checked by [`Validate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaitPolicy {
    /// Give up (charging nothing) when admission is further away than this in total.
    #[serde(with = "backstop_core::duration::human_option")]
    pub max_wait: Option<Duration>,
    /// Up to this much random extra sleep, so waiters released together do not retry in
    /// lockstep.
    #[serde(with = "backstop_core::duration::human")]
    pub jitter: Duration,
}

impl Validate for WaitPolicy {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(max_wait) = self.max_wait {
            ensure_duration("max_wait", max_wait)?;
        }
        ensure_duration("jitter", self.jitter)
    }
}

/// A random extra sleep of at most `max`.
#[cfg(feature = "tokio")]
pub(crate) fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=max))
}

/// What one attempt of a wait decided.
#[cfg(feature = "tokio")]
pub(crate) enum Attempt<T> {
    /// Admitted, with the limiter's answer.
    Admitted(T),
    /// Refused for now: it would pass after the refusal's `retry_after`.
    Refused(Rejected),
}

/// The one wait loop of every limiter, local or Redis: retries `attempt` after each
/// refusal's wait (at least `floor`) plus the policy's jitter, until it is admitted or
/// fails (its error returned as is), or until the next wait would pass `policy.max_wait`
/// (`too_long(refusal)`, without sleeping). Nothing is held across the sleep, so
/// dropping the future between attempts charges nothing and leaks nothing.
#[cfg(feature = "tokio")]
pub(crate) async fn wait_loop<T, E, F>(
    mut attempt: impl FnMut() -> F,
    policy: &WaitPolicy,
    floor: Duration,
    too_long: impl Fn(Rejected) -> E,
) -> Result<T, E>
where
    F: std::future::Future<Output = Result<Attempt<T>, E>>,
{
    let mut waited = Duration::ZERO;
    loop {
        let refusal = match attempt().await? {
            Attempt::Admitted(answer) => return Ok(answer),
            Attempt::Refused(refusal) => refusal,
        };
        let retry_after = refusal.retry_after.unwrap_or_default();
        if let Some(max_wait) = policy.max_wait
            && waited.saturating_add(retry_after) > max_wait
        {
            return Err(too_long(refusal));
        }
        // Saturating: even a policy that was never validated cannot overflow the deadline.
        let sleep = backstop_core::time::clamp(
            retry_after.max(floor).saturating_add(jitter(policy.jitter)),
        );
        tokio::time::sleep(sleep).await;
        waited = waited.saturating_add(sleep);
    }
}

/// [`wait_loop`] over a local limiter's check: it sleeps exactly the promised wait.
#[cfg(feature = "tokio")]
async fn wait_for(
    mut attempt: impl FnMut() -> Result<(), CheckError>,
    policy: &WaitPolicy,
) -> Result<(), WaitError> {
    let attempt = || {
        std::future::ready(match attempt() {
            Ok(()) => Ok(Attempt::Admitted(())),
            Err(CheckError::Rejected(r)) => Ok(Attempt::Refused(r)),
            Err(impossible) => Err(WaitError::Impossible(impossible)),
        })
    };
    wait_loop(attempt, policy, Duration::ZERO, WaitError::too_long).await
}

#[cfg(feature = "tokio")]
/// Waiting for any direct limiter ([`RateLimiter`](crate::RateLimiter),
/// [`MultiRateLimiter`](crate::MultiRateLimiter),
/// [`SlidingWindowLimiter`](crate::SlidingWindowLimiter)).
impl<A: RateAlgorithm, C: Clock> Limiter<DirectStore<A>, C> {
    /// Waits until `cost` cells are admitted, with no limit on the wait.
    ///
    /// Cancellation-safe: dropping the future charges nothing.
    ///
    /// ```
    /// use backstop_limit::{Quota, RateLimiter, TokioClock};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = RateLimiter::with_clock(Quota::per_second(1).unwrap(), TokioClock);
    /// let start = tokio::time::Instant::now();
    /// limiter.until_ready(1).await.unwrap();
    /// limiter.until_ready(1).await.unwrap();
    /// assert!(start.elapsed() >= std::time::Duration::from_secs(1));
    /// # }
    /// ```
    pub async fn until_ready(&self, cost: u64) -> Result<(), WaitError> {
        self.until_ready_with(cost, &WaitPolicy::default()).await
    }

    /// Waits until `cost` cells are admitted, following `policy`.
    pub async fn until_ready_with(&self, cost: u64, policy: &WaitPolicy) -> Result<(), WaitError> {
        wait_for(|| self.check_n(cost), policy).await
    }
}

#[cfg(feature = "tokio")]
/// Waiting for any keyed limiter ([`KeyedRateLimiter`](crate::KeyedRateLimiter),
/// [`KeyedMultiRateLimiter`](crate::KeyedMultiRateLimiter),
/// [`KeyedSlidingWindow`](crate::KeyedSlidingWindow)).
impl<K, A, C> Limiter<KeyedStore<K, A>, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: RateAlgorithm,
    C: Clock,
{
    /// Waits until `cost` cells are admitted for `key`, following `policy`.
    ///
    /// Cancellation-safe: dropping the future charges nothing.
    pub async fn until_key_ready(
        &self,
        key: &K,
        cost: u64,
        policy: &WaitPolicy,
    ) -> Result<(), WaitError> {
        wait_for(|| self.check_key_n(key, cost), policy).await
    }
}

/// A limiter whose rate refusals are slept out, made by
/// [`RateLimitLayer::wait`](crate::RateLimitLayer::wait): any limiter of this crate,
/// in process or in Redis, waits the same way.
///
/// Each refusal for rate is waited out (its `retry_after` plus the policy's jitter) and
/// the charge tried again, until it is admitted, or refused once the next wait would pass
/// `max_wait` (the last refusal, with its `retry_after`). Other refusals (a cost no wait
/// admits, the key cap, Redis unavailable) return at once. An admission at the first try
/// allocates nothing. Cancellation-safe: a refused try charges nothing, and nothing is held
/// across the sleeps.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct Waiting<L> {
    limiter: Arc<L>,
    policy: WaitPolicy,
}

#[cfg(feature = "tokio")]
impl<L> Waiting<L> {
    pub(crate) fn new(limiter: Arc<L>, policy: WaitPolicy) -> Self {
        Self { limiter, policy }
    }

    /// Whether sleeping cures `refusal` within the policy's `max_wait`.
    fn waits_out(&self, refusal: &Rejected) -> bool {
        matches!(refusal.kind, RejectKind::RateLimited { .. })
            && refusal
                .retry_after
                .is_some_and(|wait| self.policy.max_wait.is_none_or(|max| wait <= max))
    }
}

#[cfg(feature = "tokio")]
impl<Cost, L> RateLimitHandle<Cost> for Waiting<L>
where
    L: RateLimitHandle<Cost>,
    L::Key: Clone + Send,
    Cost: Copy + Send + 'static,
{
    type Key = L::Key;
    type Pending<'a>
        = BoxFuture<'a, Result<(), Rejected>>
    where
        Self: 'a;

    fn admit(&self, key: &L::Key, cost: Cost) -> Admission<Self::Pending<'_>> {
        // The first answer is kept: decided in place when no wait follows, otherwise the
        // first attempt of the loop below.
        let mut first = match self.limiter.admit(key, cost) {
            Admission::Now(Err(refusal)) if self.waits_out(&refusal) => {
                Some(Admission::Now(Err(refusal)))
            }
            Admission::Now(decided) => return Admission::Now(decided),
            later @ Admission::Later(_) => Some(later),
        };
        let key = key.clone();
        Admission::Later(Box::pin(async move {
            let attempt = move || {
                let admission = first
                    .take()
                    .unwrap_or_else(|| self.limiter.admit(&key, cost));
                async move {
                    let decided = match admission {
                        Admission::Now(decided) => decided,
                        Admission::Later(pending) => pending.await,
                    };
                    match decided {
                        Ok(()) => Ok(Attempt::Admitted(())),
                        Err(refusal) if self.waits_out(&refusal) => Ok(Attempt::Refused(refusal)),
                        Err(refusal) => Err(refusal),
                    }
                }
            };
            wait_loop(attempt, &self.policy, Duration::ZERO, |refusal| refusal).await
        }))
    }

    /// Ready unless the limiter refuses now for longer than a wait may last.
    fn readiness(&self) -> Result<(), Rejected> {
        match self.limiter.readiness() {
            Err(refusal) if !self.waits_out(&refusal) => Err(refusal),
            _ => Ok(()),
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use crate::{KeyedRateLimiter, Quota, RateLimiter, TokioClock};
    use futures::FutureExt;
    use std::sync::Arc;
    use tokio::time::Instant as TokioInstant;

    #[tokio::test(start_paused = true)]
    async fn waits_exactly_the_promised_time() {
        let l = RateLimiter::with_clock(Quota::per_second(2).unwrap(), TokioClock);
        let start = TokioInstant::now();
        for _ in 0..6 {
            l.until_ready(1).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn max_wait_gives_up_without_charging() {
        let l = RateLimiter::with_clock(Quota::per_second(1).unwrap(), TokioClock);
        l.check().unwrap();
        let policy = WaitPolicy {
            max_wait: Some(Duration::from_millis(500)),
            ..WaitPolicy::default()
        };
        let start = TokioInstant::now();
        assert_eq!(
            l.until_ready_with(1, &policy).await,
            Err(WaitError::TooLong {
                retry_after: Duration::from_secs(1)
            })
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "gave up without sleeping");
        tokio::time::advance(Duration::from_secs(1)).await;
        l.check().unwrap();
        assert_eq!(
            l.until_ready(2).await,
            Err(WaitError::Impossible(CheckError::InsufficientCapacity {
                cost: 2,
                burst: 1
            }))
        );
    }

    #[test]
    fn absurd_durations_name_their_field() {
        let policy: WaitPolicy = serde_json::from_str(r#"{"jitter":"150000000000000d"}"#).unwrap();
        assert_eq!(policy.validate().unwrap_err().field(), "jitter");
        let policy: WaitPolicy = serde_json::from_str(r#"{"max_wait":"400d"}"#).unwrap();
        assert_eq!(policy.validate().unwrap_err().field(), "max_wait");
        assert!(WaitPolicy::default().validate().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_its_bound() {
        let l = Arc::new(KeyedRateLimiter::with_clock(
            Quota::per_second(1).unwrap(),
            TokioClock,
        ));
        let policy = WaitPolicy {
            max_wait: None,
            jitter: Duration::from_millis(100),
        };
        l.check_key(&"k").unwrap();
        let start = TokioInstant::now();
        l.until_key_ready(&"k", 1, &policy).await.unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(1) && took <= Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiters_charge_nothing() {
        let l = RateLimiter::with_clock(Quota::per_second(1).unwrap(), TokioClock);
        l.check().unwrap();
        for _ in 0..10 {
            let mut fut = Box::pin(l.until_ready(1));
            assert!((&mut fut).now_or_never().is_none());
            tokio::time::advance(Duration::from_millis(50)).await;
            drop(fut);
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        l.check().unwrap();
        assert!(l.check().is_err());
    }
}
