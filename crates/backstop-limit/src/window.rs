//! "N per minute/hour/day" as users state quotas: the sliding-window counter.
//!
//! Two fixed windows are kept, the current and the previous one. The estimated count is
//! `previous × (unexpired share of the previous window) + current`, the approximation
//! Cloudflare and most Redis recipes use. It assumes the previous window's requests were
//! spread evenly, so it can refuse a little early or admit a little late at a boundary,
//! but the current fixed window's count never exceeds the limit, so no aligned window ever
//! admits more than `limit`.

use crate::CheckError;
use crate::cap::KeyCap;
use crate::error::limited;
use backstop_core::config::{ConfigError, ensure};
use backstop_core::{Clock, DefaultClock};
use dashmap::DashMap;
use serde::Serialize;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default)]
struct WindowState {
    index: u64,
    current: u64,
    previous: u64,
}

impl WindowState {
    /// Whether the state would decide exactly like a fresh one at `now`: both of its
    /// windows have passed, or only the previous one counts and it is empty.
    fn is_idle(&self, now: u64, window: u64) -> bool {
        let index = now / window;
        index >= self.index.saturating_add(2) || (index == self.index + 1 && self.current == 0)
    }

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
#[non_exhaustive]
pub struct SlidingWindowStats {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused (over the limit or impossible).
    pub rejected: u64,
}

#[derive(Debug)]
struct Shared<C> {
    limit: u64,
    window_nanos: u64,
    clock: C,
    origin: u64,
    admitted: AtomicU64,
    rejected: AtomicU64,
}

impl<C: Clock> Shared<C> {
    fn new(limit: u64, window: Duration, clock: C) -> Result<Self, ConfigError> {
        ensure(limit > 0, "limit", "must be at least 1")?;
        backstop_core::config::ensure_duration("window", window)?;
        let window_nanos = backstop_core::time::nanos(window);
        ensure(window_nanos > 0, "window", "must be greater than zero")?;
        let origin = clock.now_nanos();
        Ok(Self {
            limit,
            window_nanos,
            clock,
            origin,
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.clock.now_nanos().saturating_sub(self.origin)
    }

    fn decide(&self, state: &mut WindowState, limit: u64, cost: u64) -> Result<(), CheckError> {
        if cost > limit {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(CheckError::InsufficientCapacity { cost, burst: limit });
        }
        match state.charge(self.now(), self.window_nanos, limit, cost) {
            Ok(()) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(retry_after) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(?retry_after, "sliding window refused a request");
                Err(CheckError::Rejected(limited(0, retry_after)))
            }
        }
    }

    fn stats(&self) -> SlidingWindowStats {
        SlidingWindowStats {
            admitted: self.admitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// At most `limit` cells per `window` (sliding-window counter approximation); `window`
/// is at most [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (a year).
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
        self.shared.decide(&mut state, self.shared.limit, cost)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SlidingWindowStats {
        self.shared.stats()
    }
}

/// Counters and key bookkeeping of a [`KeyedSlidingWindow`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyedSlidingWindowStats {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused (over the limit, impossible, or over the key cap).
    pub rejected: u64,
    /// Keys tracked now.
    pub keys: usize,
    /// Keys dropped by sweeps since creation.
    pub evicted: u64,
    /// Keys with their own limit.
    pub overrides: usize,
    /// Sweeps a full map ran to make room for a new key (at most one per eighth of the
    /// cap's worth of refused new keys).
    pub cap_sweeps: u64,
}

/// A [`SlidingWindowLimiter`] per key (user, tenant, model), on `dashmap`.
///
/// Memory stays bounded like [`KeyedRateLimiter`](crate::KeyedRateLimiter)'s: a key whose
/// windows have both passed decides like a new key, so [`retain_recent`](Self::retain_recent)
/// drops it without changing any decision, and [`with_max_keys`](Self::with_max_keys) caps
/// the map (a full map refuses new keys with [`CheckError::TooManyKeys`], sweeping for room
/// on the first and then once per `max_keys / 8` refused new keys).
///
/// ```
/// use backstop_limit::KeyedSlidingWindow;
/// use std::time::Duration;
///
/// let per_day = KeyedSlidingWindow::new(1_000, Duration::from_secs(86_400)).unwrap();
/// per_day.set_limit("premium", 10_000).unwrap();
/// assert!(per_day.check_key_n(&"ann", 1_000).is_ok());
/// assert!(per_day.check_key(&"ann").is_err());
/// assert!(per_day.check_key_n(&"premium", 5_000).is_ok());
/// ```
#[derive(Debug)]
pub struct KeyedSlidingWindow<K: Hash + Eq, C = DefaultClock> {
    shared: Shared<C>,
    states: DashMap<K, WindowState>,
    overrides: DashMap<K, u64>,
    // Skips the override lookup on the hot path while there are none.
    has_overrides: AtomicBool,
    cap: KeyCap,
    evicted: AtomicU64,
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
            overrides: DashMap::new(),
            has_overrides: AtomicBool::new(false),
            cap: KeyCap::unbounded(),
            evicted: AtomicU64::new(0),
        })
    }

    /// Caps the number of tracked keys; `0` is treated as 1.
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.cap = KeyCap::at_most(max_keys);
        self
    }

    /// Gives `key` its own limit per window (a premium tenant); its usage carries over.
    pub fn set_limit(&self, key: K, limit: u64) -> Result<(), ConfigError> {
        ensure(limit > 0, "limit", "must be at least 1")?;
        self.overrides.insert(key, limit);
        self.has_overrides.store(true, Ordering::Release);
        tracing::debug!(target: "backstop_limit", limit, "sliding-window limit override set");
        Ok(())
    }

    /// Returns `key` to the default limit.
    pub fn remove_limit(&self, key: &K) {
        self.overrides.remove(key);
        if self.overrides.is_empty() {
            self.has_overrides.store(false, Ordering::Release);
        }
    }

    /// The limit per window `key` is held to.
    pub fn limit_for(&self, key: &K) -> u64 {
        if self.has_overrides.load(Ordering::Acquire)
            && let Some(limit) = self.overrides.get(key)
        {
            return *limit;
        }
        self.shared.limit
    }

    /// Admits one cell for `key`.
    pub fn check_key(&self, key: &K) -> Result<(), CheckError> {
        self.check_key_n(key, 1)
    }

    /// Admits `cost` cells for `key` all or nothing; the entry's shard lock serialises
    /// decisions for one key.
    pub fn check_key_n(&self, key: &K, cost: u64) -> Result<(), CheckError> {
        let limit = self.limit_for(key);
        if let Some(mut state) = self.states.get_mut(key) {
            return self.shared.decide(&mut state, limit, cost);
        }
        if cost > limit {
            return self.shared.decide(&mut WindowState::default(), limit, cost);
        }
        if !self.cap.has_room(
            || self.states.len(),
            || {
                self.retain_recent();
            },
        ) {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(CheckError::TooManyKeys {
                max_keys: self.cap.max_keys(),
            });
        }
        let mut state = self.states.entry(key.clone()).or_default();
        self.shared.decide(&mut state, limit, cost)
    }

    /// Drops every key whose windows no longer count; returns how many were dropped.
    ///
    /// Decisions are unchanged by a sweep, so call it as often as memory needs.
    pub fn retain_recent(&self) -> usize {
        let now = self.shared.now();
        let window = self.shared.window_nanos;
        let before = self.states.len();
        self.states.retain(|_, state| !state.is_idle(now, window));
        let dropped = before.saturating_sub(self.states.len());
        if dropped > 0 {
            self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(target: "backstop_limit", dropped, "idle sliding-window keys swept");
        }
        dropped
    }

    /// Releases spare capacity of the map after a large sweep.
    pub fn shrink_to_fit(&self) {
        self.states.shrink_to_fit();
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// A snapshot of the counters and key bookkeeping.
    pub fn stats(&self) -> KeyedSlidingWindowStats {
        let counts = self.shared.stats();
        KeyedSlidingWindowStats {
            admitted: counts.admitted,
            rejected: counts.rejected,
            keys: self.states.len(),
            evicted: self.evicted.load(Ordering::Relaxed),
            overrides: self.overrides.len(),
            cap_sweeps: self.cap.sweeps(),
        }
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
            SlidingWindowStats {
                admitted: 3,
                rejected: 1
            }
        );
    }

    #[test]
    fn bad_configuration_is_a_typed_error() {
        assert!(SlidingWindowLimiter::new(0, WINDOW).is_err());
        assert!(SlidingWindowLimiter::new(1, Duration::ZERO).is_err());
        assert_eq!(
            SlidingWindowLimiter::new(1, Duration::from_secs(400 * 86_400))
                .unwrap_err()
                .field(),
            "window"
        );
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

    #[test]
    fn overrides_sweep_and_key_cap() {
        let clock = ManualClock::new();
        let limiter = KeyedSlidingWindow::with_clock(2, WINDOW, clock.clone())
            .unwrap()
            .with_max_keys(2);
        assert!(limiter.set_limit(9, 0).is_err());
        limiter.set_limit(9, 5).unwrap();
        assert_eq!(limiter.limit_for(&9), 5);
        assert!(limiter.check_key_n(&9, 5).is_ok());
        assert!(limiter.check_key(&9).is_err());
        assert!(limiter.check_key(&1).is_ok());
        assert_eq!(
            limiter.check_key(&2),
            Err(CheckError::TooManyKeys { max_keys: 2 })
        );
        assert!(
            limiter.check_key_n(&3, 3).is_err(),
            "an impossible cost creates no key"
        );
        assert_eq!(limiter.len(), 2);
        // One window later the previous window still weighs on both keys.
        clock.advance(WINDOW);
        assert_eq!(limiter.retain_recent(), 0);
        // Two windows later both keys decide like new ones, so the sweep drops them.
        clock.advance(WINDOW);
        assert!(
            limiter.check_key(&2).is_ok(),
            "a full map sweeps to make room"
        );
        assert_eq!(limiter.len(), 1);
        limiter.remove_limit(&9);
        assert_eq!(limiter.limit_for(&9), 2);
        assert_eq!(
            limiter.stats(),
            KeyedSlidingWindowStats {
                admitted: 3,
                rejected: 3,
                keys: 1,
                evicted: 2,
                overrides: 0,
                cap_sweeps: 2,
            }
        );
    }

    #[test]
    fn a_key_flood_at_the_cap_sweeps_once_per_eighth_of_the_cap() {
        let limiter = KeyedSlidingWindow::with_clock(1, WINDOW, ManualClock::new())
            .unwrap()
            .with_max_keys(16);
        for key in 0..16 {
            limiter.check_key(&key).unwrap();
        }
        for key in 16..1_616 {
            assert!(limiter.check_key(&key).is_err());
        }
        assert_eq!(limiter.stats().cap_sweeps, 800, "one sweep per 2 refusals");
    }

    proptest! {
        /// A sweep never changes a decision: a swept limiter and an unswept one see the
        /// same sequence and decide the same.
        #[test]
        fn sweeping_is_lossless(
            steps in proptest::collection::vec((0u64..90_000, 0u32..4, 1u64..4, any::<bool>()), 1..150),
        ) {
            let clock = ManualClock::new();
            let swept = KeyedSlidingWindow::with_clock(5, WINDOW, clock.clone()).unwrap();
            let kept = KeyedSlidingWindow::with_clock(5, WINDOW, clock.clone()).unwrap();
            for (advance_ms, key, cost, sweep) in steps {
                clock.advance(Duration::from_millis(advance_ms));
                if sweep {
                    swept.retain_recent();
                }
                prop_assert_eq!(swept.check_key_n(&key, cost), kept.check_key_n(&key, cost));
            }
        }

        /// Reference model: exact per-aligned-window counts. The approximation never admits
        /// more than `limit` in any aligned window, admits whenever the current and previous
        /// windows together leave room, and every refusal names a positive wait.
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
                let recent = per_window.get(&window).copied().unwrap_or(0)
                    + window.checked_sub(1).and_then(|w| per_window.get(&w)).copied().unwrap_or(0);
                // The estimate never weighs more than both windows' full counts, so while
                // they leave room for `cost` the request must pass.
                let must_admit = recent + cost <= limit;
                let decision = limiter.check_n(cost);
                prop_assert!(!must_admit || decision.is_ok(), "refused with room: {decision:?}");
                match decision {
                    Ok(()) => *per_window.entry(window).or_default() += cost,
                    Err(CheckError::Rejected(r)) => {
                        prop_assert!(cost <= limit);
                        prop_assert!(r.retry_after.unwrap() > Duration::ZERO);
                    }
                    Err(CheckError::InsufficientCapacity { .. }) => prop_assert!(cost > limit),
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                }
                prop_assert!(per_window.values().all(|&n| n <= limit));
            }
        }
    }
}
