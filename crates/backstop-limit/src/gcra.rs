//! The generic cell rate algorithm over one atomic word, and the direct (unkeyed) limiter.

use crate::counters::Counters;
use crate::error::{CheckError, limited};
use crate::quota::Quota;
use backstop_core::{Clock, DefaultClock};
use backstop_core::{RejectKind, Rejected};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Nanoseconds since a limiter's origin, the unit every GCRA state is kept in.
///
/// Read through [`Clock::now_nanos`], an integer straight from the clock: building and
/// subtracting `Instant`s cost as much as the rest of a check.
#[derive(Debug)]
pub(crate) struct Timeline<C> {
    clock: C,
    origin: u64,
}

impl<C: Clock> Timeline<C> {
    pub(crate) fn new(clock: C) -> Self {
        let origin = clock.now_nanos();
        Self { clock, origin }
    }

    /// Starts at 1 so that a state of 0 always means "never used, fully replenished".
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.clock
            .now_nanos()
            .saturating_sub(self.origin)
            .saturating_add(1)
    }
}

/// The GCRA decision for one state word: the new theoretical arrival time, or the wait.
#[inline]
pub(crate) fn decide(tat: u64, now: u64, cost: u64, quota: &Quota) -> Result<u64, u64> {
    let increment = quota.emission_nanos().saturating_mul(cost);
    let new_tat = tat.max(now).saturating_add(increment);
    let ahead = new_tat - now;
    let tolerance = quota.tolerance_nanos();
    if ahead <= tolerance {
        Ok(new_tat)
    } else {
        Err(ahead - tolerance)
    }
}

/// Applies [`decide`] to a shared word with a compare-and-swap loop.
#[inline]
pub(crate) fn check_cell(
    state: &AtomicU64,
    now: u64,
    cost: u64,
    quota: &Quota,
) -> Result<(), CheckError> {
    if cost > quota.burst() {
        return Err(CheckError::InsufficientCapacity {
            cost,
            burst: quota.burst(),
        });
    }
    admit(state, now, cost, quota).map_err(CheckError::Rejected)
}

/// The compare-and-swap loop for a cost known to fit the burst.
#[inline]
fn admit(state: &AtomicU64, now: u64, cost: u64, quota: &Quota) -> Result<(), Rejected> {
    let mut current = state.load(Ordering::Relaxed);
    loop {
        match decide(current, now, cost, quota) {
            Err(wait) => {
                return Err(limited(0, Duration::from_nanos(wait)));
            }
            Ok(new_tat) => {
                // Relaxed suffices: the limiter's whole state is this one word, and no other
                // memory is published through it.
                match state.compare_exchange_weak(
                    current,
                    new_tat,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(()),
                    Err(actual) => current = actual,
                }
            }
        }
    }
}

/// Cells still available at `now` for a state word.
pub(crate) fn remaining(tat: u64, now: u64, quota: &Quota) -> u64 {
    let used_ahead = tat.saturating_sub(now);
    (quota.tolerance_nanos() - used_ahead.min(quota.tolerance_nanos())) / quota.emission_nanos()
}

/// A word on a cache line of its own (128 bytes: adjacent-line prefetchers pair lines).
#[derive(Debug)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A point-in-time view of a direct limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimiterStats {
    /// Checks that admitted their cost.
    pub admitted: u64,
    /// Checks that were turned away (rejected or impossible).
    pub rejected: u64,
    /// Cells that could be admitted right now.
    pub remaining: u64,
}

/// A GCRA rate limiter for one stream of requests (one API key, one model, one process).
///
/// The whole state is one `AtomicU64` holding the theoretical arrival time, so a check is a
/// clock read and a compare-and-swap, with no lock and no allocation.
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::{Quota, RateLimiter};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = RateLimiter::with_clock(Quota::per_second(2).unwrap(), clock.clone());
/// assert!(limiter.check().is_ok());
/// assert!(limiter.check().is_ok());
/// let wait = limiter.check().unwrap_err().retry_after.unwrap();
/// assert_eq!(wait, Duration::from_millis(500));
/// clock.advance(wait);
/// assert!(limiter.check().is_ok());
/// ```
#[derive(Debug)]
pub struct RateLimiter<C = DefaultClock> {
    quota: Quota,
    // Alone on its cache line: compare-and-swaps from other threads then do not evict
    // the quota and clock every check reads.
    state: Padded,
    timeline: Timeline<C>,
    counters: Counters,
}

impl RateLimiter<DefaultClock> {
    /// A limiter on the [`DefaultClock`].
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter reading time from `clock`.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self {
            quota,
            state: Padded(AtomicU64::new(0)),
            timeline: Timeline::new(clock),
            counters: Counters::default(),
        }
    }

    /// Admits one cell or says how long to wait.
    #[inline]
    pub fn check(&self) -> Result<(), Rejected> {
        match self.check_n(1) {
            Ok(()) => Ok(()),
            Err(CheckError::Rejected(r)) => Err(r),
            // A quota's burst is at least 1, so a single cell always fits.
            Err(_) => Err(Rejected::new(RejectKind::TooLarge { quota: 0 })),
        }
    }

    /// Admits `cost` cells at once (the tokens of one LLM call) or none of them.
    ///
    /// A cost of 0 always passes; a cost above the burst is
    /// [`CheckError::InsufficientCapacity`], since no wait would ever admit it.
    #[inline]
    pub fn check_n(&self, cost: u64) -> Result<(), CheckError> {
        let now = self.timeline.now_nanos();
        let result = check_cell(&self.state.0, now, cost, &self.quota);
        self.counters.record(&result);
        result
    }

    /// Whether a check of one cell would pass now, without charging it.
    pub fn readiness(&self) -> Result<(), Rejected> {
        let now = self.timeline.now_nanos();
        let tat = self.state.0.load(Ordering::Relaxed);
        decide(tat, now, 1, &self.quota)
            .map(drop)
            .map_err(|wait| limited(0, Duration::from_nanos(wait)))
    }

    /// The quota this limiter enforces.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// A snapshot of counters and the cells available now.
    pub fn stats(&self) -> LimiterStats {
        let now = self.timeline.now_nanos();
        LimiterStats {
            admitted: self.counters.admitted(),
            rejected: self.counters.rejected(),
            remaining: remaining(self.state.0.load(Ordering::Relaxed), now, &self.quota),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::ManualClock;
    use proptest::prelude::*;

    fn limiter(rate: u64, burst: u64) -> (RateLimiter<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let quota = Quota::per_second(rate).unwrap().with_burst(burst).unwrap();
        (RateLimiter::with_clock(quota, clock.clone()), clock)
    }

    #[test]
    fn burst_then_one_per_interval() {
        let (l, clock) = limiter(10, 3);
        for _ in 0..3 {
            l.check().unwrap();
        }
        assert_eq!(
            l.check().unwrap_err().retry_after,
            Some(Duration::from_millis(100))
        );
        clock.advance(Duration::from_millis(99));
        assert!(l.check().is_err());
        clock.advance(Duration::from_millis(1));
        l.check().unwrap();
        assert!(l.check().is_err());
        let stats = l.stats();
        assert_eq!((stats.admitted, stats.rejected, stats.remaining), (4, 3, 0));
    }

    #[test]
    fn weighted_cost_is_all_or_nothing_and_oversize_is_impossible() {
        let (l, clock) = limiter(100, 50);
        l.check_n(30).unwrap();
        let err = l.check_n(30).unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_millis(100)));
        l.check_n(20).unwrap();
        assert_eq!(
            l.check_n(51).unwrap_err(),
            CheckError::InsufficientCapacity {
                cost: 51,
                burst: 50
            }
        );
        l.check_n(0).unwrap();
        clock.advance(Duration::from_millis(500));
        assert_eq!(l.stats().remaining, 50);
    }

    #[test]
    fn idle_time_beyond_the_burst_is_not_banked() {
        let (l, clock) = limiter(10, 2);
        clock.advance(Duration::from_secs(3600));
        l.check_n(2).unwrap();
        assert!(l.check().is_err());
    }

    #[test]
    fn threads_hammering_one_limiter_never_exceed_the_quota() {
        let (l, _clock) = limiter(1, 1000);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        if l.check().is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 1000);
        assert_eq!(l.stats().rejected, 7000);
    }

    /// The textbook token bucket with exact rational arithmetic: tokens scaled by the
    /// emission interval so refill is `elapsed` per nanosecond, capped at `burst * T`.
    struct Bucket {
        scaled_tokens: u128,
        last: u64,
        t: u128,
        burst: u128,
    }

    impl Bucket {
        fn check(&mut self, now: u64, cost: u64) -> bool {
            let cap = self.t * self.burst;
            self.scaled_tokens = (self.scaled_tokens + u128::from(now - self.last)).min(cap);
            self.last = now;
            let need = self.t * u128::from(cost);
            if need <= self.scaled_tokens {
                self.scaled_tokens -= need;
                true
            } else {
                false
            }
        }
    }

    proptest! {
        #[test]
        fn gcra_admits_exactly_what_a_token_bucket_admits(
            rate in 1u64..50,
            burst in 1u64..20,
            steps in prop::collection::vec((0u64..300_000_000, 0u64..25), 1..200),
        ) {
            let (l, clock) = limiter(rate, burst);
            let t = u128::from(l.quota().emission_nanos());
            let mut bucket = Bucket { scaled_tokens: t * u128::from(burst), last: 1, t, burst: u128::from(burst) };
            let mut admitted_log: Vec<(u64, u64)> = Vec::new();
            for (advance, cost) in steps {
                clock.advance(Duration::from_nanos(advance));
                let now = l.timeline.now_nanos();
                let ours = l.check_n(cost);
                let expected = cost <= burst && bucket.check(now, cost);
                prop_assert_eq!(ours.is_ok(), expected, "cost {} at {}", cost, now);
                if let Err(CheckError::Rejected(r)) = ours {
                    // The promised wait is exact: one nanosecond sooner still fails.
                    let tat = l.state.0.load(Ordering::Relaxed);
                    let wait = u64::try_from(r.retry_after.unwrap().as_nanos()).unwrap();
                    prop_assert!(decide(tat, now + wait, cost, &l.quota()).is_ok());
                    prop_assert!(decide(tat, now + wait - 1, cost, &l.quota()).is_err());
                }
                if ours.is_ok() && cost > 0 {
                    admitted_log.push((now, cost));
                }
            }
            // In any window of length w, at most burst + w / T cells pass.
            for (i, &(start, _)) in admitted_log.iter().enumerate() {
                let mut total = 0u128;
                for &(at, cost) in &admitted_log[i..] {
                    total += u128::from(cost);
                    let window = u128::from(at - start);
                    prop_assert!(total <= u128::from(burst) + window / t);
                }
            }
        }
    }
}
