//! The typed outcomes of a rate-limit decision.
//!
//! A refusal is the workspace's one [`Rejected`] (kind
//! [`RejectKind::RateLimited`] with the index of the refusing quota and its `retry_after`);
//! [`CheckError`] adds the outcomes no wait can change.

use backstop_core::{RejectKind, Rejected};
use std::time::Duration;
use thiserror::Error;

/// The refusal of quota number `quota`, which would admit the same cost after `wait`.
#[inline]
pub(crate) fn limited(quota: usize, wait: Duration) -> Rejected {
    let quota = u16::try_from(quota).unwrap_or(u16::MAX);
    Rejected::new(RejectKind::RateLimited { quota }).with_retry_after(wait)
}

/// Why a check did not admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CheckError {
    /// Over the quota now; admitted after the refusal's `retry_after`.
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
            CheckError::Rejected(r) => r.retry_after,
            _ => None,
        }
    }

    /// The outcome as the workspace's one refusal, as a layer reports it.
    pub fn rejection(&self) -> Rejected {
        match *self {
            CheckError::Rejected(r) => r,
            CheckError::InsufficientCapacity { .. } | CheckError::CostsMismatch { .. } => {
                Rejected::new(RejectKind::TooLarge { quota: 0 })
            }
            CheckError::TooManyKeys { .. } => Rejected::new(RejectKind::TooManyKeys),
        }
    }
}

impl From<CheckError> for Rejected {
    fn from(error: CheckError) -> Self {
        error.rejection()
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

impl From<WaitError> for Rejected {
    fn from(error: WaitError) -> Self {
        match error {
            WaitError::TooLong { retry_after } => limited(0, retry_after),
            WaitError::Impossible(error) => error.rejection(),
        }
    }
}
