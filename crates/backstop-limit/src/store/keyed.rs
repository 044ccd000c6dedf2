//! The keyed store: one state per key (user, tenant, model) on `dashmap`, with per-key
//! overrides of the limits, a lossless sweep of idle keys and an optional key cap.

use super::{RateAlgorithm, StateStore, sealed};
use crate::cap::KeyCap;
use crate::error::CheckError;
use crate::limiter::Limiter;
use backstop_core::{Clock, Rejected};
use dashmap::DashMap;
use dashmap::mapref::one::Ref;
use serde::Serialize;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A point-in-time view of a keyed limiter ([`KeyedRateLimiter`](crate::KeyedRateLimiter),
/// [`KeyedMultiRateLimiter`](crate::KeyedMultiRateLimiter) or
/// [`KeyedSlidingWindow`](crate::KeyedSlidingWindow)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyedStats {
    /// Checks that admitted their cost.
    pub admitted: u64,
    /// Checks that were turned away (over the limit, impossible, or over the key cap).
    pub rejected: u64,
    /// Keys currently holding state.
    pub keys: usize,
    /// Keys removed by sweeps since creation.
    pub evicted: u64,
    /// Keys with an override of the limits.
    pub overrides: usize,
    /// Sweeps a full map ran to make room for a new key (at most one per eighth of the
    /// cap's worth of refused new keys).
    pub cap_sweeps: u64,
}

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

    /// Key bookkeeping, with the limiter's `admitted` and `rejected` counts.
    pub(crate) fn stats(&self, admitted: u64, rejected: u64) -> KeyedStats {
        KeyedStats {
            admitted,
            rejected,
            keys: self.states.len(),
            evicted: self.evicted.load(Ordering::Relaxed),
            overrides: self.overrides.len(),
            cap_sweeps: self.cap.sweeps(),
        }
    }

    #[inline]
    fn check_with(
        &self,
        limits: &A::Limits,
        key: &K,
        now: u64,
        cost: A::Cost<'_>,
    ) -> Result<(), CheckError> {
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
            return Err(CheckError::TooManyKeys {
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
    fn check(&self, key: &K, now: u64, cost: A::Cost<'_>) -> Result<(), CheckError> {
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
        self.check_single(key, 1)
    }

    /// Admits `cost` cells for `key` under every limit, all or none.
    #[inline]
    pub fn check_key_n(&self, key: &K, cost: u64) -> Result<(), CheckError> {
        self.check_single(key, cost)
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

    /// A snapshot of counters and key counts.
    pub fn stats(&self) -> KeyedStats {
        let (admitted, rejected) = self.counts();
        self.store().stats(admitted, rejected)
    }
}
