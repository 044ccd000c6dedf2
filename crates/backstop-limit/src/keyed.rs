//! Per-key GCRA limiters of one quota (per user, tenant, model) with bounded memory and
//! quota overrides.

use crate::gcra::Gcra;
use crate::limiter::Limiter;
use crate::quota::Quota;
use crate::store::{KeyedStore, StateStore};
use backstop_core::{Clock, DefaultClock};
use std::hash::Hash;

/// One GCRA limiter per key, each an 8-byte atomic in a sharded `DashMap` (a
/// [`KeyedStore`]).
///
/// Memory stays bounded: a key whose theoretical arrival time has passed is exactly as
/// good as a key never seen, so [`retain_recent`](Limiter::retain_recent) drops it without
/// changing any decision. With [`with_max_keys`](Limiter::with_max_keys) a full map refuses
/// new keys ([`CheckError::TooManyKeys`](crate::CheckError::TooManyKeys)) and sweeps itself
/// to make room: on the first new key at the cap, then once per `max_keys / 8` refused new
/// keys, so a flood of new keys costs O(1) amortized per call instead of a full sweep each.
/// A cheap-clone handle (clones share the keys).
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::{KeyedRateLimiter, Quota};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let limiter = KeyedRateLimiter::with_clock(Quota::per_minute(2).unwrap(), clock.clone());
/// limiter.set_quota("premium", Quota::per_minute(100).unwrap());
/// assert!(limiter.check_key(&"alice").is_ok());
/// assert!(limiter.check_key(&"alice").is_ok());
/// assert!(limiter.check_key(&"alice").is_err());
/// assert!(limiter.check_key_n(&"premium", 50).is_ok());
/// clock.advance(Duration::from_secs(60));
/// limiter.retain_recent();
/// assert_eq!(limiter.len(), 0);
/// ```
pub type KeyedRateLimiter<K, C = DefaultClock> = Limiter<KeyedStore<K, Gcra>, C>;

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedRateLimiter<K, DefaultClock> {
    /// A keyed limiter on the [`DefaultClock`].
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> KeyedRateLimiter<K, C> {
    /// A keyed limiter reading time from `clock`; every key gets `quota` unless overridden.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self::from_store(KeyedStore::new(Gcra::one(quota)), clock)
    }

    /// Gives `key` its own quota (a premium tenant). Its current usage carries over.
    pub fn set_quota(&self, key: K, quota: Quota) {
        self.store().set_override(key, quota);
    }

    /// Returns `key` to the default quota.
    pub fn remove_quota(&self, key: &K) {
        self.store().remove_override(key);
    }

    /// The quota `key` is held to.
    pub fn quota_for(&self, key: &K) -> Quota {
        self.store().peek(key, |quota, _| *quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::admitted_across_threads;
    use crate::store::flood_at_the_cap;
    use crate::{CheckError, RateLimiter};
    use backstop_core::ManualClock;
    use proptest::prelude::*;
    use std::time::Duration;

    fn keyed(rate: u64) -> (KeyedRateLimiter<u32, ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        (
            KeyedRateLimiter::with_clock(Quota::per_second(rate).unwrap(), clock.clone()),
            clock,
        )
    }

    #[test]
    fn keys_are_independent_and_overrides_apply() {
        let (l, _clock) = keyed(1);
        l.check_key(&1).unwrap();
        assert!(l.check_key(&1).is_err());
        l.check_key(&2).unwrap();
        l.set_quota(3, Quota::per_second(10).unwrap());
        for _ in 0..10 {
            l.check_key(&3).unwrap();
        }
        assert!(l.check_key(&3).is_err());
        assert_eq!(
            l.check_key_n(&4, 2).unwrap_err(),
            CheckError::InsufficientCapacity { cost: 2, burst: 1 }
        );
        assert_eq!(l.len(), 3, "an impossible request creates no key");
        l.remove_quota(&3);
        assert_eq!(l.quota_for(&3), Quota::per_second(1).unwrap());
        let s = l.stats();
        assert_eq!((s.admitted, s.rejected, s.keys, s.overrides), (12, 3, 3, 0));
    }

    #[test]
    fn sweep_drops_only_replenished_keys() {
        let (l, clock) = keyed(10);
        l.check_key_n(&1, 10).unwrap();
        clock.advance(Duration::from_millis(950));
        l.check_key(&2).unwrap();
        clock.advance(Duration::from_millis(50));
        assert_eq!(l.retain_recent(), 1);
        assert_eq!(l.len(), 1);
        assert_eq!(l.remaining(&2), 9);
        clock.advance(Duration::from_millis(50));
        assert_eq!(l.retain_recent(), 1);
        assert!(l.is_empty());
        assert_eq!(l.stats().evicted, 2);
    }

    #[test]
    fn key_cap_sweeps_then_refuses_only_when_all_keys_are_busy() {
        let (l, clock) = keyed(1);
        let l = l.with_max_keys(2);
        l.check_key(&1).unwrap();
        l.check_key(&2).unwrap();
        assert_eq!(
            l.check_key(&3).unwrap_err(),
            CheckError::TooManyKeys { max_keys: 2 }
        );
        assert!(l.check_key(&1).is_err(), "tracked keys still work");
        clock.advance(Duration::from_secs(1));
        l.check_key(&3).unwrap();
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_key_flood_at_the_cap_sweeps_once_per_eighth_of_the_cap() {
        let clock = ManualClock::new();
        let l = KeyedRateLimiter::with_clock(Quota::per_hour(1).unwrap(), clock.clone())
            .with_max_keys(64);
        // One sweep per 8 refusals (64 / 8), not one per refusal.
        assert_eq!(flood_at_the_cap(&l, 64), 800);
        // Once the tracked keys are idle, a later refusal's sweep makes room again.
        clock.advance(Duration::from_secs(3600));
        let admitted = (10_000..10_008).filter(|k| l.check_key(k).is_ok()).count();
        assert!(admitted >= 1, "a sweep within 8 refusals freed room");
    }

    /// Has `threads` threads check key 7 a thousand times each, every check followed by
    /// `between(thread, i)` (traffic on other keys, time passing); returns how many checks
    /// of key 7 were admitted.
    fn admitted_on_one_key(
        l: &KeyedRateLimiter<u32, ManualClock>,
        threads: u32,
        between: impl Fn(u32, u32) + Sync,
    ) -> u64 {
        admitted_across_threads(threads, 1000, |t, i| {
            let admitted = l.check_key(&7).is_ok();
            between(t, i);
            u64::from(admitted)
        })
    }

    #[test]
    fn many_threads_on_one_key_never_exceed_the_quota() {
        let (l, _clock) = keyed(1);
        l.set_quota(7, Quota::per_hour(500).unwrap());
        let admitted = admitted_on_one_key(&l, 4, |_, i| {
            let _ = l.check_key(&(i % 16 + 100));
        });
        assert_eq!(admitted, 500);
    }

    #[test]
    fn concurrent_sweeps_never_let_a_busy_key_over_its_quota() {
        let (l, clock) = keyed(1);
        l.set_quota(7, Quota::per_hour(300).unwrap());
        let admitted = std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..200 {
                    l.retain_recent();
                }
            });
            admitted_on_one_key(&l, 3, |t, i| {
                let _ = l.check_key(&(1000 + t * 1000 + i));
                if i % 50 == 0 {
                    clock.advance(Duration::from_millis(1));
                }
            })
        });
        // 60 ms of advances earn back nothing under 300/hour (one cell per 12 s).
        assert_eq!(admitted, 300);
        clock.advance(Duration::from_secs(3600));
        l.retain_recent();
        assert!(l.is_empty());
    }

    proptest! {
        /// Sweeps at random moments never change a decision: each key behaves exactly like
        /// its own direct limiter.
        #[test]
        fn keyed_matches_independent_direct_limiters_despite_sweeps(
            steps in prop::collection::vec((0u64..400_000_000, 0u32..4, 0u64..4, any::<bool>()), 1..200),
        ) {
            let clock = ManualClock::new();
            let quota = Quota::per_second(5).unwrap().with_burst(3).unwrap();
            let l = KeyedRateLimiter::with_clock(quota, clock.clone());
            let direct: Vec<_> = (0..4).map(|_| RateLimiter::with_clock(quota, clock.clone())).collect();
            for (advance, key, cost, sweep) in steps {
                clock.advance(Duration::from_nanos(advance));
                if sweep {
                    l.retain_recent();
                }
                prop_assert_eq!(l.check_key_n(&key, cost), direct[key as usize].check_n(cost));
            }
        }
    }
}
