//! The keyed store: one state per key (user, tenant, model) on `dashmap`, with per-key
//! overrides of the limits, a lossless sweep of idle keys and an optional key cap.

use super::{RateAlgorithm, StateStore, sealed};
use crate::cap::KeyCap;
use crate::error::{CheckError, Refusal};
use crate::limiter::Limiter;
use crate::stats::LimiterStats;
use backstop_core::{Clock, Rejected};
use dashmap::DashMap;
use dashmap::mapref::one::Ref;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One state per key in a sharded `DashMap`.
///
/// A key whose state decides like a fresh one (a GCRA key whose theoretical arrival time
/// has passed, a window key whose windows no longer count) is dropped by a sweep without
/// changing any decision, so memory stays bounded. With a key cap a full map refuses new
/// keys ([`CheckError::TooManyKeys`]) and sweeps itself to make room: on the first new key
/// at the cap, then once per `max_keys / 8` refused new keys, so a flood of new keys costs
/// O(1) amortized per call.
#[derive(Debug)]
pub struct KeyedStore<K: Hash + Eq, A: RateAlgorithm> {
    algorithm: A,
    states: DashMap<K, A::State>,
    overrides: DashMap<K, A::Limits>,
    // Skips the override lookup on the hot path while there are none.
    has_overrides: AtomicBool,
    cap: KeyCap,
    evicted: AtomicU64,
}

impl<K: Hash + Eq + Clone, A: RateAlgorithm> KeyedStore<K, A> {
    pub(crate) fn new(algorithm: A) -> Self {
        Self {
            algorithm,
            states: DashMap::new(),
            overrides: DashMap::new(),
            has_overrides: AtomicBool::new(false),
            cap: KeyCap::unbounded(),
            evicted: AtomicU64::new(0),
        }
    }

    /// Caps the number of tracked keys; `0` is treated as 1.
    pub(crate) fn set_max_keys(&self, max_keys: usize) {
        self.cap.set_max_keys(max_keys);
    }

    /// Holds `key` to `limits`; its current usage carries over.
    pub(crate) fn set_override(&self, key: K, limits: A::Limits) {
        self.overrides.insert(key, limits);
        self.has_overrides.store(true, Ordering::Release);
        tracing::debug!(target: "backstop_limit", "limit override set");
    }

    /// Returns `key` to the default limits.
    pub(crate) fn remove_override(&self, key: &K) {
        self.overrides.remove(key);
        if self.overrides.is_empty() {
            self.has_overrides.store(false, Ordering::Release);
        }
    }

    /// The override of `key`, if it has one.
    fn override_of(&self, key: &K) -> Option<Ref<'_, K, A::Limits>> {
        if self.has_overrides.load(Ordering::Acquire) {
            self.overrides.get(key)
        } else {
            None
        }
    }

    /// Drops every key whose state decides like a fresh one at `now`; returns how many.
    pub(crate) fn retain_recent(&self, now: u64) -> usize {
        let before = self.states.len();
        self.states
            .retain(|_, state| !self.algorithm.is_idle(state, now));
        let dropped = before.saturating_sub(self.states.len());
        if dropped > 0 {
            self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(target: "backstop_limit", dropped, "idle keys swept");
        }
        dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    pub(crate) fn shrink_to_fit(&self) {
        self.states.shrink_to_fit();
    }

    #[inline]
    fn check_with(
        &self,
        limits: &A::Limits,
        key: &K,
        now: u64,
        cost: A::Cost<'_>,
    ) -> Result<(), Refusal> {
        if let Some(state) = self.states.get(key) {
            return self.algorithm.check(limits, &state, now, cost);
        }
        // An impossible request creates no key.
        A::fit(limits, cost)?;
        if !self.cap.has_room(
            || self.states.len(),
            || {
                self.retain_recent(now);
            },
        ) {
            return Err(Refusal::TooManyKeys {
                max_keys: self.cap.max_keys(),
            });
        }
        let state = self
            .states
            .entry(key.clone())
            .or_insert_with(|| self.algorithm.new_state(limits));
        self.algorithm.check(limits, &state, now, cost)
    }
}

impl<K: Hash + Eq, A: RateAlgorithm> sealed::Sealed for KeyedStore<K, A> {}

impl<K, A> StateStore for KeyedStore<K, A>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: RateAlgorithm,
{
    type Key = K;
    type Algorithm = A;

    #[inline]
    fn algorithm(&self) -> &A {
        &self.algorithm
    }

    fn algorithm_mut(&mut self) -> &mut A {
        &mut self.algorithm
    }

    #[inline]
    fn check(&self, key: &K, now: u64, cost: A::Cost<'_>) -> Result<(), Refusal> {
        if self.has_overrides.load(Ordering::Acquire)
            && let Some(limits) = self.overrides.get(key)
        {
            return self.check_with(&limits, key, now, cost);
        }
        self.check_with(self.algorithm.limits(), key, now, cost)
    }

    fn peek<R>(&self, key: &K, read: impl FnOnce(&A::Limits, Option<&A::State>) -> R) -> R {
        let overridden = self.override_of(key);
        let limits = overridden.as_deref().unwrap_or(self.algorithm.limits());
        let state = self.states.get(key);
        read(limits, state.as_deref())
    }

    fn readiness(&self, _: u64) -> Result<(), Rejected> {
        Ok(())
    }

    fn stats(&self, counts: LimiterStats, _: u64) -> LimiterStats {
        LimiterStats {
            keys: self.states.len(),
            evicted: self.evicted.load(Ordering::Relaxed),
            overrides: self.overrides.len(),
            cap_sweeps: self.cap.sweeps(),
            ..counts
        }
    }
}

/// The methods every keyed limiter shares ([`KeyedRateLimiter`](crate::KeyedRateLimiter),
/// [`KeyedMultiRateLimiter`](crate::KeyedMultiRateLimiter),
/// [`KeyedSlidingWindow`](crate::KeyedSlidingWindow)).
impl<K, A, C> Limiter<KeyedStore<K, A>, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: RateAlgorithm,
    C: Clock,
{
    /// Caps the number of tracked keys; `0` is treated as 1.
    ///
    /// A full map refuses new keys with [`CheckError::TooManyKeys`], sweeping for room on
    /// the first and then once per `max_keys / 8` refused new keys.
    pub fn with_max_keys(self, max_keys: usize) -> Self {
        self.store().set_max_keys(max_keys);
        self
    }

    /// Admits one cell for `key` under every limit.
    #[inline]
    pub fn check_key(&self, key: &K) -> Result<(), CheckError> {
        self.check_single(key, 1).map_err(CheckError::from)
    }

    /// Admits `cost` cells for `key` under every limit, all or none.
    #[inline]
    pub fn check_key_n(&self, key: &K, cost: u64) -> Result<(), CheckError> {
        self.check_single(key, cost).map_err(CheckError::from)
    }

    /// Cells `key` could spend right now under its tightest limit.
    pub fn remaining(&self, key: &K) -> u64 {
        self.remaining_of(key)
    }

    /// Drops every key that decides like a new one (fully replenished, or its windows
    /// passed); returns how many were dropped.
    ///
    /// Decisions are unchanged by a sweep, so call it as often as memory needs.
    pub fn retain_recent(&self) -> usize {
        self.store().retain_recent(self.now())
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.store().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.store().len() == 0
    }

    /// Releases spare capacity of the map after a large sweep.
    pub fn shrink_to_fit(&self) {
        self.store().shrink_to_fit();
    }
}

/// Fills `limiter`, capped at `max_keys`, with that many keys, then offers a hundred new
/// keys per tracked one, asserting each is refused for the cap; returns the sweeps the
/// flood cost (the cap's promise: one per `max_keys / 8` refusals, so 800).
#[cfg(test)]
pub(crate) fn flood_at_the_cap<A: RateAlgorithm, C: Clock>(
    limiter: &Limiter<KeyedStore<u64, A>, C>,
    max_keys: u64,
) -> u64 {
    for key in 0..max_keys {
        limiter.check_key(&key).unwrap();
    }
    for key in max_keys..max_keys * 101 {
        assert_eq!(
            limiter.check_key(&key).unwrap_err(),
            CheckError::TooManyKeys {
                max_keys: usize::try_from(max_keys).unwrap()
            }
        );
    }
    limiter.stats().cap_sweeps
}
