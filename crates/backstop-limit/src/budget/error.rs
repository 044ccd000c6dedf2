//! Why a budget did not reserve.

use backstop_core::{RejectKind, Rejected};
use std::time::Duration;
use thiserror::Error;

/// Why a reservation was not made. Nothing was charged at any level.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// A quota has no room now (or is in debt from an overrun); the refusal's
    /// `retry_after` is when its period starts again. `rejected`'s quota index is the
    /// refusing quota's position in [`quota_states`](crate::Budgets::quota_states) of the
    /// same path (levels in order, each level's quotas in order), and `level` and `quota`
    /// name it directly.
    #[error("{rejected} (level {level}, quota {quota})")]
    Refused {
        /// The workspace's one refusal, ready for `429` and `Retry-After`.
        rejected: Rejected,
        /// The refusing level's index (0: the narrowest).
        level: usize,
        /// The refusing quota's index within its level.
        quota: usize,
    },
    /// The estimate exceeds a quota's whole limit: no wait would ever admit it.
    #[error("estimate {cost} exceeds the limit {limit} of quota {quota} at level {level}")]
    TooLarge {
        /// The level's index.
        level: usize,
        /// The quota's index within its level.
        quota: usize,
        /// The quota's position in the path's quota states (as in [`Refused`](Self::Refused)).
        index: usize,
        /// The amount asked for.
        cost: u64,
        /// The quota's limit.
        limit: u64,
    },
    /// The path names a different number of ids than the plan has levels.
    #[error("a path of {given} ids for {levels} levels")]
    PathMismatch {
        /// The plan's levels.
        levels: usize,
        /// The ids given.
        given: usize,
    },
    /// The model has no price and no default price, and a level counts money.
    #[error("model `{0}` has no price in the cost table")]
    UnknownModel(String),
    /// A level is at its key cap and no idle id could be swept to make room.
    #[error("level {level} tracks its maximum of {max_keys} ids")]
    TooManyKeys {
        /// The level's index.
        level: usize,
        /// The configured cap.
        max_keys: usize,
    },
    /// The shared store is unreachable and the policy fails closed, or the deployment is
    /// misconfigured (never hidden by a policy).
    #[cfg(feature = "redis")]
    #[error("budget store unavailable: {0}")]
    Unavailable(backstop_redis::RedisFault),
}

impl BudgetError {
    /// The wait after which the same reservation would pass, when waiting can help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { rejected, .. } => rejected.retry_after,
            _ => None,
        }
    }

    /// The outcome as the workspace's one refusal.
    pub fn rejection(&self) -> Rejected {
        match self {
            Self::Refused { rejected, .. } => *rejected,
            Self::TooLarge { index, .. } => Rejected::new(RejectKind::TooLarge {
                quota: u16::try_from(*index).unwrap_or(u16::MAX),
            }),
            Self::PathMismatch { .. } | Self::UnknownModel(_) => {
                Rejected::new(RejectKind::TooLarge { quota: 0 })
            }
            Self::TooManyKeys { .. } => Rejected::new(RejectKind::TooManyKeys),
            #[cfg(feature = "redis")]
            Self::Unavailable(_) => Rejected::new(RejectKind::Unavailable),
        }
    }
}

impl From<BudgetError> for Rejected {
    fn from(error: BudgetError) -> Self {
        error.rejection()
    }
}
