//! Several quotas at once (60/min AND 1,000/hour AND 10,000/day), charged all or none.

use crate::error::CheckError;
use crate::gcra::Gcra;
// The Redis limiter checks its costs and decides locally with the same type.
pub(crate) use crate::gcra::Costs;
use crate::limiter::Limiter;
use crate::quota::Quota;
use crate::store::{DirectStore, KeyedStore};
use backstop_core::config::{ConfigError, ensure};
use backstop_core::{Clock, DefaultClock};
use std::hash::Hash;

/// GCRA over several quotas at once, whatever the store.
type MultiGcra = Gcra<Box<[Quota]>>;

/// A limiter that admits a request only if every one of its quotas admits it, and then
/// charges all of them; a refusal charges none. A cheap-clone handle.
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
///
/// Quotas of different units are charged different costs with
/// [`check_costs`](Limiter::check_costs): one call admits a request against
/// requests-per-minute *and* its tokens against tokens-per-minute, or neither.
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::{MultiRateLimiter, Quota};
///
/// let budget = MultiRateLimiter::with_clock(
///     vec![Quota::per_minute(3).unwrap(), Quota::per_minute(2_000).unwrap()],
///     ManualClock::new(),
/// )
/// .unwrap();
/// assert!(budget.check_costs(&[1, 1_500]).is_ok());
/// // Too many tokens: refused, and the request slot is not spent either.
/// assert!(budget.check_costs(&[1, 1_000]).is_err());
/// assert!(budget.check_costs(&[1, 500]).is_ok());
/// assert_eq!(budget.stats().remaining, 0, "tokens used up; one request left");
/// ```
pub type MultiRateLimiter<C = DefaultClock> = Limiter<DirectStore<MultiGcra>, C>;

impl MultiRateLimiter<DefaultClock> {
    /// A multi-quota limiter on the [`DefaultClock`].
    pub fn new(quotas: Vec<Quota>) -> Result<Self, ConfigError> {
        Self::with_clock(quotas, DefaultClock::default())
    }
}

impl<C: Clock> MultiRateLimiter<C> {
    /// A multi-quota limiter reading time from `clock`; at least one quota is required.
    pub fn with_clock(quotas: Vec<Quota>, clock: C) -> Result<Self, ConfigError> {
        Ok(Self::from_store(
            DirectStore::new(Gcra::several(quotas)?),
            clock,
        ))
    }

    /// Admits one cell against every quota.
    pub fn check(&self) -> Result<(), CheckError> {
        self.check_n(1)
    }

    /// Admits `costs[i]` cells against quota `i` for every quota, or charges none: a
    /// request and its tokens against a requests quota and a tokens quota at once.
    /// `costs` must hold one cost per quota, in the order the quotas were given.
    pub fn check_costs(&self, costs: &[u64]) -> Result<(), CheckError> {
        self.check_with(&(), Costs::Each(costs))
            .map_err(CheckError::from)
    }
}

/// A [`MultiRateLimiter`] per key: each user gets "60/min AND 1,000/hour", all or none.
///
/// Per key it holds one 8-byte word per quota. Memory stays bounded as with
/// [`KeyedRateLimiter`](crate::KeyedRateLimiter): a key whose every quota is replenished
/// decides like a new key, so [`retain_recent`](Limiter::retain_recent) drops it without
/// changing a decision, and [`with_max_keys`](Limiter::with_max_keys) caps the map
/// (sweeping a full map at most once per `max_keys / 8` refused new keys). A cheap-clone
/// handle.
///
/// ```
/// use backstop_core::ManualClock;
/// use backstop_limit::{KeyedMultiRateLimiter, Quota};
///
/// let per_user = KeyedMultiRateLimiter::with_clock(
///     vec![Quota::per_minute(60).unwrap(), Quota::per_hour(1_000).unwrap()],
///     ManualClock::new(),
/// )
/// .unwrap();
/// assert!(per_user.check_key_n(&"ann", 60).is_ok());
/// assert!(per_user.check_key(&"ann").is_err());
/// assert!(per_user.check_key(&"bob").is_ok());
/// ```
pub type KeyedMultiRateLimiter<K, C = DefaultClock> = Limiter<KeyedStore<K, MultiGcra>, C>;

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedMultiRateLimiter<K, DefaultClock> {
    /// A keyed multi-quota limiter on the [`DefaultClock`].
    pub fn new(quotas: Vec<Quota>) -> Result<Self, ConfigError> {
        Self::with_clock(quotas, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> KeyedMultiRateLimiter<K, C> {
    /// Every key is held to all of `quotas` (at least one) unless overridden.
    pub fn with_clock(quotas: Vec<Quota>, clock: C) -> Result<Self, ConfigError> {
        Ok(Self::from_store(
            KeyedStore::new(Gcra::several(quotas)?),
            clock,
        ))
    }

    /// Gives `key` its own quotas (a premium tenant), as many as the default and in the
    /// same order so its usage carries over quota by quota.
    pub fn set_quotas(&self, key: K, quotas: Vec<Quota>) -> Result<(), ConfigError> {
        ensure(
            quotas.len() == self.algorithm().quotas().len(),
            "quotas",
            "must hold as many quotas as the limiter's default",
        )?;
        self.store().set_override(key, quotas.into_boxed_slice());
        Ok(())
    }

    /// Returns `key` to the default quotas.
    pub fn remove_quotas(&self, key: &K) {
        self.store().remove_override(key);
    }

    /// Admits `costs[i]` cells for `key` under its quota `i` for every quota, or charges
    /// none: a user's request and its tokens against their requests and tokens quotas.
    ///
    /// ```
    /// use backstop_core::ManualClock;
    /// use backstop_limit::{KeyedMultiRateLimiter, Quota};
    ///
    /// // Requests per minute, tokens per minute.
    /// let budgets = KeyedMultiRateLimiter::with_clock(
    ///     vec![Quota::per_minute(60).unwrap(), Quota::per_minute(10_000).unwrap()],
    ///     ManualClock::new(),
    /// )
    /// .unwrap();
    /// assert!(budgets.check_key_costs(&"ann", &[1, 9_000]).is_ok());
    /// assert!(budgets.check_key_costs(&"ann", &[1, 2_000]).unwrap_err().retry_after().is_some());
    /// assert!(budgets.check_key_costs(&"ann", &[1]).is_err(), "one cost per quota");
    /// ```
    pub fn check_key_costs(&self, key: &K, costs: &[u64]) -> Result<(), CheckError> {
        self.check_with(key, Costs::Each(costs))
            .map_err(CheckError::from)
    }

    /// Charges `costs` to `key` (the Redis limiter's local fallback decides through it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn check_key_with(&self, key: &K, costs: Costs<'_>) -> Result<(), CheckError> {
        self.check_with(key, costs).map_err(CheckError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra::{decide, remaining};
    use crate::limiter::admitted_across_threads;
    use crate::store::flood_at_the_cap;
    use backstop_core::ManualClock;
    use proptest::prelude::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

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
        let per_second = &l.store().state()[0];
        assert_eq!(
            remaining(
                per_second.load(Ordering::Relaxed),
                l.now(),
                &l.algorithm().quotas()[0]
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
        let total = admitted_across_threads(4, 500, |t, i| {
            let cost = u64::from((i + t) % 3 + 1);
            if l.check_n(cost).is_ok() { cost } else { 0 }
        });
        assert!(total <= 250, "admitted {total} cells over a burst of 250");
        assert!(total >= 200, "refunds left the limiter usable: {total}");
    }

    #[test]
    fn keyed_quotas_overrides_sweep_and_cap() {
        let clock = ManualClock::new();
        let l = KeyedMultiRateLimiter::with_clock(
            vec![Quota::per_second(2).unwrap(), Quota::per_minute(3).unwrap()],
            clock.clone(),
        )
        .unwrap()
        .with_max_keys(2);
        l.check_key_n(&1, 2).unwrap();
        clock.advance(Duration::from_secs(1));
        // The per-second quota is back, the per-minute one has 1 cell left: all or none.
        assert!(l.check_key_n(&1, 2).unwrap_err().retry_after().is_some());
        l.check_key(&1).unwrap();
        assert!(
            l.set_quotas(2, vec![Quota::per_second(9).unwrap()])
                .is_err()
        );
        l.set_quotas(
            2,
            vec![
                Quota::per_second(10).unwrap(),
                Quota::per_minute(10).unwrap(),
            ],
        )
        .unwrap();
        l.check_key_n(&2, 10).unwrap();
        assert_eq!(
            l.check_key(&3),
            Err(CheckError::TooManyKeys { max_keys: 2 })
        );
        // A minute later every quota of both keys is replenished: the cap sweeps them.
        clock.advance(Duration::from_secs(60));
        l.check_key(&3).unwrap();
        assert_eq!(l.len(), 1);
        l.remove_quotas(&2);
        let s = l.stats();
        assert_eq!(
            (s.admitted, s.rejected, s.keys, s.evicted, s.overrides),
            (4, 2, 1, 2, 0)
        );
    }

    #[test]
    fn a_key_flood_at_the_cap_sweeps_once_per_eighth_of_the_cap() {
        let l = KeyedMultiRateLimiter::with_clock(
            vec![Quota::per_hour(1).unwrap(), Quota::per_hour(10).unwrap()],
            ManualClock::new(),
        )
        .unwrap()
        .with_max_keys(80);
        assert_eq!(flood_at_the_cap(&l, 80), 800, "one sweep per 10 refusals");
        assert_eq!(l.len(), 80);
    }

    /// Runs `steps` (a clock advance, then one cost per quota) against a limiter of `quotas`
    /// and a model of separate GCRA quotas (each quota's TAT): `check` (the limiter charging
    /// the costs) must admit exactly when every quota admits its cost and the costs `fit`
    /// (none above a burst); then the model is charged like the limiter (all or none) and
    /// every quota's room must match.
    fn follows_the_model(
        quotas: Vec<Quota>,
        steps: impl IntoIterator<Item = (u64, [u64; 2])>,
        fit: impl Fn([u64; 2]) -> bool,
        check: impl Fn(&MultiRateLimiter<ManualClock>, [u64; 2]) -> bool,
    ) -> Result<(), TestCaseError> {
        let clock = ManualClock::new();
        let l = MultiRateLimiter::with_clock(quotas.clone(), clock.clone()).unwrap();
        let mut model = [0u64; 2];
        for (advance, costs) in steps {
            clock.advance(Duration::from_nanos(advance));
            let now = l.now();
            let decisions: Vec<_> = quotas
                .iter()
                .zip(model.iter())
                .zip(costs)
                .map(|((q, &tat), cost)| decide(tat, now, cost, q))
                .collect();
            let expected = fit(costs) && decisions.iter().all(Result::is_ok);
            prop_assert_eq!(check(&l, costs), expected);
            if expected {
                for (tat, d) in model.iter_mut().zip(decisions) {
                    *tat = d.unwrap_or(*tat);
                }
            }
            for (i, q) in quotas.iter().enumerate() {
                prop_assert_eq!(
                    remaining(l.store().state()[i].load(Ordering::Relaxed), now, q),
                    remaining(model[i], now, q)
                );
            }
        }
        Ok(())
    }

    proptest! {
        /// A keyed limiter decides for each key exactly as a separate direct limiter per
        /// key would, and sweeping in between changes nothing.
        #[test]
        fn keyed_matches_one_direct_limiter_per_key(
            steps in prop::collection::vec((0u64..400_000_000, 0u8..3, 0u64..6, any::<bool>()), 1..150),
        ) {
            let clock = ManualClock::new();
            let quotas = vec![
                Quota::per_second(4).unwrap().with_burst(5).unwrap(),
                Quota::per_second(1).unwrap().with_burst(8).unwrap(),
            ];
            let keyed = KeyedMultiRateLimiter::with_clock(quotas.clone(), clock.clone()).unwrap();
            let direct: Vec<_> = (0..3)
                .map(|_| MultiRateLimiter::with_clock(quotas.clone(), clock.clone()).unwrap())
                .collect();
            for (advance, key, cost, sweep) in steps {
                clock.advance(Duration::from_nanos(advance));
                if sweep {
                    keyed.retain_recent();
                }
                prop_assert_eq!(
                    keyed.check_key_n(&key, cost),
                    direct[usize::from(key)].check_n(cost)
                );
            }
        }

        /// With a cost per quota, the limiter admits exactly when every quota would
        /// admit its own cost, and then charges each its own cost; a refusal charges none.
        #[test]
        fn per_quota_costs_are_charged_all_or_none(
            steps in prop::collection::vec((0u64..500_000_000, 0u64..3, 0u64..12), 1..200),
        ) {
            follows_the_model(
                vec![
                    Quota::per_second(2).unwrap().with_burst(3).unwrap(),
                    Quota::per_second(8).unwrap().with_burst(10).unwrap(),
                ],
                steps.into_iter().map(|(advance, requests, tokens)| (advance, [requests, tokens])),
                |[_, tokens]| tokens <= 10,
                |l, costs| l.check_costs(&costs).is_ok(),
            )?;
        }

        /// Sequentially, the limiter admits exactly when every separate limiter would,
        /// and then all of them are charged.
        #[test]
        fn matches_all_or_none_over_separate_limiters(
            steps in prop::collection::vec((0u64..500_000_000, 0u64..6), 1..200),
        ) {
            follows_the_model(
                vec![
                    Quota::per_second(4).unwrap().with_burst(5).unwrap(),
                    Quota::per_second(1).unwrap().with_burst(8).unwrap(),
                ],
                steps.into_iter().map(|(advance, cost)| (advance, [cost; 2])),
                |[cost, _]| cost <= 5,
                |l, [cost, _]| l.check_n(cost).is_ok(),
            )?;
        }
    }
}
