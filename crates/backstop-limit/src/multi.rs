//! Several quotas at once (60/min AND 1,000/hour AND 10,000/day), charged all or none.

use crate::cap::KeyCap;
use crate::counters::Counters;
use crate::error::{CheckError, limited};
use crate::gcra::{LimiterStats, Timeline, decide, remaining};
use crate::keyed::KeyedStats;
use crate::quota::Quota;
use backstop_core::config::{ConfigError, ensure, ensure_at_most};
use backstop_core::{Clock, DefaultClock, QuotaState};
use dashmap::DashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
///
/// Quotas of different units are charged different costs with
/// [`check_costs`](Self::check_costs): one call admits a request against
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
        ensure_at_most("quotas", quotas.len() as u64, MAX_QUOTAS as u64)?;
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
        self.charge(Costs::Same(cost))
    }

    /// Admits `costs[i]` cells against quota `i` for every quota, or charges none: a
    /// request and its tokens against a requests quota and a tokens quota at once.
    /// `costs` must hold one cost per quota, in the order the quotas were given.
    pub fn check_costs(&self, costs: &[u64]) -> Result<(), CheckError> {
        self.charge(Costs::Each(costs))
    }

    fn charge(&self, costs: Costs<'_>) -> Result<(), CheckError> {
        let now = self.timeline.now_nanos();
        let result = charge_all(&self.quotas, &self.states, now, costs);
        self.counters.record(&result);
        result
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

/// The most quotas one multi-quota limiter holds (a refusal names its quota by index).
pub const MAX_QUOTAS: usize = 64;

/// What a check charges each quota.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Costs<'a> {
    /// The same cost to every quota.
    Same(u64),
    /// `costs[i]` to quota `i`.
    Each(&'a [u64]),
}

impl Costs<'_> {
    pub(crate) fn of(&self, quota: usize) -> u64 {
        match self {
            Self::Same(cost) => *cost,
            Self::Each(costs) => costs.get(quota).copied().unwrap_or(0),
        }
    }

    /// One cost per quota, none above its quota's burst (which no wait could admit).
    pub(crate) fn fit(&self, quotas: &[Quota]) -> Result<(), CostError> {
        if let Self::Each(costs) = self
            && costs.len() != quotas.len()
        {
            return Err(CostError::Mismatch {
                quotas: quotas.len(),
                costs: costs.len(),
            });
        }
        for (i, quota) in quotas.iter().enumerate() {
            let cost = self.of(i);
            if cost > quota.burst() {
                return Err(CostError::OverBurst {
                    cost,
                    burst: quota.burst(),
                });
            }
        }
        Ok(())
    }
}

/// Costs no wait could admit; each limiter reports it as its own error type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CostError {
    Mismatch { quotas: usize, costs: usize },
    OverBurst { cost: u64, burst: u64 },
}

impl From<CostError> for CheckError {
    fn from(error: CostError) -> Self {
        match error {
            CostError::Mismatch { quotas, costs } => Self::CostsMismatch { quotas, costs },
            CostError::OverBurst { cost, burst } => Self::InsufficientCapacity { cost, burst },
        }
    }
}

/// Charges each state its cost under its quota (same order), or charges none.
fn charge_all(
    quotas: &[Quota],
    states: &[AtomicU64],
    now: u64,
    costs: Costs<'_>,
) -> Result<(), CheckError> {
    costs.fit(quotas)?;
    for (i, (quota, state)) in quotas.iter().zip(states.iter()).enumerate() {
        if let Err(wait) = charge(state, now, costs.of(i), quota) {
            for (j, (quota, state)) in quotas[..i].iter().zip(states.iter()).enumerate() {
                refund(state, costs.of(j), quota);
            }
            return Err(CheckError::Rejected(limited(i, Duration::from_nanos(wait))));
        }
    }
    Ok(())
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

/// A [`MultiRateLimiter`] per key: each user gets "60/min AND 1,000/hour", all or none.
///
/// Per key it holds one 8-byte word per quota. Memory stays bounded as with
/// [`KeyedRateLimiter`](crate::KeyedRateLimiter): a key whose every quota is replenished
/// decides like a new key, so [`retain_recent`](Self::retain_recent) drops it without
/// changing a decision, and [`with_max_keys`](Self::with_max_keys) caps the map (sweeping
/// a full map at most once per `max_keys / 8` refused new keys).
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
#[derive(Debug)]
pub struct KeyedMultiRateLimiter<K: Hash + Eq, C = DefaultClock> {
    quotas: Box<[Quota]>,
    /// One name per quota, for [`quota_states`](Self::quota_states) and the headers built
    /// from them.
    names: Box<[Arc<str>]>,
    cells: DashMap<K, Box<[AtomicU64]>>,
    overrides: DashMap<K, Arc<[Quota]>>,
    // Skips the override lookup on the hot path while there are none.
    has_overrides: AtomicBool,
    cap: KeyCap,
    timeline: Timeline<C>,
    counters: Counters,
    evicted: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedMultiRateLimiter<K, DefaultClock> {
    /// A keyed multi-quota limiter on the [`DefaultClock`].
    pub fn new(quotas: Vec<Quota>) -> Result<Self, ConfigError> {
        Self::with_clock(quotas, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedMultiRateLimiter<K, C> {
    /// Every key is held to all of `quotas` (at least one) unless overridden.
    pub fn with_clock(quotas: Vec<Quota>, clock: C) -> Result<Self, ConfigError> {
        ensure(!quotas.is_empty(), "quotas", "must hold at least one quota")?;
        ensure_at_most("quotas", quotas.len() as u64, MAX_QUOTAS as u64)?;
        Ok(Self {
            names: (0..quotas.len())
                .map(|i| Arc::from(format!("q{i}")))
                .collect(),
            quotas: quotas.into_boxed_slice(),
            cells: DashMap::new(),
            overrides: DashMap::new(),
            has_overrides: AtomicBool::new(false),
            cap: KeyCap::unbounded(),
            timeline: Timeline::new(clock),
            counters: Counters::default(),
            evicted: AtomicU64::new(0),
        })
    }

    /// Caps the number of tracked keys; `0` is treated as 1.
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.cap = KeyCap::at_most(max_keys);
        self
    }

    /// Names the quotas, in order (`["requests", "tokens"]`), for
    /// [`quota_states`](Self::quota_states); the default names are `q0`, `q1`, …
    pub fn with_quota_names<I, S>(mut self, names: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        let names: Box<[Arc<str>]> = names.into_iter().map(Into::into).collect();
        ensure(
            names.len() == self.quotas.len(),
            "quota_names",
            "must name every quota, in order",
        )?;
        ensure(
            names.iter().all(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }),
            "quota_names",
            "must be non-empty and made of ASCII letters, digits, `-` and `_` (they become header names)",
        )?;
        self.names = names;
        Ok(self)
    }

    /// Where each quota of `key` stands now, in order: what a gateway puts in the IETF
    /// `RateLimit` headers of an admitted or a refused response, requests and tokens apart.
    ///
    /// A GCRA quota grants its burst at once and earns it back over `burst × interval`, so
    /// `limit` is the burst, `window` that refill time, and `reset` the time until the
    /// quota is full again.
    ///
    /// ```
    /// use backstop_core::ManualClock;
    /// use backstop_limit::{KeyedMultiRateLimiter, Quota};
    ///
    /// let budget = KeyedMultiRateLimiter::with_clock(
    ///     vec![Quota::per_minute(60).unwrap(), Quota::per_minute(10_000).unwrap()],
    ///     ManualClock::new(),
    /// )
    /// .unwrap()
    /// .with_quota_names(["requests", "tokens"])
    /// .unwrap();
    /// budget.check_key_costs(&"ann", &[1, 2_500]).unwrap();
    /// let states = budget.quota_states(&"ann");
    /// assert_eq!((&*states[0].name, states[0].remaining), ("requests", 59));
    /// assert_eq!((&*states[1].name, states[1].remaining), ("tokens", 7_500));
    /// ```
    pub fn quota_states(&self, key: &K) -> Vec<QuotaState> {
        let overridden = self.overrides.get(key).map(|q| Arc::clone(&q));
        let quotas = overridden.as_deref().unwrap_or(&self.quotas);
        let now = self.timeline.now_nanos();
        let states = self.cells.get(key);
        quotas
            .iter()
            .zip(self.names.iter())
            .enumerate()
            .map(|(i, (quota, name))| {
                let tat = states
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .map_or(0, |s| s.load(Ordering::Relaxed));
                let window = quota
                    .replenish_interval()
                    .saturating_mul(u32::try_from(quota.burst()).unwrap_or(u32::MAX));
                QuotaState::new(
                    Arc::clone(name),
                    quota.burst(),
                    remaining(tat, now, quota),
                    Duration::from_nanos(tat.saturating_sub(now)),
                    window,
                )
            })
            .collect()
    }

    /// Gives `key` its own quotas (a premium tenant), as many as the default and in the
    /// same order so its usage carries over quota by quota.
    pub fn set_quotas(&self, key: K, quotas: Vec<Quota>) -> Result<(), ConfigError> {
        ensure(
            quotas.len() == self.quotas.len(),
            "quotas",
            "must hold as many quotas as the limiter's default",
        )?;
        self.overrides.insert(key, quotas.into());
        self.has_overrides.store(true, Ordering::Release);
        tracing::debug!(target: "backstop_limit", "multi-quota override set");
        Ok(())
    }

    /// Returns `key` to the default quotas.
    pub fn remove_quotas(&self, key: &K) {
        self.overrides.remove(key);
        if self.overrides.is_empty() {
            self.has_overrides.store(false, Ordering::Release);
        }
    }

    /// Admits one cell for `key` under every quota.
    pub fn check_key(&self, key: &K) -> Result<(), CheckError> {
        self.check_key_n(key, 1)
    }

    /// Admits `cost` cells for `key` under every quota, or charges none.
    pub fn check_key_n(&self, key: &K, cost: u64) -> Result<(), CheckError> {
        self.check_key_with(key, Costs::Same(cost))
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
        self.check_key_with(key, Costs::Each(costs))
    }

    pub(crate) fn check_key_with(&self, key: &K, costs: Costs<'_>) -> Result<(), CheckError> {
        let result = self.decide(key, costs);
        self.counters.record(&result);
        result
    }

    /// Cells `key` could be charged right now under its tightest quota.
    pub fn remaining(&self, key: &K) -> u64 {
        let overridden = self.overrides.get(key).map(|q| Arc::clone(&q));
        let quotas = overridden.as_deref().unwrap_or(&self.quotas);
        let now = self.timeline.now_nanos();
        let states = self.cells.get(key);
        quotas
            .iter()
            .enumerate()
            .map(|(i, quota)| {
                let tat = states
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .map_or(0, |s| s.load(Ordering::Relaxed));
                remaining(tat, now, quota)
            })
            .min()
            .unwrap_or(0)
    }

    fn decide(&self, key: &K, costs: Costs<'_>) -> Result<(), CheckError> {
        let overridden = if self.has_overrides.load(Ordering::Acquire) {
            self.overrides.get(key).map(|q| Arc::clone(&q))
        } else {
            None
        };
        let quotas = overridden.as_deref().unwrap_or(&self.quotas);
        let now = self.timeline.now_nanos();
        if let Some(states) = self.cells.get(key) {
            return charge_all(quotas, &states, now, costs);
        }
        costs.fit(quotas)?;
        if !self.cap.has_room(
            || self.cells.len(),
            || {
                self.retain_recent();
            },
        ) {
            return Err(CheckError::TooManyKeys {
                max_keys: self.cap.max_keys(),
            });
        }
        let states = self
            .cells
            .entry(key.clone())
            .or_insert_with(|| quotas.iter().map(|_| AtomicU64::new(0)).collect());
        charge_all(quotas, &states, now, costs)
    }

    /// Drops every key whose quotas are all replenished; returns how many were dropped.
    ///
    /// Decisions are unchanged by a sweep, so call it as often as memory needs.
    pub fn retain_recent(&self) -> usize {
        let now = self.timeline.now_nanos();
        let before = self.cells.len();
        self.cells
            .retain(|_, states| states.iter().any(|s| s.load(Ordering::Relaxed) > now));
        let dropped = before.saturating_sub(self.cells.len());
        if dropped > 0 {
            self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(target: "backstop_limit", dropped, "idle multi-quota keys swept");
        }
        dropped
    }

    /// Releases spare capacity of the map after a large sweep.
    pub fn shrink_to_fit(&self) {
        self.cells.shrink_to_fit();
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// A snapshot of counters and key counts.
    pub fn stats(&self) -> KeyedStats {
        KeyedStats {
            admitted: self.counters.admitted(),
            rejected: self.counters.rejected(),
            keys: self.cells.len(),
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
        for key in 0..80 {
            l.check_key(&key).unwrap();
        }
        for key in 80..8_080 {
            assert!(l.check_key(&key).is_err());
        }
        assert_eq!(l.stats().cap_sweeps, 800, "one sweep per 10 refusals");
        assert_eq!(l.len(), 80);
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
            let clock = ManualClock::new();
            let quotas = vec![
                Quota::per_second(2).unwrap().with_burst(3).unwrap(),
                Quota::per_second(8).unwrap().with_burst(10).unwrap(),
            ];
            let l = MultiRateLimiter::with_clock(quotas.clone(), clock.clone()).unwrap();
            let mut model = [0u64; 2];
            for (advance, requests, tokens) in steps {
                clock.advance(Duration::from_nanos(advance));
                let now = l.timeline.now_nanos();
                let costs = [requests, tokens];
                let decisions: Vec<_> = quotas
                    .iter()
                    .zip(model.iter())
                    .zip(costs)
                    .map(|((q, &tat), cost)| decide(tat, now, cost, q))
                    .collect();
                let expected = tokens <= 10 && decisions.iter().all(Result::is_ok);
                prop_assert_eq!(l.check_costs(&costs).is_ok(), expected);
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
