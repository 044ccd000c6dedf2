//! Errors.

/// Why a CSV trace could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// A line is not `time,rate` with two numbers.
    #[error("trace line {line} is not `time,rate` with two numbers")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// A time or rate is negative or not finite.
    #[error("trace line {line} has a negative or non-finite value")]
    Negative {
        /// 1-based line number.
        line: usize,
    },
    /// Times do not advance by one constant step.
    #[error("trace line {line} breaks the constant time step")]
    UnevenStep {
        /// 1-based line number.
        line: usize,
    },
    /// Fewer than two points.
    #[error("a trace needs at least two points")]
    TooShort,
    /// Filling the gaps would make more steps than the bound.
    #[error("a trace may span at most {max} steps")]
    TooLong {
        /// The bound ([`MAX_SERIES_STEPS`](crate::MAX_SERIES_STEPS)).
        max: usize,
    },
}

/// Why the autoscaler could not read or change the scale target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scale target failed: {message}")]
pub struct ScaleError {
    message: String,
}

impl ScaleError {
    /// An error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}
