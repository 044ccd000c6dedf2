//! "N per minute/hour/day" as users state quotas: the sliding-window counter.
//!
//! Two fixed windows are kept, the current and the previous one. The estimated count is
//! `previous × (unexpired share of the previous window) + current`, the approximation
//! Cloudflare and most Redis recipes use. It assumes the previous window's requests were
//! spread evenly, so it can refuse a little early or admit a little late at a boundary,
//! but the current fixed window's count never exceeds the limit, so no aligned window ever
//! admits more than `limit`.

use crate::error::{CheckError, Refusal, limited};
use crate::limiter::Limiter;
use crate::store::{DirectStore, KeyedStore, RateAlgorithm, StateStore, sealed};
use backstop_core::config::{ConfigError, ensure};
use backstop_core::{Clock, DefaultClock, Rejected};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// One key's two windows: the current window's index and count, and the previous count.
// Public only because it is `SlidingWindow`'s state type in the sealed `RateAlgorithm`;
// not reachable from outside the crate.
#[allow(unreachable_pub)]
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowState {
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

    /// Moves the windows on to window number `index`.
    fn roll(&mut self, index: u64) {
        if index == self.index + 1 {
            self.previous = self.current;
            self.current = 0;
        } else if index != self.index {
            self.previous = 0;
            self.current = 0;
        }
        self.index = index;
    }

    /// Charges `cost` if the estimate allows, else returns how long until it would.
    fn charge(&mut self, now: u64, window: u64, limit: u64, cost: u64) -> Result<(), Duration> {
        self.roll(now / window);
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

    /// The estimate's room left at `now` for this state, without charging.
    fn remaining(mut self, now: u64, window: u64, limit: u64) -> u64 {
        self.roll(now / window);
        let position = u128::from(now % window);
        let window = u128::from(window);
        let allowed = u128::from(limit) * window;
        let weighted = u128::from(self.previous) * (window - position);
        let room = allowed.saturating_sub(weighted) / window;
        u64::try_from(room.saturating_sub(u128::from(self.current))).unwrap_or(u64::MAX)
    }
}

/// The sliding-window counter: at most `limit` cells per `window`, over the current and
/// the previous fixed window.
///
/// Its state is three words under a mutex per key (uncontended: a decision holds it for a
/// few arithmetic operations; cheaper to reason about than a lock-free two-bucket roll).
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u64,
    window_nanos: u64,
}

impl SlidingWindow {
    fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        ensure(limit > 0, "limit", "must be at least 1")?;
        backstop_core::config::ensure_positive_duration("window", window)?;
        Ok(Self {
            limit,
            window_nanos: backstop_core::time::nanos(window),
        })
    }
}

/// Windows count from the limiter's origin; the timeline starts at 1 (GCRA's "fresh").
fn since_origin(now: u64) -> u64 {
    now.saturating_sub(1)
}

fn lock(state: &Mutex<WindowState>) -> MutexGuard<'_, WindowState> {
    // Three plain integers: a panic elsewhere cannot leave them inconsistent.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl sealed::Sealed for SlidingWindow {}

impl RateAlgorithm for SlidingWindow {
    type State = Mutex<WindowState>;
    type Limits = u64;
    type Cost<'a> = u64;

    fn limits(&self) -> &u64 {
        &self.limit
    }

    fn new_state(&self, _: &u64) -> Mutex<WindowState> {
        Mutex::default()
    }

    fn single(cost: u64) -> u64 {
        cost
    }

    fn fit(limit: &u64, cost: u64) -> Result<(), Refusal> {
        if cost > *limit {
            return Err(Refusal::InsufficientCapacity {
                cost,
                burst: *limit,
            });
        }
        Ok(())
    }

    fn check(
        &self,
        limit: &u64,
        state: &Mutex<WindowState>,
        now: u64,
        cost: u64,
    ) -> Result<(), Refusal> {
        Self::fit(limit, cost)?;
        let now = since_origin(now);
        lock(state)
            .charge(now, self.window_nanos, *limit, cost)
            .map_err(|retry_after| {
                tracing::trace!(?retry_after, "sliding window refused a request");
                Refusal::Rejected(limited(0, retry_after))
            })
    }

    fn readiness(
        &self,
        limit: &u64,
        state: Option<&Mutex<WindowState>>,
        now: u64,
    ) -> Result<(), Rejected> {
        let mut copy = state.map(|s| *lock(s)).unwrap_or_default();
        copy.charge(since_origin(now), self.window_nanos, *limit, 1)
            .map_err(|wait| limited(0, wait))
    }

    fn remaining(&self, limit: &u64, state: Option<&Mutex<WindowState>>, now: u64) -> u64 {
        let copy = state.map(|s| *lock(s)).unwrap_or_default();
        copy.remaining(since_origin(now), self.window_nanos, *limit)
    }

    fn is_idle(&self, state: &Mutex<WindowState>, now: u64) -> bool {
        lock(state).is_idle(since_origin(now), self.window_nanos)
    }
}

/// At most `limit` cells per `window` (sliding-window counter approximation); `window`
/// is at most [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (a year). A
/// cheap-clone handle.
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
pub type SlidingWindowLimiter<C = DefaultClock> = Limiter<DirectStore<SlidingWindow>, C>;

impl SlidingWindowLimiter<DefaultClock> {
    /// `limit` cells per `window` on the [`DefaultClock`].
    pub fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(limit, window, DefaultClock::default())
    }
}

impl<C: Clock> SlidingWindowLimiter<C> {
    /// `limit` cells per `window`, time read from `clock`.
    pub fn with_clock(limit: u64, window: Duration, clock: C) -> Result<Self, ConfigError> {
        Ok(Self::from_store(
            DirectStore::new(SlidingWindow::new(limit, window)?),
            clock,
        ))
    }

    /// Admits one cell.
    pub fn check(&self) -> Result<(), CheckError> {
        self.check_n(1)
    }
}

/// A [`SlidingWindowLimiter`] per key (user, tenant, model), on `dashmap`.
///
/// Memory stays bounded like [`KeyedRateLimiter`](crate::KeyedRateLimiter)'s: a key whose
/// windows have both passed decides like a new key, so
/// [`retain_recent`](Limiter::retain_recent) drops it without changing any decision, and
/// [`with_max_keys`](Limiter::with_max_keys) caps the map (a full map refuses new keys with
/// [`CheckError::TooManyKeys`], sweeping for room on the first and then once per
/// `max_keys / 8` refused new keys). A cheap-clone handle.
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
pub type KeyedSlidingWindow<K, C = DefaultClock> = Limiter<KeyedStore<K, SlidingWindow>, C>;

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedSlidingWindow<K, DefaultClock> {
    /// `limit` cells per `window` per key on the [`DefaultClock`].
    pub fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(limit, window, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> KeyedSlidingWindow<K, C> {
    /// `limit` cells per `window` per key, time read from `clock`.
    pub fn with_clock(limit: u64, window: Duration, clock: C) -> Result<Self, ConfigError> {
        Ok(Self::from_store(
            KeyedStore::new(SlidingWindow::new(limit, window)?),
            clock,
        ))
    }

    /// Gives `key` its own limit per window (a premium tenant); its usage carries over.
    pub fn set_limit(&self, key: K, limit: u64) -> Result<(), ConfigError> {
        ensure(limit > 0, "limit", "must be at least 1")?;
        self.store().set_override(key, limit);
        Ok(())
    }

    /// Returns `key` to the default limit.
    pub fn remove_limit(&self, key: &K) {
        self.store().remove_override(key);
    }

    /// The limit per window `key` is held to.
    pub fn limit_for(&self, key: &K) -> u64 {
        self.store().peek(key, |limit, _| *limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimiterStats;
    use crate::store::flood_at_the_cap;
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
            LimiterStats {
                admitted: 3,
                rejected: 1,
                remaining: 0,
                ..LimiterStats::default()
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
            LimiterStats {
                admitted: 3,
                rejected: 3,
                keys: 1,
                evicted: 2,
                overrides: 0,
                cap_sweeps: 2,
                ..LimiterStats::default()
            }
        );
    }

    #[test]
    fn a_key_flood_at_the_cap_sweeps_once_per_eighth_of_the_cap() {
        let limiter = KeyedSlidingWindow::with_clock(1, WINDOW, ManualClock::new())
            .unwrap()
            .with_max_keys(16);
        assert_eq!(
            flood_at_the_cap(&limiter, 16),
            800,
            "one sweep per 2 refusals"
        );
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
