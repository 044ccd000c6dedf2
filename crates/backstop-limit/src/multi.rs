//! Several quotas at once (60/min AND 1,000/hour AND 10,000/day), charged all or none.

use crate::counters::Counters;
use crate::error::{CheckError, Rejected};
use crate::gcra::{LimiterStats, Timeline, decide, remaining};
use crate::quota::Quota;
use backstop_core::config::{ConfigError, ensure};
use backstop_core::{Clock, DefaultClock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A limiter that admits a request only if every one of its quotas admits it, and then
/// charges all of them; a refusal charges none.
///
/// Each quota is checked and charged in turn with its own compare-and-swap; if a later
/// quota refuses, the earlier charges are refunded. Under concurrency a racing request may
/// see a charge that is about to be refunded and be refused, never the reverse: the
/// limiter can under-admit briefly, it never over-admits.
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::{MultiRateLimiter, Quota};
///
/// let clock = ManualClock::new();
/// let limiter = MultiRateLimiter::with_clock(
///     vec![Quota::per_minute(60).unwrap(), Quota::per_hour(100).unwrap()],
///     clock,
/// )
/// .unwrap();
/// assert!(limiter.check_n(60).is_ok());
/// assert!(limiter.check_n(1).is_err());
/// ```
#[derive(Debug)]
pub struct MultiRateLimiter<C = DefaultClock> {
    quotas: Box<[Quota]>,
    states: Box<[AtomicU64]>,
    timeline: Timeline<C>,
    counters: Counters,
}

impl MultiRateLimiter<DefaultClock> {
    /// A multi-quota limiter on the [`DefaultClock`].
    pub fn new(quotas: Vec<Quota>) -> Result<Self, ConfigError> {
        Self::with_clock(quotas, DefaultClock::default())
    }
}

impl<C: Clock> MultiRateLimiter<C> {
    /// A multi-quota limiter reading time from `clock`; at least one quota is required.
    pub fn with_clock(quotas: Vec<Quota>, clock: C) -> Result<Self, ConfigError> {
        ensure(!quotas.is_empty(), "quotas", "must hold at least one quota")?;
        let states = quotas.iter().map(|_| AtomicU64::new(0)).collect();
        Ok(Self {
            quotas: quotas.into_boxed_slice(),
            states,
            timeline: Timeline::new(clock),
            counters: Counters::default(),
        })
    }

    /// Admits one cell against every quota.
    pub fn check(&self) -> Result<(), CheckError> {
        self.check_n(1)
    }

    /// Admits `cost` cells against every quota, or charges none.
    ///
    /// A refusal's `retry_after` is the wait of the first quota that refused.
    pub fn check_n(&self, cost: u64) -> Result<(), CheckError> {
        let result = self.charge_all(cost);
        self.counters.record(&result);
        result
    }

    fn charge_all(&self, cost: u64) -> Result<(), CheckError> {
        let smallest = self.quotas.iter().map(Quota::burst).min().unwrap_or(0);
        if cost > smallest {
            return Err(CheckError::InsufficientCapacity {
                cost,
                burst: smallest,
            });
        }
        let now = self.timeline.now_nanos();
        for (i, (quota, state)) in self.quotas.iter().zip(self.states.iter()).enumerate() {
            if let Err(wait) = charge(state, now, cost, quota) {
                for (quota, state) in self.quotas[..i].iter().zip(self.states.iter()) {
                    refund(state, cost, quota);
                }
                return Err(CheckError::Rejected(Rejected {
                    retry_after: Duration::from_nanos(wait),
                }));
            }
        }
        Ok(())
    }

    /// Counters, and the cells available now under the tightest quota.
    pub fn stats(&self) -> LimiterStats {
        let now = self.timeline.now_nanos();
        let remaining = self
            .quotas
            .iter()
            .zip(self.states.iter())
            .map(|(q, s)| remaining(s.load(Ordering::Relaxed), now, q))
            .min()
            .unwrap_or(0);
        LimiterStats {
            admitted: self.counters.admitted(),
            rejected: self.counters.rejected(),
            remaining,
        }
    }
}

fn charge(state: &AtomicU64, now: u64, cost: u64, quota: &Quota) -> Result<(), u64> {
    let mut current = state.load(Ordering::Relaxed);
    loop {
        let new_tat = decide(current, now, cost, quota)?;
        match state.compare_exchange_weak(current, new_tat, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
}

/// Takes back `cost` cells. The TAT may end at `now` rather than its old value below
/// `now`, which decides the same for every later instant.
fn refund(state: &AtomicU64, cost: u64, quota: &Quota) {
    let increment = quota.emission_nanos().saturating_mul(cost);
    let _ = state.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
        Some(tat.saturating_sub(increment))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::ManualClock;
    use proptest::prelude::*;

    #[test]
    fn empty_quota_list_is_a_config_error() {
        assert_eq!(MultiRateLimiter::new(vec![]).unwrap_err().field(), "quotas");
    }

    #[test]
    fn refusal_by_a_later_quota_refunds_the_earlier_ones() {
        let clock = ManualClock::new();
        let l = MultiRateLimiter::with_clock(
            vec![Quota::per_second(10).unwrap(), Quota::per_hour(5).unwrap()],
            clock.clone(),
        )
        .unwrap();
        l.check_n(5).unwrap();
        clock.advance(Duration::from_secs(1));
        assert!(l.check_n(3).is_err());
        assert_eq!(
            l.check_n(6).unwrap_err(),
            CheckError::InsufficientCapacity { cost: 6, burst: 5 }
        );
        // The per-second quota was refunded: a whole burst of it is still there.
        let per_second = &l.states[0];
        assert_eq!(
            remaining(
                per_second.load(Ordering::Relaxed),
                l.timeline.now_nanos(),
                &l.quotas[0]
            ),
            10
        );
        assert_eq!(l.stats().remaining, 0);
    }

    #[test]
    fn racing_threads_never_over_admit_any_quota() {
        let clock = ManualClock::new();
        let l = MultiRateLimiter::with_clock(
            vec![
                Quota::per_hour(300).unwrap(),
                Quota::per_hour(200).unwrap().with_burst(250).unwrap(),
            ],
            clock,
        )
        .unwrap();
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (l, admitted) = (&l, &admitted);
                s.spawn(move || {
                    for i in 0..500u64 {
                        let cost = (i + t) % 3 + 1;
                        if l.check_n(cost).is_ok() {
                            admitted.fetch_add(cost, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let total = admitted.load(Ordering::Relaxed);
        assert!(total <= 250, "admitted {total} cells over a burst of 250");
        assert!(total >= 200, "refunds left the limiter usable: {total}");
    }

    proptest! {
        /// Sequentially, the limiter admits exactly when every separate limiter would,
        /// and then all of them are charged.
        #[test]
        fn matches_all_or_none_over_separate_limiters(
            steps in prop::collection::vec((0u64..500_000_000, 0u64..6), 1..200),
        ) {
            let clock = ManualClock::new();
            let quotas = vec![
                Quota::per_second(4).unwrap().with_burst(5).unwrap(),
                Quota::per_second(1).unwrap().with_burst(8).unwrap(),
            ];
            let l = MultiRateLimiter::with_clock(quotas.clone(), clock.clone()).unwrap();
            let mut model = [0u64; 2];
            for (advance, cost) in steps {
                clock.advance(Duration::from_nanos(advance));
                let now = l.timeline.now_nanos();
                let decisions: Vec<_> = quotas.iter().zip(model.iter()).map(|(q, &tat)| decide(tat, now, cost, q)).collect();
                let expected = cost <= 5 && decisions.iter().all(Result::is_ok);
                prop_assert_eq!(l.check_n(cost).is_ok(), expected);
                if expected {
                    for (tat, d) in model.iter_mut().zip(decisions) {
                        *tat = d.unwrap_or(*tat);
                    }
                }
                for (i, q) in quotas.iter().enumerate() {
                    prop_assert_eq!(
                        remaining(l.states[i].load(Ordering::Relaxed), now, q),
                        remaining(model[i], now, q)
                    );
                }
            }
        }
    }
}
