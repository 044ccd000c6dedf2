//! What a failed attempt says about its target: the error class decides whether the chain
//! moves on, how long the target cools down, and what its circuit breaker records.

use backstop_core::classify::Classify;
use backstop_core::{Error, RejectKind, RetryHint, StackError};
use serde::Serialize;
use std::time::Duration;

/// The class of one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "class")]
#[non_exhaustive]
pub enum ErrorClass {
    /// The target failed (a 5xx, a reset connection): counted by its breaker, cooled down
    /// after `cooldown.consecutive_failures` in a row, and the chain moves on.
    ServerError,
    /// The attempt outlived its timeout: as a server error, and the latency estimate
    /// rises by the time waited.
    Timeout,
    /// The target is rate limited (a 429): it cools down for `retry_after` (or
    /// `cooldown.rate_limited` without one); the chain moves on unless the wait is at most
    /// `cooldown.wait_for_retry_after`. Not a breaker failure: the target is healthy.
    RateLimited {
        /// The target's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The target's own circuit (or an inner layer's) is open: it cools down for
    /// `retry_after` (or `cooldown.circuit_open`) and the chain moves on.
    CircuitOpen {
        /// When the circuit may admit calls again, when known.
        retry_after: Option<Duration>,
    },
    /// The target refused for lack of capacity (a queue, pool or bulkhead of an inner
    /// layer): it cools down for `retry_after` (or `cooldown.unavailable`).
    Unavailable {
        /// When capacity may be back, when known.
        retry_after: Option<Duration>,
    },
    /// The request is too long for the target's context window: not the target's fault
    /// (no cooldown, no breaker failure); the chain continues only with targets whose
    /// `context_window` is larger, in any group (none, when the failing target's window is
    /// not configured: no other window is then known to be larger).
    ContextLength,
    /// The request itself is wrong (a 400, 401, 404): no other target would accept it,
    /// so the error goes straight back to the caller.
    Fatal,
}

impl ErrorClass {
    /// A stable snake_case name for logs and metrics labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Unavailable { .. } => "unavailable",
            Self::ContextLength => "context_length",
            Self::Fatal => "fatal",
        }
    }
}

/// Classifies a failed attempt's error: any [`Classify`] answering an [`ErrorClass`], so
/// [`StandardRouteClassify`], [`HintedRouteClassify`] and every
/// `Fn(&E) -> ErrorClass + Send + Sync` closure. A classifier type of one's own implements
/// `Classify<E, ErrorClass>` and has this trait with it.
pub trait ClassifyRoute<E>: Classify<E, ErrorClass> {}

impl<E, C: Classify<E, ErrorClass> + ?Sized> ClassifyRoute<E> for C {}

/// The default classification, from what Backstop itself knows: refusals carried by the
/// error ([`StackError::rejection`]) by kind, and every other error a server error.
///
/// Provider errors need the provider's status: classify them with
/// [`RouteLayer::classify`](crate::RouteLayer::classify) and defer to
/// [`standard_class`] for the rest.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardRouteClassify;

impl<E: StackError> Classify<E, ErrorClass> for StandardRouteClassify {
    fn classify(&self, error: &E) -> ErrorClass {
        standard_class(error)
    }
}

/// [`StandardRouteClassify`]'s class of `error`.
///
/// ```
/// use backstop_core::{Error, RejectKind, Rejected};
/// use backstop_route::{ErrorClass, standard_class};
/// use std::time::Duration;
///
/// let limited: Error<()> = Rejected::new(RejectKind::RateLimited { quota: 1 })
///     .with_retry_after(Duration::from_secs(20))
///     .into();
/// assert_eq!(
///     standard_class(&limited),
///     ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(20)) }
/// );
/// assert_eq!(standard_class(&Error::Inner(())), ErrorClass::ServerError);
/// ```
pub fn standard_class<E: StackError>(error: &E) -> ErrorClass {
    let Some(refused) = error.rejection() else {
        return ErrorClass::ServerError;
    };
    let retry_after = refused.retry_after;
    match refused.kind {
        RejectKind::RateLimited { .. } => ErrorClass::RateLimited { retry_after },
        RejectKind::CircuitOpen => ErrorClass::CircuitOpen { retry_after },
        RejectKind::Timeout | RejectKind::DeadlineExceeded => ErrorClass::Timeout,
        // A cost no quota of this target can ever grant: another target may be larger.
        RejectKind::TooLarge { .. } => ErrorClass::ContextLength,
        _ => ErrorClass::Unavailable { retry_after },
    }
}

/// [`StandardRouteClassify`] for Backstop's refusals, and for the service's own error what
/// it says through [`RetryHint`]: a permanent error is [`ErrorClass::Fatal`], a 429 is
/// [`ErrorClass::RateLimited`] with its `Retry-After`, another error with a `Retry-After`
/// (a 503) is [`ErrorClass::Unavailable`] for that long, any other a server error.
#[derive(Debug, Clone, Copy, Default)]
pub struct HintedRouteClassify;

impl<E: RetryHint + Send + Sync + 'static> Classify<Error<E>, ErrorClass> for HintedRouteClassify {
    fn classify(&self, error: &Error<E>) -> ErrorClass {
        hinted_class(error)
    }
}

/// [`HintedRouteClassify`]'s class of `error`.
///
/// ```
/// use backstop_core::{Error, RetryHint};
/// use backstop_route::{ErrorClass, hinted_class};
/// use std::time::Duration;
///
/// struct Upstream { status: u16, retry_after: Option<Duration> }
/// impl RetryHint for Upstream {
///     fn retry_after(&self) -> Option<Duration> { self.retry_after }
///     fn is_rate_limited(&self) -> bool { self.status == 429 }
///     fn is_permanent(&self) -> bool { (400..429).contains(&self.status) }
/// }
///
/// let wait = Some(Duration::from_secs(20));
/// let class = |status, retry_after| hinted_class(&Error::Inner(Upstream { status, retry_after }));
/// assert_eq!(class(429, wait), ErrorClass::RateLimited { retry_after: wait });
/// assert_eq!(class(503, wait), ErrorClass::Unavailable { retry_after: wait });
/// assert_eq!(class(500, None), ErrorClass::ServerError);
/// assert_eq!(class(400, None), ErrorClass::Fatal);
/// ```
pub fn hinted_class<E: RetryHint + Send + Sync + 'static>(error: &Error<E>) -> ErrorClass {
    let Some(inner) = error.inner() else {
        return standard_class(error);
    };
    let retry_after = inner.retry_after();
    if inner.is_permanent() {
        ErrorClass::Fatal
    } else if inner.is_rate_limited() {
        ErrorClass::RateLimited { retry_after }
    } else if retry_after.is_some() {
        ErrorClass::Unavailable { retry_after }
    } else {
        ErrorClass::ServerError
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::{Error, Rejected};

    #[test]
    fn refusals_map_by_kind_and_keep_their_wait() {
        let wait = Duration::from_secs(3);
        let cases = [
            (
                RejectKind::CircuitOpen,
                ErrorClass::CircuitOpen {
                    retry_after: Some(wait),
                },
            ),
            (RejectKind::Timeout, ErrorClass::Timeout),
            (RejectKind::DeadlineExceeded, ErrorClass::Timeout),
            (RejectKind::TooLarge { quota: 0 }, ErrorClass::ContextLength),
            (
                RejectKind::QueueFull,
                ErrorClass::Unavailable {
                    retry_after: Some(wait),
                },
            ),
        ];
        for (kind, class) in cases {
            let error: Error<()> = Rejected::new(kind).with_retry_after(wait).into();
            assert_eq!(standard_class(&error), class, "{kind:?}");
        }
    }
}
