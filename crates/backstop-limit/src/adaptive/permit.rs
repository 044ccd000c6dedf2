//! [`AdaptivePermit`]: one admitted call, which reports its latency and outcome when it ends.

use super::limiter::Shared;
use backstop_core::{Clock, DefaultClock};
use std::fmt;
use std::sync::Arc;

/// How a call ended, as the limit algorithm should count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdaptiveOutcome {
    /// The call succeeded: its latency is a sample.
    Success,
    /// The call failed for a reason unrelated to load (a bad request): its latency is a
    /// sample, and the limit is not cut for it.
    Failure,
    /// The call was shed or timed out by the backend (a 429, a 503, a `Rejected` from a
    /// layer below) or cancelled: a sign of overload, the limit backs off.
    Dropped,
    /// Not a sample at all (a cache hit served without the backend, say).
    Ignored,
}

/// A permit of an [`AdaptiveLimiter`](super::AdaptiveLimiter): one call in flight.
///
/// Finish it with [`complete`](Self::complete) (or [`success`](Self::success)); its latency
/// (from admission to completion) and outcome feed the limit. A permit dropped without
/// completing (its future was cancelled, or the code holding it unwound from a panic)
/// counts as [`AdaptiveOutcome::Dropped`]. Either way the permit frees at once.
#[must_use = "a permit frees its slot when dropped; complete it to record the outcome"]
pub struct AdaptivePermit<C: Clock = DefaultClock> {
    pub(crate) shared: Arc<Shared<C>>,
    pub(crate) class: usize,
    pub(crate) started: u64,
    pub(crate) in_flight: u64,
    pub(crate) outcome: AdaptiveOutcome,
}

impl<C: Clock> AdaptivePermit<C> {
    /// Ends the call with `outcome`.
    pub fn complete(mut self, outcome: AdaptiveOutcome) {
        self.outcome = outcome;
    }

    /// Ends the call as a success.
    pub fn success(self) {
        self.complete(AdaptiveOutcome::Success);
    }

    /// The priority class the permit was admitted under.
    pub fn class(&self) -> super::PriorityClass {
        // Indices are below MAX_PRIORITY_CLASSES, so they fit in a byte.
        super::PriorityClass(self.class as u8)
    }
}

impl<C: Clock> Drop for AdaptivePermit<C> {
    fn drop(&mut self) {
        self.shared
            .release(self.class, self.started, self.in_flight, self.outcome);
    }
}

impl<C: Clock> fmt::Debug for AdaptivePermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit")
            .field("class", &self.class)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}
