//! "N per minute/hour/day" as users state quotas: the sliding-window counter.
//!
//! Two fixed windows are kept, the current and the previous one. The estimated count is
//! `previous × (unexpired share of the previous window) + current`, the approximation
//! Cloudflare and most Redis recipes use. It assumes the previous window's requests were
//! spread evenly, so it can refuse a little early or admit a little late at a boundary,
//! but the current fixed window's count never exceeds the limit, so no aligned window ever
//! admits more than `limit`.

use crate::{CheckError, Rejected};
use backstop_core::config::{ConfigError, ensure};
use backstop_core::{Clock, DefaultClock};
use dashmap::DashMap;
use serde::Serialize;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
struct WindowState {
    index: u64,
    current: u64,
    previous: u64,
}

impl WindowState {
    /// Charges `cost` if the estimate allows, else returns how long until it would.
    fn charge(&mut self, now: u64, window: u64, limit: u64, cost: u64) -> Result<(), Duration> {
        let index = now / window;
        if index == self.index + 1 {
            self.previous = self.current;
            self.current = 0;
        } else if index != self.index {
            self.previous = 0;
            self.current = 0;
        }
        self.index = index;
        let position = u128::from(now % window);
        let window = u128::from(window);
        let (previous, current) = (u128::from(self.previous), u128::from(self.current));
        let (limit, cost) = (u128::from(limit), u128::from(cost));
        // Scaled by `window` to stay in integers: previous × (window − position) / window.
        let weighted = previous * (window - position) + (current + cost) * window;
        if weighted <= limit * window {
            self.current += cost as u64;
            return Ok(());
        }
        let wait = if current + cost <= limit {
            // Wait in this window until the previous window's weight has decayed enough.
            let needed = window - (limit - current - cost) * window / previous.max(1);
            needed.saturating_sub(position).max(1)
        } else {
            // Next window: this window's count becomes the decaying previous one.
            let needed = (limit.saturating_sub(cost) * window)
                .checked_div(current)
                .map_or(0, |kept| window - kept.min(window));
            window - position + needed
        };
        Err(Duration::from_nanos(
            u64::try_from(wait).unwrap_or(u64::MAX),
        ))
    }
}

/// Counters of a sliding-window limiter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowStats {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests refused.
    pub rejected: u64,
}

#[derive(Debug)]
struct Shared<C> {
    limit: u64,
    window_nanos: u64,
    clock: C,
    origin: Instant,
    allowed: AtomicU64,
    rejected: AtomicU64,
}

impl<C: Clock> Shared<C> {
    fn new(limit: u64, window: Duration, clock: C) -> Result<Self, ConfigError> {
        ensure(limit > 0, "limit", "must be at least 1")?;
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        ensure(window_nanos > 0, "window", "must be greater than zero")?;
        let origin = clock.now();
        Ok(Self {
            limit,
            window_nanos,
            clock,
            origin,
            allowed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    fn decide(&self, state: &mut WindowState, cost: u64) -> Result<(), CheckError> {
        if cost > self.limit {
            return Err(CheckError::InsufficientCapacity {
                cost,
                burst: self.limit,
            });
        }
        let elapsed = self.clock.now().saturating_duration_since(self.origin);
        let now = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        match state.charge(now, self.window_nanos, self.limit, cost) {
            Ok(()) => {
                self.allowed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(retry_after) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(?retry_after, "sliding window refused a request");
                Err(CheckError::Rejected(Rejected { retry_after }))
            }
        }
    }

    fn stats(&self) -> WindowStats {
        WindowStats {
            allowed: self.allowed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// At most `limit` cells per `window` (sliding-window counter approximation).
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::SlidingWindowLimiter;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let per_minute =
///     SlidingWindowLimiter::with_clock(3, Duration::from_secs(60), clock.clone()).unwrap();
/// assert!(per_minute.check_n(3).is_ok());
/// assert!(per_minute.check().is_err());
/// clock.advance(Duration::from_secs(120));
/// assert!(per_minute.check().is_ok());
/// ```
#[derive(Debug)]
pub struct SlidingWindowLimiter<C = DefaultClock> {
    shared: Shared<C>,
    // Three words under an uncontended mutex: cheaper to reason about than a lock-free
    // two-bucket roll, and a decision holds it for a few arithmetic operations.
    state: Mutex<WindowState>,
}

impl SlidingWindowLimiter<DefaultClock> {
    /// `limit` cells per `window` on the [`DefaultClock`].
    pub fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(limit, window, DefaultClock::default())
    }
}

impl<C: Clock> SlidingWindowLimiter<C> {
    /// `limit` cells per `window`, time read from `clock`.
    pub fn with_clock(limit: u64, window: Duration, clock: C) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Shared::new(limit, window, clock)?,
            state: Mutex::new(WindowState::default()),
        })
    }

    /// Admits one cell.
    pub fn check(&self) -> Result<(), CheckError> {
        self.check_n(1)
    }

    /// Admits `cost` cells all or nothing.
    pub fn check_n(&self, cost: u64) -> Result<(), CheckError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.decide(&mut state, cost)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WindowStats {
        self.shared.stats()
    }
}

/// A [`SlidingWindowLimiter`] per key (user, tenant, model), on `dashmap`.
///
/// ```
/// use backstop_limit::KeyedSlidingWindow;
/// use std::time::Duration;
///
/// let per_day = KeyedSlidingWindow::new(1_000, Duration::from_secs(86_400)).unwrap();
/// assert!(per_day.check_key_n(&"ann", 1_000).is_ok());
/// assert!(per_day.check_key(&"ann").is_err());
/// assert!(per_day.check_key(&"bob").is_ok());
/// ```
#[derive(Debug)]
pub struct KeyedSlidingWindow<K: Hash + Eq, C = DefaultClock> {
    shared: Shared<C>,
    states: DashMap<K, WindowState>,
}

impl<K: Hash + Eq + Clone> KeyedSlidingWindow<K, DefaultClock> {
    /// `limit` cells per `window` per key on the [`DefaultClock`].
    pub fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(limit, window, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedSlidingWindow<K, C> {
    /// `limit` cells per `window` per key, time read from `clock`.
    pub fn with_clock(limit: u64, window: Duration, clock: C) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Shared::new(limit, window, clock)?,
            states: DashMap::new(),
        })
    }

    /// Admits one cell for `key`.
    pub fn check_key(&self, key: &K) -> Result<(), CheckError> {
        self.check_key_n(key, 1)
    }

    /// Admits `cost` cells for `key` all or nothing; the entry's shard lock serialises
    /// decisions for one key.
    pub fn check_key_n(&self, key: &K, cost: u64) -> Result<(), CheckError> {
        if let Some(mut state) = self.states.get_mut(key) {
            return self.shared.decide(&mut state, cost);
        }
        let mut state = self.states.entry(key.clone()).or_default();
        self.shared.decide(&mut state, cost)
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WindowStats {
        self.shared.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::ManualClock;
    use proptest::prelude::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn previous_window_weight_decays() {
        let clock = ManualClock::new();
        let limiter = SlidingWindowLimiter::with_clock(10, WINDOW, clock.clone()).unwrap();
        limiter.check_n(10).unwrap();
        // A quarter into the next window, 75% of the previous 10 still count.
        clock.advance(Duration::from_secs(75));
        assert!(limiter.check_n(2).is_ok());
        let refused = limiter.check_n(1).unwrap_err();
        // 7.5 + 2 + 1 > 10 until the previous weight is at most 7: at 30% into the window.
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(3)));
        clock.advance(Duration::from_secs(3));
        assert!(limiter.check_n(1).is_ok());
        assert_eq!(
            limiter.stats(),
            WindowStats {
                allowed: 3,
                rejected: 1
            }
        );
    }

    #[test]
    fn bad_configuration_is_a_typed_error() {
        assert!(SlidingWindowLimiter::new(0, WINDOW).is_err());
        assert!(SlidingWindowLimiter::new(1, Duration::ZERO).is_err());
        let limiter = SlidingWindowLimiter::new(5, WINDOW).unwrap();
        assert!(matches!(
            limiter.check_n(6),
            Err(CheckError::InsufficientCapacity { cost: 6, burst: 5 })
        ));
    }

    #[test]
    fn keys_are_independent() {
        let clock = ManualClock::new();
        let limiter = KeyedSlidingWindow::with_clock(2, WINDOW, clock).unwrap();
        assert!(limiter.check_key_n(&1, 2).is_ok());
        assert!(limiter.check_key(&1).is_err());
        assert!(limiter.check_key(&2).is_ok());
        assert_eq!(limiter.len(), 2);
    }

    proptest! {
        /// Reference model: exact per-aligned-window counts. The approximation never admits
        /// more than `limit` in any aligned window, and every refusal names a positive wait.
        #[test]
        fn never_exceeds_limit_in_any_fixed_window(
            limit in 1u64..20,
            steps in proptest::collection::vec((0u64..30_000, 1u64..5), 1..200),
        ) {
            let clock = ManualClock::new();
            let limiter = SlidingWindowLimiter::with_clock(limit, WINDOW, clock.clone()).unwrap();
            let mut per_window = std::collections::HashMap::<u64, u64>::new();
            for (advance_ms, cost) in steps {
                clock.advance(Duration::from_millis(advance_ms));
                let window = clock.elapsed().as_nanos() as u64 / WINDOW.as_nanos() as u64;
                match limiter.check_n(cost) {
                    Ok(()) => *per_window.entry(window).or_default() += cost,
                    Err(CheckError::Rejected(r)) => {
                        prop_assert!(cost <= limit);
                        prop_assert!(r.retry_after > Duration::ZERO);
                    }
                    Err(CheckError::InsufficientCapacity { .. }) => prop_assert!(cost > limit),
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                }
                prop_assert!(per_window.values().all(|&n| n <= limit));
            }
        }
    }
}
