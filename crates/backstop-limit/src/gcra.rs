//! The generic cell rate algorithm over one or several quotas, and the direct (unkeyed)
//! limiter of one quota.

use crate::error::{Refusal, limited};
use crate::limiter::Limiter;
use crate::quota::Quota;
use crate::store::{DirectStore, RateAlgorithm, StateStore, sealed};
use backstop_core::config::{ConfigError, ensure, ensure_at_most};
use backstop_core::{Clock, DefaultClock, QuotaState, Rejected};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
fn charge(state: &AtomicU64, now: u64, cost: u64, quota: &Quota) -> Result<(), u64> {
    let mut current = state.load(Ordering::Relaxed);
    loop {
        let new_tat = decide(current, now, cost, quota)?;
        // Relaxed suffices: each quota's whole state is this one word, and no other memory
        // is published through it.
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

/// Charges each state its cost under its quota (same order), or charges none.
///
/// Each quota is charged in turn with its own compare-and-swap; if a later quota refuses,
/// the earlier charges are refunded. Under concurrency a racing request may see a charge
/// that is about to be refunded and be refused, never the reverse: several quotas can
/// under-admit briefly, they never over-admit. With one quota this is one
/// compare-and-swap loop.
#[inline]
pub(crate) fn charge_all(
    quotas: &[Quota],
    states: &[AtomicU64],
    now: u64,
    costs: Costs<'_>,
) -> Result<(), Refusal> {
    costs.fit(quotas)?;
    for (i, (quota, state)) in quotas.iter().zip(states).enumerate() {
        if let Err(wait) = charge(state, now, costs.of(i), quota) {
            for (j, (quota, state)) in quotas[..i].iter().zip(states).enumerate() {
                refund(state, costs.of(j), quota);
            }
            return Err(Refusal::Rejected(limited(i, Duration::from_nanos(wait))));
        }
    }
    Ok(())
}

/// Cells still available at `now` for a state word.
pub(crate) fn remaining(tat: u64, now: u64, quota: &Quota) -> u64 {
    let used_ahead = tat.saturating_sub(now);
    (quota.tolerance_nanos() - used_ahead.min(quota.tolerance_nanos())) / quota.emission_nanos()
}

/// What a check charges each quota.
// Public only because it is `Gcra`'s cost type in the sealed `RateAlgorithm`; not
// reachable from outside the crate.
#[allow(unreachable_pub)]
#[derive(Debug, Clone, Copy)]
pub enum Costs<'a> {
    /// The same cost to every quota.
    Same(u64),
    /// `costs[i]` to quota `i`.
    Each(&'a [u64]),
}

impl Costs<'_> {
    #[inline]
    pub(crate) fn of(&self, quota: usize) -> u64 {
        match self {
            Self::Same(cost) => *cost,
            Self::Each(costs) => costs.get(quota).copied().unwrap_or(0),
        }
    }

    /// One cost per quota, none above its quota's burst (which no wait could admit).
    #[inline]
    pub(crate) fn fit(&self, quotas: &[Quota]) -> Result<(), Refusal> {
        if let Self::Each(costs) = self
            && costs.len() != quotas.len()
        {
            return Err(Refusal::CostsMismatch {
                quotas: quotas.len(),
                costs: costs.len(),
            });
        }
        for (i, quota) in quotas.iter().enumerate() {
            let cost = self.of(i);
            if cost > quota.burst() {
                return Err(Refusal::InsufficientCapacity {
                    cost,
                    burst: quota.burst(),
                });
            }
        }
        Ok(())
    }
}

/// The most quotas one multi-quota limiter holds (a refusal names its quota by index).
pub const MAX_QUOTAS: usize = 64;

/// The quotas of a [`Gcra`]: one [`Quota`] (its state one 8-byte word) or several
/// (`Box<[Quota]>`, one word each).
// Public only because it bounds `Gcra`'s impls; sealed and not reachable from outside
// the crate.
#[allow(unreachable_pub)]
pub trait QuotaSet: sealed::Sealed + Send + Sync + 'static {
    /// One word per quota.
    type Words: Send + Sync + 'static;
    /// The quotas, in order.
    fn as_slice(&self) -> &[Quota];
    /// Fresh words, one per quota.
    fn new_words(&self) -> Self::Words;
    /// The words, in the quotas' order.
    fn words(words: &Self::Words) -> &[AtomicU64];

    /// Charges `costs` to `words` at `now`, all or none.
    #[inline]
    fn charge(&self, words: &Self::Words, now: u64, costs: Costs<'_>) -> Result<(), Refusal> {
        charge_all(self.as_slice(), Self::words(words), now, costs)
    }
}

impl sealed::Sealed for Quota {}

impl QuotaSet for Quota {
    type Words = AtomicU64;

    #[inline]
    fn as_slice(&self) -> &[Quota] {
        std::slice::from_ref(self)
    }

    fn new_words(&self) -> AtomicU64 {
        AtomicU64::new(0)
    }

    #[inline]
    fn words(words: &AtomicU64) -> &[AtomicU64] {
        std::slice::from_ref(words)
    }

    /// [`charge_all`] written out for one quota: the hot path of a single-quota limiter is
    /// the burst check and one compare-and-swap loop, whatever the optimizer makes of the
    /// slices.
    #[inline]
    fn charge(&self, word: &AtomicU64, now: u64, costs: Costs<'_>) -> Result<(), Refusal> {
        let Costs::Same(cost) = costs else {
            return charge_all(self.as_slice(), Self::words(word), now, costs);
        };
        if cost > self.burst() {
            return Err(Refusal::InsufficientCapacity {
                cost,
                burst: self.burst(),
            });
        }
        charge(word, now, cost, self)
            .map_err(|wait| Refusal::Rejected(limited(0, Duration::from_nanos(wait))))
    }
}

impl sealed::Sealed for Box<[Quota]> {}

impl QuotaSet for Box<[Quota]> {
    type Words = Box<[AtomicU64]>;

    #[inline]
    fn as_slice(&self) -> &[Quota] {
        self
    }

    fn new_words(&self) -> Box<[AtomicU64]> {
        self.iter().map(|_| AtomicU64::new(0)).collect()
    }

    #[inline]
    fn words(words: &Box<[AtomicU64]>) -> &[AtomicU64] {
        words
    }
}

/// The generic cell rate algorithm (the governor model) over one quota or several charged
/// all or none.
///
/// A quota's whole state is its theoretical arrival time (TAT) in one `AtomicU64`: a
/// decision is a clock read and a compare-and-swap per quota, with no lock and no
/// allocation. It admits exactly what a token bucket admits, and a key whose TAT is in the
/// past decides like a new one, so sweeping idle keys never changes a decision.
#[derive(Debug)]
pub struct Gcra<Q = Quota> {
    quotas: Q,
    /// One name per quota, for `quota_states` and the headers built from them.
    names: Box<[Arc<str>]>,
}

impl<Q: QuotaSet> Gcra<Q> {
    fn new(quotas: Q) -> Self {
        let names = (0..quotas.as_slice().len())
            .map(|i| Arc::from(format!("q{i}")))
            .collect();
        Self { quotas, names }
    }

    /// Where each of `quotas` stands at `now` given its words (`None`: fresh).
    fn quota_states(&self, quotas: &Q, words: Option<&Q::Words>, now: u64) -> Vec<QuotaState> {
        let words = words.map(Q::words);
        quotas
            .as_slice()
            .iter()
            .zip(self.names.iter())
            .enumerate()
            .map(|(i, (quota, name))| {
                let tat = words
                    .and_then(|w| w.get(i))
                    .map_or(0, |w| w.load(Ordering::Relaxed));
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
}

impl Gcra {
    /// One quota.
    pub(crate) fn one(quota: Quota) -> Self {
        Self::new(quota)
    }
}

impl Gcra<Box<[Quota]>> {
    /// The quotas, in order.
    pub(crate) fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// Several quotas: at least one, at most [`MAX_QUOTAS`].
    pub(crate) fn several(quotas: Vec<Quota>) -> Result<Self, ConfigError> {
        ensure(!quotas.is_empty(), "quotas", "must hold at least one quota")?;
        ensure_at_most("quotas", quotas.len() as u64, MAX_QUOTAS as u64)?;
        Ok(Self::new(quotas.into_boxed_slice()))
    }
}

impl<Q> sealed::Sealed for Gcra<Q> {}

impl<Q: QuotaSet> RateAlgorithm for Gcra<Q> {
    type State = Q::Words;
    type Limits = Q;
    type Cost<'a> = Costs<'a>;

    #[inline]
    fn limits(&self) -> &Q {
        &self.quotas
    }

    fn new_state(&self, limits: &Q) -> Q::Words {
        limits.new_words()
    }

    #[inline]
    fn single(cost: u64) -> Costs<'static> {
        Costs::Same(cost)
    }

    #[inline]
    fn fit(limits: &Q, cost: Costs<'_>) -> Result<(), Refusal> {
        cost.fit(limits.as_slice())
    }

    #[inline]
    fn check(
        &self,
        limits: &Q,
        state: &Q::Words,
        now: u64,
        cost: Costs<'_>,
    ) -> Result<(), Refusal> {
        limits.charge(state, now, cost)
    }

    fn readiness(&self, limits: &Q, state: Option<&Q::Words>, now: u64) -> Result<(), Rejected> {
        let Some(words) = state.map(Q::words) else {
            return Ok(());
        };
        for (i, (quota, word)) in limits.as_slice().iter().zip(words).enumerate() {
            decide(word.load(Ordering::Relaxed), now, 1, quota)
                .map_err(|wait| limited(i, Duration::from_nanos(wait)))?;
        }
        Ok(())
    }

    fn remaining(&self, limits: &Q, state: Option<&Q::Words>, now: u64) -> u64 {
        let words = state.map(Q::words);
        limits
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, quota)| {
                let tat = words
                    .and_then(|w| w.get(i))
                    .map_or(0, |w| w.load(Ordering::Relaxed));
                remaining(tat, now, quota)
            })
            .min()
            .unwrap_or(0)
    }

    fn is_idle(&self, state: &Q::Words, now: u64) -> bool {
        Q::words(state)
            .iter()
            .all(|w| w.load(Ordering::Relaxed) <= now)
    }
}

/// The methods every GCRA limiter shares, direct or keyed, one quota or several.
impl<S, C, Q> Limiter<S, C>
where
    S: StateStore<Algorithm = Gcra<Q>>,
    C: Clock,
    Q: QuotaSet,
{
    /// Names the quotas, in order (`["requests", "tokens"]`), for `quota_states`; the
    /// default names are `q0`, `q1`, … Call it before cloning the limiter.
    pub fn with_quota_names<I, N>(mut self, names: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = N>,
        N: Into<Arc<str>>,
    {
        let names: Box<[Arc<str>]> = names.into_iter().map(Into::into).collect();
        ensure(
            names.len() == self.algorithm().quotas.as_slice().len(),
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
        let Some(inner) = Arc::get_mut(&mut self.inner) else {
            return Err(ConfigError::new(
                "quota_names",
                "must be set before the limiter is cloned",
            ));
        };
        inner.store.algorithm_mut().names = names;
        Ok(self)
    }

    /// Where each quota of `key` stands now, in order: what a gateway puts in the IETF
    /// `RateLimit` headers of an admitted or a refused response, requests and tokens apart
    /// (`&()` for a direct limiter).
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
    pub fn quota_states(&self, key: &S::Key) -> Vec<QuotaState> {
        let now = self.now();
        self.store().peek(key, |quotas, words| {
            self.algorithm().quota_states(quotas, words, now)
        })
    }
}

/// A GCRA rate limiter for one stream of requests (one API key, one model, one process).
///
/// The whole state is one `AtomicU64` holding the theoretical arrival time, so a check is a
/// clock read and a compare-and-swap, with no lock and no allocation. A cheap-clone handle
/// (clones share the state).
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
pub type RateLimiter<C = DefaultClock> = Limiter<DirectStore<Gcra>, C>;

impl RateLimiter<DefaultClock> {
    /// A limiter on the [`DefaultClock`].
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter reading time from `clock`.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self::from_store(DirectStore::new(Gcra::one(quota)), clock)
    }

    /// Admits one cell or says how long to wait.
    #[inline]
    pub fn check(&self) -> Result<(), Rejected> {
        // A quota's burst is at least 1, so a single cell always fits: only a rate refusal
        // comes back.
        self.check_single(&(), 1).map_err(Refusal::rejection)
    }

    /// The quota this limiter enforces.
    pub fn quota(&self) -> Quota {
        self.algorithm().quotas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CheckError;
    use crate::limiter::admitted_across_threads;
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
        let admitted = admitted_across_threads(4, 2000, |_, _| u64::from(l.check().is_ok()));
        assert_eq!(admitted, 1000);
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
                let now = l.now();
                let ours = l.check_n(cost);
                let expected = cost <= burst && bucket.check(now, cost);
                prop_assert_eq!(ours.is_ok(), expected, "cost {} at {}", cost, now);
                if let Err(CheckError::Rejected(r)) = ours {
                    // The promised wait is exact: one nanosecond sooner still fails.
                    let tat = l.store().state().load(Ordering::Relaxed);
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
