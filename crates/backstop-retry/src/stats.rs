//! Counters of a [`Retry`](crate::Retry) handle.

use serde::Serialize;
use std::time::Duration;

// Calls are the budget's deposits and attempts are derived (calls that started one plus
// retries), so a call that succeeds at once counts nothing here: one striped add per call.
backstop_core::counter_indices! {
    RETRIES,
    BUDGET_REFUSED,
    HEDGES_FIRED,
    HEDGES_WON,
    /// Calls refused before their first attempt: too little time left.
    REFUSED_AT_START,
    /// Calls stopped before a retry: too little time left.
    DEADLINE_EXHAUSTED,
    PANICKED,
    STREAMS_CUT,
}

/// A snapshot of a retry handle's counters (totals since creation, shared by every clone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct RetryStats {
    /// Calls made through the handle.
    pub calls: u64,
    /// Attempts started, first attempts and retries (not hedges).
    pub attempts: u64,
    /// Retries started (attempts after the first).
    pub retries: u64,
    /// Retries the budget refused (the last error went to the caller).
    pub budget_refusals: u64,
    /// Hedged attempts started.
    pub hedges_fired: u64,
    /// Hedged attempts that finished first with a success.
    pub hedges_won: u64,
    /// Calls that stopped because too little time was left before the deadline.
    pub deadline_exhaustions: u64,
    /// Classifier panics, contained and returned as the call's error.
    pub classifier_panics: u64,
    /// Streams cut by an idle timeout after their first chunk.
    pub streams_cut: u64,
    /// The current hedge delay (the observed percentile), once a window was observed.
    pub hedge_delay: Option<Duration>,
}
