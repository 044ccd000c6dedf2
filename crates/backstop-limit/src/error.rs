//! The typed outcomes of a rate-limit decision.

use std::time::Duration;
use thiserror::Error;

/// A request the limiter turned away for now; it would be admitted after `retry_after`.
///
/// A transport answers this with `429 Too Many Requests` and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("rate limited; retry after {retry_after:?}")]
pub struct Rejected {
    /// How long until the same request would be admitted, if nothing else is admitted first.
    pub retry_after: Duration,
}

/// Why a check did not admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CheckError {
    /// Over the quota now; admitted later.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The cost exceeds the burst: this request can never be admitted, so waiting is useless.
    #[error("cost {cost} exceeds the burst of {burst}; it can never be admitted")]
    InsufficientCapacity {
        /// The cost asked for.
        cost: u64,
        /// The most the quota admits at once.
        burst: u64,
    },
    /// A per-quota check was given a different number of costs than the limiter has
    /// quotas.
    #[error("{costs} costs given for {quotas} quotas")]
    CostsMismatch {
        /// The limiter's quotas.
        quotas: usize,
        /// The costs given.
        costs: usize,
    },
    /// A keyed limiter is at its key cap and a sweep freed no room for a new key.
    #[error("key limit of {max_keys} reached; no idle key could be evicted")]
    TooManyKeys {
        /// The configured cap.
        max_keys: usize,
    },
}

impl CheckError {
    /// The wait after which the request would pass, when waiting can help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CheckError::Rejected(r) => Some(r.retry_after),
            _ => None,
        }
    }
}

/// Why an async wait for admission gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WaitError {
    /// Admission would come later than `max_wait` allows; nothing was charged.
    #[error("admission would take {retry_after:?}, more than the maximum wait")]
    TooLong {
        /// How long admission would still have taken.
        retry_after: Duration,
    },
    /// The request can never pass (cost above burst, or no room for the key).
    #[error(transparent)]
    Impossible(CheckError),
}
