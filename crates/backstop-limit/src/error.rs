//! The typed outcomes of a rate-limit decision.
//!
//! A refusal is the workspace's one [`Rejected`] (kind
//! [`RejectKind::RateLimited`] with the index of the refusing quota and its `retry_after`);
//! [`CheckError`] adds the outcomes no wait can change, and is the check error of every
//! limiter, in process or in Redis; [`WaitError`] is the error of every wait.

use backstop_core::{RejectKind, Rejected};
#[cfg(feature = "redis")]
use backstop_redis::{Misconfiguration, RedisFault};
use std::time::Duration;
use thiserror::Error;

/// The refusal of quota number `quota`, which would admit the same cost after `wait`.
#[inline]
pub(crate) fn limited(quota: usize, wait: Duration) -> Rejected {
    let quota = u16::try_from(quota).unwrap_or(u16::MAX);
    Rejected::new(RejectKind::RateLimited { quota }).with_retry_after(wait)
}

/// Why a local store did not admit a request: [`CheckError`]'s local outcomes, small and
/// `Copy`, so the check path hands it back in registers and never matches a [`CheckError`],
/// whose Redis outcomes make it large and give it drop glue (the direct limiter's check went
/// from 10 ns to 16 ns through it). Public methods convert it at their boundary.
// Public only because it is in the sealed `RateAlgorithm`'s signatures; not reachable from
// outside the crate.
#[allow(unreachable_pub)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// [`CheckError::Rejected`].
    Rejected(Rejected),
    /// [`CheckError::InsufficientCapacity`].
    InsufficientCapacity { cost: u64, burst: u64 },
    /// [`CheckError::CostsMismatch`].
    CostsMismatch { quotas: usize, costs: usize },
    /// [`CheckError::TooManyKeys`].
    TooManyKeys { max_keys: usize },
}

impl Refusal {
    /// The refusal a layer reports, as [`CheckError::rejection`] says.
    #[inline]
    pub(crate) fn rejection(self) -> Rejected {
        match self {
            Refusal::Rejected(r) => r,
            Refusal::InsufficientCapacity { .. } | Refusal::CostsMismatch { .. } => {
                Rejected::new(RejectKind::TooLarge { quota: 0 })
            }
            Refusal::TooManyKeys { .. } => Rejected::new(RejectKind::TooManyKeys),
        }
    }
}

impl From<Refusal> for CheckError {
    #[inline]
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Rejected(r) => Self::Rejected(r),
            Refusal::InsufficientCapacity { cost, burst } => {
                Self::InsufficientCapacity { cost, burst }
            }
            Refusal::CostsMismatch { quotas, costs } => Self::CostsMismatch { quotas, costs },
            Refusal::TooManyKeys { max_keys } => Self::TooManyKeys { max_keys },
        }
    }
}

/// Why a check did not admit a request, for every limiter: direct, keyed and Redis.
///
/// Not `Copy`: the Redis outcomes carry the store's fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
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
    /// The Redis store failed or timed out and the failure policy is
    /// [`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed)
    /// ([`RedisFault::Unavailable`] or [`RedisFault::TimedOut`]): an outage.
    #[cfg(feature = "redis")]
    #[error("rate limit store unavailable: {0}")]
    Unavailable(RedisFault),
    /// The Redis deployment is misconfigured (a standalone URL at a cluster node or a
    /// replica, cluster seeds at a standalone server, an unknown Sentinel master, a wrong
    /// TLS CA, refused credentials), whatever the policy: a mistake is never hidden by
    /// failing open or deciding locally, and no retry fixes it.
    #[cfg(feature = "redis")]
    #[error("rate limit store misconfigured: {0}")]
    Misconfigured(Misconfiguration),
}

impl CheckError {
    /// The wait after which the request would pass, when waiting can help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CheckError::Rejected(r) => r.retry_after,
            _ => None,
        }
    }

    /// The outcome as the workspace's one refusal, as a layer reports it: a cost no wait
    /// admits is `TooLarge`; a Redis store that is down under fail-closed, or misconfigured
    /// (logged as an error by the limiter and counted in
    /// [`LimiterStats::misconfigured`](crate::LimiterStats::misconfigured), never admitted),
    /// is `Unavailable`.
    pub fn rejection(&self) -> Rejected {
        match self {
            CheckError::Rejected(r) => *r,
            CheckError::InsufficientCapacity { .. } | CheckError::CostsMismatch { .. } => {
                Rejected::new(RejectKind::TooLarge { quota: 0 })
            }
            CheckError::TooManyKeys { .. } => Rejected::new(RejectKind::TooManyKeys),
            #[cfg(feature = "redis")]
            CheckError::Unavailable(_) | CheckError::Misconfigured(_) => {
                Rejected::new(RejectKind::Unavailable)
            }
        }
    }
}

impl From<CheckError> for Rejected {
    fn from(error: CheckError) -> Self {
        error.rejection()
    }
}

/// Why an async wait for admission gave up, for every limiter: direct, keyed and Redis.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WaitError {
    /// Admission would come later than `max_wait` allows; nothing was charged.
    #[error("admission would take {retry_after:?}, more than the maximum wait")]
    TooLong {
        /// How long admission would still have taken.
        retry_after: Duration,
    },
    /// A check failed in a way no wait cures (cost above burst, no room for the key, the
    /// Redis store down under fail-closed or misconfigured).
    #[error(transparent)]
    Impossible(CheckError),
}

impl WaitError {
    /// The give-up of a wait whose next refusal, `refusal`, would outlast `max_wait`.
    #[cfg(feature = "tokio")]
    pub(crate) fn too_long(refusal: Rejected) -> Self {
        WaitError::TooLong {
            retry_after: refusal.retry_after.unwrap_or_default(),
        }
    }
}

impl From<WaitError> for Rejected {
    /// A wait past `max_wait` is the rate limit it waited on; anything else is the check's
    /// own [`rejection`](CheckError::rejection).
    fn from(error: WaitError) -> Self {
        match error {
            WaitError::TooLong { retry_after } => limited(0, retry_after),
            WaitError::Impossible(error) => error.rejection(),
        }
    }
}
