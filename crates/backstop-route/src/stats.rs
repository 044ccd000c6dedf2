//! Counters of a [`Router`](crate::Router) and of each of its targets.

use serde::Serialize;
use std::time::Duration;

pub(crate) mod router_counters {
    backstop_core::counter_indices!(
        CALLS,
        SUCCEEDED,
        FALLBACKS,
        EXHAUSTED,
        ALL_COOLING,
        PROBES,
        DEADLINE_EXHAUSTED,
        PANICKED,
        WAITED,
    );
}

pub(crate) mod target_counters {
    backstop_core::counter_indices!(
        CHOSEN,
        SUCCEEDED,
        SERVER_ERROR,
        TIMEOUT,
        RATE_LIMITED,
        CIRCUIT_OPEN,
        UNAVAILABLE,
        CONTEXT_LENGTH,
        FATAL,
        SKIPPED_NO_BUDGET,
        SKIPPED_CIRCUIT_OPEN,
        COOLDOWNS,
    );
}

/// A snapshot of a router's counters (totals since creation, shared by every clone) and
/// of every target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouterStats {
    /// Requests routed.
    pub calls: u64,
    /// Requests that ended in a success.
    pub succeeded: u64,
    /// Attempts after a request's first (the chain moved on).
    pub fallbacks: u64,
    /// Requests that failed after every target they could use was tried.
    pub exhausted: u64,
    /// Requests refused without a call because no target could take them (every one
    /// cooling down, its circuit open or its budget spent).
    pub all_cooling_refusals: u64,
    /// Probes of the least recently failed target while every target was cooling down.
    pub probes: u64,
    /// Requests that stopped because too little time was left before the deadline.
    pub deadline_exhaustions: u64,
    /// Classifier, key and cost closure panics, contained and returned as the call's error.
    pub panics: u64,
    /// 429s waited out on the same target (`cooldown.wait_for_retry_after`).
    pub waited_retry_after: u64,
    /// One entry per target, in config order.
    pub targets: Vec<TargetStats>,
}

/// One target's counters and state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TargetStats {
    /// The target's name.
    pub name: String,
    /// The target's priority group.
    pub group: u32,
    /// Attempts sent to the target.
    pub chosen: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Failed attempts by error class.
    pub failed: FailedByClass,
    /// Times the target was passed over without a call because its budget had no room.
    pub skipped_no_budget: u64,
    /// Times its breaker refused a permit the balancer had expected (a race).
    pub skipped_circuit_open: u64,
    /// Cooldowns started (or lengthened).
    pub cooldowns: u64,
    /// The rest of the current cooldown, if cooling down.
    #[serde(with = "backstop_core::duration::human_option")]
    pub cooling_down: Option<Duration>,
    /// Attempts in flight now.
    pub in_flight: u64,
    /// The Peak-EWMA latency estimate now.
    #[serde(with = "backstop_core::duration::human")]
    pub ewma_latency: Duration,
    /// The breaker's state (`"closed"`, `"open"`, `"half_open"`…).
    pub circuit: &'static str,
}

/// Failed attempts of one target, by [`ErrorClass`](crate::ErrorClass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct FailedByClass {
    /// Server errors.
    pub server_error: u64,
    /// Timeouts.
    pub timeout: u64,
    /// Rate limits (429s).
    pub rate_limited: u64,
    /// Open circuits below the router.
    pub circuit_open: u64,
    /// Capacity refusals below the router.
    pub unavailable: u64,
    /// Context-length errors.
    pub context_length: u64,
    /// Errors returned to the caller at once.
    pub fatal: u64,
}

impl FailedByClass {
    /// Every failed attempt.
    pub fn total(&self) -> u64 {
        self.server_error
            + self.timeout
            + self.rate_limited
            + self.circuit_open
            + self.unavailable
            + self.context_length
            + self.fatal
    }
}
