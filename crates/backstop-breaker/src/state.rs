//! The breaker's states and the outcome of a call.

use std::fmt;

use backstop_core::StackError;
use serde::Serialize;

/// A circuit breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls flow and their outcomes are recorded.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A fixed number of probe calls decide between closing and reopening.
    HalfOpen,
    /// Set by the operator: every call is rejected until the operator changes the state.
    ForcedOpen,
    /// Set by the operator: every call is admitted and nothing is recorded.
    Disabled,
    /// Set by the operator: every call is admitted, outcomes are recorded and reported,
    /// but the circuit never opens.
    MetricsOnly,
}

impl State {
    pub(crate) const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
            Self::MetricsOnly => 5,
        }
    }

    pub(crate) const fn from_code(code: u64) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            4 => Self::Disabled,
            _ => Self::MetricsOnly,
        }
    }

    /// The state's name in snake case, as in stats and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded (it may still count as slow).
    Success,
    /// The call failed.
    Failure,
    /// The call is not recorded at all; a half-open probe permit is returned.
    Ignored,
}

/// Decides how a call's result counts: which errors are failures, which are ignored,
/// and which successful results are failures after all (an LLM answer whose finish
/// reason is an error). A breaker's classifier is a [`Classify`] of the call's `Result`
/// into an [`Outcome`], so every `Fn(&Result<T, E>) -> Outcome` closure is one;
/// [`DefaultClassifier`] counts `Ok` as success and `Err` as failure.
pub use backstop_core::classify::Classify;

/// `Ok` is a success and `Err` a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

/// The default of [`BreakerLayer`](crate::BreakerLayer): `Ok` is a success and `Err` a
/// failure, except a refusal by a Backstop primitive below the breaker (a rate limit, a
/// full bulkhead or pool), which says nothing about the service's health and is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreRejections;

impl<T, E: StackError> Classify<Result<T, E>, Outcome> for IgnoreRejections {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) if error.rejection().is_some() => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<T, E> Classify<Result<T, E>, Outcome> for DefaultClassifier {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}
