//! One rate-limit algorithm over one state store, as governor's `StateStore` separates
//! them.
//!
//! An algorithm ([`Gcra`](crate::Gcra) over one or several quotas,
//! [`SlidingWindow`](crate::SlidingWindow)) says what one key's state is and how a decision
//! reads and charges it. A store keeps the states: [`DirectStore`] holds one (a limiter for
//! one stream), [`KeyedStore`] one per key in a `dashmap`, with per-key overrides of the
//! algorithm's limits, a lossless sweep of idle keys and an optional key cap. A
//! [`Limiter`](crate::Limiter) is a store plus a clock and counters, and every public
//! limiter ([`RateLimiter`](crate::RateLimiter), [`KeyedMultiRateLimiter`](crate::KeyedMultiRateLimiter),
//! [`KeyedSlidingWindow`](crate::KeyedSlidingWindow), …) is one combination of the two.

mod direct;
mod keyed;

pub use direct::DirectStore;
pub use keyed::KeyedStore;
#[cfg(test)]
pub(crate) use keyed::flood_at_the_cap;

use crate::error::Refusal;
use crate::stats::LimiterStats;
use backstop_core::Rejected;

/// Seals the traits: the algorithms and stores are this crate's.
pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A rate-limiting algorithm: what one key's state is and how a decision changes it.
///
/// Implemented by [`Gcra`](crate::Gcra) and [`SlidingWindow`](crate::SlidingWindow); sealed.
pub trait RateAlgorithm: sealed::Sealed + Send + Sync + 'static {
    /// One key's state (8 bytes for one GCRA quota).
    type State: Send + Sync + 'static;
    /// What a key is held to; a keyed store's per-key override is one of these.
    type Limits: Send + Sync + 'static;
    /// What a check charges.
    type Cost<'a>: Copy;

    /// The limits every key is held to unless overridden.
    #[doc(hidden)]
    fn limits(&self) -> &Self::Limits;

    /// A state that has never been charged.
    #[doc(hidden)]
    fn new_state(&self, limits: &Self::Limits) -> Self::State;

    /// `cost` as a single cost.
    #[doc(hidden)]
    fn single(cost: u64) -> Self::Cost<'static>;

    /// Refuses a cost no wait could admit under `limits` (checked before a new key takes
    /// room in a keyed store).
    #[doc(hidden)]
    fn fit(limits: &Self::Limits, cost: Self::Cost<'_>) -> Result<(), Refusal>;

    /// Charges `cost` to `state` at `now` (nanoseconds since the limiter's origin, at
    /// least 1), or refuses and charges nothing.
    #[doc(hidden)]
    fn check(
        &self,
        limits: &Self::Limits,
        state: &Self::State,
        now: u64,
        cost: Self::Cost<'_>,
    ) -> Result<(), Refusal>;

    /// Whether a cost of one would pass now, charging nothing (`None`: a fresh state).
    #[doc(hidden)]
    fn readiness(
        &self,
        limits: &Self::Limits,
        state: Option<&Self::State>,
        now: u64,
    ) -> Result<(), Rejected>;

    /// The cost that would pass now under the tightest limit (`None`: a fresh state).
    #[doc(hidden)]
    fn remaining(&self, limits: &Self::Limits, state: Option<&Self::State>, now: u64) -> u64;

    /// Whether `state` decides at `now` exactly like a fresh state, so a sweep may drop it
    /// without changing any decision.
    #[doc(hidden)]
    fn is_idle(&self, state: &Self::State, now: u64) -> bool;
}

/// Where a limiter keeps its algorithm's states: [`DirectStore`] or [`KeyedStore`]; sealed.
pub trait StateStore: sealed::Sealed + Send + Sync + 'static {
    /// Whose state a check reads: `()` for a direct store, the key for a keyed one.
    type Key;
    /// The algorithm deciding over the states.
    type Algorithm: RateAlgorithm;

    /// The algorithm.
    #[doc(hidden)]
    fn algorithm(&self) -> &Self::Algorithm;

    /// The algorithm, to configure it while the limiter is not yet shared.
    #[doc(hidden)]
    fn algorithm_mut(&mut self) -> &mut Self::Algorithm;

    /// Charges `cost` to the state of `key` at `now`, or refuses and charges nothing.
    #[doc(hidden)]
    fn check(
        &self,
        key: &Self::Key,
        now: u64,
        cost: <Self::Algorithm as RateAlgorithm>::Cost<'_>,
    ) -> Result<(), Refusal>;

    /// Runs `read` on the limits and the state of `key` (`None` when it holds none, which
    /// decides like a fresh state), creating nothing.
    #[doc(hidden)]
    fn peek<R>(
        &self,
        key: &Self::Key,
        read: impl FnOnce(
            &<Self::Algorithm as RateAlgorithm>::Limits,
            Option<&<Self::Algorithm as RateAlgorithm>::State>,
        ) -> R,
    ) -> R;

    /// Whether a call costing one would be refused at `now` whatever its key: a direct
    /// store knows; a keyed store cannot without the key, so it says ready.
    #[doc(hidden)]
    fn readiness(&self, now: u64) -> Result<(), Rejected>;

    /// `counts` (the limiter's admitted and rejected) with what this store reports at
    /// `now`: the room left for a direct store, the key bookkeeping for a keyed one.
    #[doc(hidden)]
    fn stats(&self, counts: LimiterStats, now: u64) -> LimiterStats;
}
