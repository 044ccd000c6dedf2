//! Why a call did not go through.

use std::time::Duration;

use crate::State;

/// The breaker refused a call without running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {state}: call not permitted")]
pub struct Rejected {
    /// The state that refused the call (open, forced open, or half-open with every probe
    /// permit taken).
    pub state: State,
    /// How long until the circuit may admit calls again, when known: the rest of the open
    /// period. `None` when forced open or while the half-open probes are out.
    pub retry_after: Option<Duration>,
}

/// The result error of [`Breaker::call`](crate::Breaker::call): either the breaker
/// refused the call, or the call ran and failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError<E> {
    /// The call was not run.
    #[error(transparent)]
    Rejected(Rejected),
    /// The call ran and returned this error.
    #[error("{0}")]
    Inner(E),
}

impl From<Rejected> for backstop_core::Rejected {
    /// The shared vocabulary's refusal: [`RejectKind::CircuitOpen`](backstop_core::RejectKind)
    /// with the same `retry_after`.
    fn from(rejected: Rejected) -> Self {
        let refused = backstop_core::Rejected::new(backstop_core::RejectKind::CircuitOpen);
        match rejected.retry_after {
            Some(wait) => refused.with_retry_after(wait),
            None => refused,
        }
    }
}

impl<E> BreakerError<E> {
    /// The rejection, if the call was not run.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            Self::Rejected(rejected) => Some(rejected),
            Self::Inner(_) => None,
        }
    }

    /// The inner error, if the call ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Rejected(_) => None,
            Self::Inner(error) => Some(error),
        }
    }
}

impl<E> From<Rejected> for BreakerError<E> {
    fn from(rejected: Rejected) -> Self {
        Self::Rejected(rejected)
    }
}
