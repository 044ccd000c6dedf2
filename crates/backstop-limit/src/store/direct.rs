//! The direct store: one state for one stream of requests.

use super::{RateAlgorithm, StateStore, sealed};
use crate::error::{CheckError, Refusal};
use crate::limiter::Limiter;
use crate::stats::LimiterStats;
use backstop_core::{Clock, Rejected};

/// A state on a cache line of its own (128 bytes: adjacent-line prefetchers pair lines), so
/// compare-and-swaps from other threads do not evict the limits and clock every check
/// reads.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// One state for the whole limiter: a check is the algorithm on that state, with no map,
/// no key and no allocation.
#[derive(Debug)]
pub struct DirectStore<A: RateAlgorithm> {
    algorithm: A,
    state: Padded<A::State>,
}

impl<A: RateAlgorithm> DirectStore<A> {
    pub(crate) fn new(algorithm: A) -> Self {
        let state = algorithm.new_state(algorithm.limits());
        Self {
            algorithm,
            state: Padded(state),
        }
    }

    /// The one state, for tests that compare it with a model.
    #[cfg(test)]
    pub(crate) fn state(&self) -> &A::State {
        &self.state.0
    }
}

impl<A: RateAlgorithm> sealed::Sealed for DirectStore<A> {}

impl<A: RateAlgorithm> StateStore for DirectStore<A> {
    type Key = ();
    type Algorithm = A;

    #[inline]
    fn algorithm(&self) -> &A {
        &self.algorithm
    }

    fn algorithm_mut(&mut self) -> &mut A {
        &mut self.algorithm
    }

    #[inline]
    fn check(&self, _: &(), now: u64, cost: A::Cost<'_>) -> Result<(), Refusal> {
        self.algorithm
            .check(self.algorithm.limits(), &self.state.0, now, cost)
    }

    fn peek<R>(&self, _: &(), read: impl FnOnce(&A::Limits, Option<&A::State>) -> R) -> R {
        read(self.algorithm.limits(), Some(&self.state.0))
    }

    fn readiness(&self, now: u64) -> Result<(), Rejected> {
        self.algorithm
            .readiness(self.algorithm.limits(), Some(&self.state.0), now)
    }

    fn stats(&self, counts: LimiterStats, now: u64) -> LimiterStats {
        LimiterStats {
            remaining: self
                .algorithm
                .remaining(self.algorithm.limits(), Some(&self.state.0), now),
            ..counts
        }
    }
}

/// The methods every direct limiter shares ([`RateLimiter`](crate::RateLimiter),
/// [`MultiRateLimiter`](crate::MultiRateLimiter),
/// [`SlidingWindowLimiter`](crate::SlidingWindowLimiter)).
impl<A: RateAlgorithm, C: Clock> Limiter<DirectStore<A>, C> {
    /// Admits `cost` cells (the tokens of one LLM call) under every limit, or charges
    /// none.
    ///
    /// A cost of 0 always passes; a cost above a quota's burst (a window's limit) is
    /// [`CheckError::InsufficientCapacity`], since no wait would ever admit it. A refusal's
    /// `retry_after` is the wait of the first quota that refused.
    #[inline]
    pub fn check_n(&self, cost: u64) -> Result<(), CheckError> {
        self.check_single(&(), cost).map_err(CheckError::from)
    }

    /// Whether a check of one cell would pass now, without charging it.
    pub fn readiness(&self) -> Result<(), Rejected> {
        self.store_readiness()
    }
}
