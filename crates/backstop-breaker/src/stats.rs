//! A point-in-time snapshot of a breaker's figures.

use std::time::Duration;

use serde::Serialize;

use crate::State;

/// What [`Breaker::stats`](crate::Breaker::stats) reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerStats {
    /// Name of the breaker.
    pub name: String,
    /// Current state.
    pub state: State,
    /// Failed calls as a percentage of the buffered calls; `None` until the window holds
    /// `minimum_calls` calls (in half-open: until every probe has finished).
    pub failure_rate: Option<f64>,
    /// Slow calls as a percentage of the buffered calls; `None` as for `failure_rate`.
    pub slow_call_rate: Option<f64>,
    /// Calls in the window (in half-open: probes finished so far).
    pub buffered_calls: u64,
    /// Failed calls among them.
    pub failed_calls: u64,
    /// Slow calls among them.
    pub slow_calls: u64,
    /// Calls rejected since the breaker was built.
    pub rejected_calls: u64,
    /// Listener calls that panicked since the breaker was built (each caught and logged;
    /// the call that raised the event is unaffected).
    pub listener_panics: u64,
    /// Classifier calls that panicked since the breaker was built (each caught and logged;
    /// the call's result counts as neither success nor failure).
    pub classifier_panics: u64,
    /// While open: how long until probing may start.
    #[serde(with = "backstop_core::duration::human_option")]
    pub retry_after: Option<Duration>,
}
