//! What a service's own error says about another attempt, the way a provider's HTTP status
//! and `Retry-After` header do.

use std::time::Duration;

/// What the error at the bottom of a stack says about trying again: a 429 or 503 with a
/// `Retry-After`, or a request no attempt can ever pass (a 400, a 401).
///
/// Backstop's own refusals carry this in their [`Rejected`](crate::Rejected); a service's
/// error implements this trait to say the same, and the retry and routing classifiers for
/// [`Error<E>`](crate::Error) read it (`backstop_retry::HintedClassify`,
/// `backstop_route::HintedRouteClassify`): a provider's `Retry-After` is honoured without a
/// hand-written classifier. Every method has a default, so an error says only what it knows.
///
/// ```
/// use backstop_core::RetryHint;
/// use std::time::Duration;
///
/// enum ProviderError {
///     TooManyRequests { retry_after: Option<Duration> },
///     BadRequest,
///     Server,
/// }
///
/// impl RetryHint for ProviderError {
///     fn retry_after(&self) -> Option<Duration> {
///         match self {
///             Self::TooManyRequests { retry_after } => *retry_after,
///             _ => None,
///         }
///     }
///     fn is_rate_limited(&self) -> bool {
///         matches!(self, Self::TooManyRequests { .. })
///     }
///     fn is_permanent(&self) -> bool {
///         matches!(self, Self::BadRequest)
///     }
/// }
///
/// let limited = ProviderError::TooManyRequests { retry_after: Some(Duration::from_secs(2)) };
/// assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
/// assert!(ProviderError::BadRequest.is_permanent() && !ProviderError::Server.is_permanent());
/// ```
pub trait RetryHint {
    /// How long the callee asked to wait before another attempt (`Retry-After`), if it
    /// said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// The callee refused for rate (a 429): the target is healthy, only busy.
    fn is_rate_limited(&self) -> bool {
        false
    }

    /// No attempt of this request can pass, here or at another target (a 400, 401, 404).
    fn is_permanent(&self) -> bool {
        false
    }
}
