//! The limiter handle: a state store, a clock and counters behind one `Arc`.

use crate::counters::Counters;
use crate::error::Refusal;
use crate::stats::LimiterStats;
use crate::store::{RateAlgorithm, StateStore};
use backstop_core::{Clock, DefaultClock, Rejected};
use std::fmt;
use std::sync::Arc;

/// Nanoseconds since a limiter's origin, the unit every state is kept in.
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

    /// Starts at 1 so that a GCRA state of 0 always means "never used, fully replenished".
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.clock
            .now_nanos()
            .saturating_sub(self.origin)
            .saturating_add(1)
    }
}

#[derive(Debug)]
pub(crate) struct Inner<S, C> {
    pub(crate) store: S,
    pub(crate) timeline: Timeline<C>,
    pub(crate) counters: Counters,
}

/// A rate limiter: one algorithm over one state store, read through one clock.
///
/// This is the one type behind every limiter of the crate, each a named combination:
///
/// | name | store | algorithm |
/// |---|---|---|
/// | [`RateLimiter`](crate::RateLimiter) | [`DirectStore`](crate::DirectStore) | [`Gcra`](crate::Gcra) (one quota) |
/// | [`KeyedRateLimiter`](crate::KeyedRateLimiter) | [`KeyedStore`](crate::KeyedStore) | [`Gcra`](crate::Gcra) (one quota) |
/// | [`MultiRateLimiter`](crate::MultiRateLimiter) | [`DirectStore`](crate::DirectStore) | [`Gcra`](crate::Gcra) (several quotas) |
/// | [`KeyedMultiRateLimiter`](crate::KeyedMultiRateLimiter) | [`KeyedStore`](crate::KeyedStore) | [`Gcra`](crate::Gcra) (several quotas) |
/// | [`SlidingWindowLimiter`](crate::SlidingWindowLimiter) | [`DirectStore`](crate::DirectStore) | [`SlidingWindow`](crate::SlidingWindow) |
/// | [`KeyedSlidingWindow`](crate::KeyedSlidingWindow) | [`KeyedStore`](crate::KeyedStore) | [`SlidingWindow`](crate::SlidingWindow) |
///
/// A limiter is a cheap-clone handle: clones share the same states and counters, so it is
/// passed to layers and tasks as is, with no `Arc` around it.
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::{KeyedRateLimiter, Quota};
///
/// let per_user = KeyedRateLimiter::with_clock(Quota::per_minute(1).unwrap(), ManualClock::new());
/// let handle = per_user.clone();
/// assert!(per_user.check_key(&"ann").is_ok());
/// assert!(handle.check_key(&"ann").is_err(), "clones share the budget");
/// assert_eq!(handle.stats().admitted, 1);
/// ```
pub struct Limiter<S, C = DefaultClock> {
    pub(crate) inner: Arc<Inner<S, C>>,
}

impl<S, C> Clone for Limiter<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Limiter<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("store", &self.inner.store)
            .field("timeline", &self.inner.timeline)
            .finish_non_exhaustive()
    }
}

impl<S: StateStore, C: Clock> Limiter<S, C> {
    pub(crate) fn from_store(store: S, clock: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                timeline: Timeline::new(clock),
                counters: Counters::default(),
            }),
        }
    }

    /// The store, for the methods of one store kind.
    #[inline]
    pub(crate) fn store(&self) -> &S {
        &self.inner.store
    }

    /// The limiter's algorithm.
    #[inline]
    pub(crate) fn algorithm(&self) -> &S::Algorithm {
        self.inner.store.algorithm()
    }

    /// Now, on the limiter's timeline.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.inner.timeline.now_nanos()
    }

    /// Charges `cost` to `key`, or refuses and charges nothing; counted.
    #[inline]
    pub(crate) fn check_with(
        &self,
        key: &S::Key,
        cost: <S::Algorithm as RateAlgorithm>::Cost<'_>,
    ) -> Result<(), Refusal> {
        let inner = &*self.inner;
        let now = inner.timeline.now_nanos();
        let result = inner.store.check(key, now, cost);
        inner.counters.record(&result);
        result
    }

    /// Charges `cost` to `key` under every limit; counted.
    #[inline]
    pub(crate) fn check_single(&self, key: &S::Key, cost: u64) -> Result<(), Refusal> {
        self.check_with(key, S::Algorithm::single(cost))
    }

    /// The cost `key` could be charged now under its tightest limit.
    pub(crate) fn remaining_of(&self, key: &S::Key) -> u64 {
        let now = self.now();
        self.inner.store.peek(key, |limits, state| {
            self.algorithm().remaining(limits, state, now)
        })
    }

    /// Whether a call costing one would be refused now (always ready for a keyed store,
    /// which cannot know without the key).
    pub(crate) fn store_readiness(&self) -> Result<(), Rejected> {
        self.inner.store.readiness(self.now())
    }

    /// A snapshot of the counters, with the cells a direct limiter could admit now under
    /// its tightest limit, or a keyed limiter's key bookkeeping.
    pub fn stats(&self) -> LimiterStats {
        let counters = &self.inner.counters;
        let counts = LimiterStats {
            admitted: counters.admitted(),
            rejected: counters.rejected(),
            ..LimiterStats::default()
        };
        self.inner.store.stats(counts, self.now())
    }
}

/// Runs `threads` threads making `calls` calls each to `check(thread, i)`, which returns
/// the cells it was admitted for (0 when refused); returns the cells admitted in all.
#[cfg(test)]
pub(crate) fn admitted_across_threads(
    threads: u32,
    calls: u32,
    check: impl Fn(u32, u32) -> u64 + Sync,
) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (admitted, check) = (&admitted, &check);
            s.spawn(move || {
                for i in 0..calls {
                    admitted.fetch_add(check(t, i), Ordering::Relaxed);
                }
            });
        }
    });
    admitted.into_inner()
}
