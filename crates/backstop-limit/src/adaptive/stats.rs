//! Snapshots of an adaptive limiter for dashboards and tests.

use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A point-in-time view of an [`AdaptiveLimiter`](super::AdaptiveLimiter).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AdaptiveLimitStats {
    /// The current limit.
    pub limit: u64,
    /// Calls holding a permit.
    pub in_flight: u64,
    /// Callers waiting in class queues.
    pub queued: u64,
    /// The guarded latency baseline the algorithm compares windows with; `None` before
    /// the first window.
    #[serde(with = "backstop_core::duration::human_option")]
    pub baseline: Option<Duration>,
    /// Mean latency of the last window with latency samples.
    #[serde(with = "backstop_core::duration::human_option")]
    pub window_latency: Option<Duration>,
    /// Windows measured since creation.
    pub windows: u64,
    /// Permits handed out.
    pub admitted: u64,
    /// Callers refused because the limit was full.
    pub rejected: u64,
    /// Callers refused because the free permits were held for higher classes.
    pub shed: u64,
    /// Queued callers that gave up at their timeout or deadline.
    pub timed_out: u64,
    /// Calls that ended dropped (backend overload or cancellation).
    pub dropped: u64,
    /// Key or classify closures that panicked (contained).
    pub panicked: u64,
    /// Per class, highest priority first.
    pub classes: Vec<PriorityClassStats>,
}

/// A point-in-time view of one priority class.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PriorityClassStats {
    /// The class's name.
    pub name: Arc<str>,
    /// Permits currently held for it (its share of the current limit, rounded down).
    pub guaranteed: u64,
    /// Its calls holding a permit.
    pub in_flight: u64,
    /// Its callers waiting.
    pub queued: u64,
    /// Permits handed to it.
    pub admitted: u64,
    /// Its callers refused because the limit was full.
    pub rejected: u64,
    /// Its callers refused because the free permits were held for higher classes.
    pub shed: u64,
    /// Its queued callers that gave up.
    pub timed_out: u64,
}
