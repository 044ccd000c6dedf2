//! What to do after a failed attempt: retry now (after backoff), retry after a given time,
//! or stop.

use backstop_core::classify::Classify;
use backstop_core::{Error, RetryHint, StackError};
use std::time::Duration;

/// The classification of one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryDecision {
    /// Transient: retry after the policy's backoff.
    Retry,
    /// Transient, and the callee said when: retry after this wait (a `Retry-After`).
    RetryAfter(Duration),
    /// Permanent (or not safe to repeat): return this error to the caller.
    Stop,
}

/// Classifies a failed attempt's error: any [`Classify`] answering a [`RetryDecision`], so
/// [`StandardClassify`], [`HintedClassify`] and every `Fn(&E) -> RetryDecision + Send + Sync`
/// closure. A classifier type of one's own implements `Classify<E, RetryDecision>` and has
/// this trait with it.
pub trait ClassifyRetry<E>: Classify<E, RetryDecision> {}

impl<E, C: Classify<E, RetryDecision> + ?Sized> ClassifyRetry<E> for C {}

/// The default classification: a refusal ([`backstop_core::Rejected`]) that can never pass
/// ([`Rejected::is_transient`](backstop_core::Rejected::is_transient) is `false`) stops; a
/// transient refusal is retried after its `retry_after` when it has one; every other error
/// is retried after the backoff.
///
/// Installing a retry is the caller's statement that the call is idempotent; classify
/// provider errors (a 400 that will never pass, a 429 with `Retry-After`) with
/// [`RetryLayer::classify`](crate::RetryLayer::classify).
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardClassify;

impl<E: StackError> Classify<E, RetryDecision> for StandardClassify {
    fn classify(&self, error: &E) -> RetryDecision {
        standard_decision(error)
    }
}

/// [`StandardClassify`]'s decision, for user classifiers that handle their own provider
/// errors and defer to the default for everything else.
///
/// ```
/// use backstop_core::{Error, RejectKind, Rejected};
/// use backstop_retry::{RetryDecision, standard_decision};
/// use std::time::Duration;
///
/// let limited: Error<()> =
///     Rejected::new(RejectKind::RateLimited { quota: 0 }).with_retry_after(Duration::from_secs(2)).into();
/// assert_eq!(standard_decision(&limited), RetryDecision::RetryAfter(Duration::from_secs(2)));
/// let closed: Error<()> = Rejected::new(RejectKind::Closed).into();
/// assert_eq!(standard_decision(&closed), RetryDecision::Stop);
/// ```
pub fn standard_decision<E: StackError>(error: &E) -> RetryDecision {
    match error.rejection() {
        Some(refused) if !refused.is_transient() => RetryDecision::Stop,
        Some(refused) => match refused.retry_after {
            Some(wait) => RetryDecision::RetryAfter(wait),
            None => RetryDecision::Retry,
        },
        None => RetryDecision::Retry,
    }
}

/// [`StandardClassify`] for Backstop's refusals, and for the service's own error what it
/// says through [`RetryHint`]: a permanent error stops, one with a `Retry-After` is retried
/// after it (up to the policy's `max_retry_after`), any other is retried after the backoff.
/// A provider's 429 with `Retry-After` needs no hand-written classifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct HintedClassify;

impl<E: RetryHint + Send + Sync + 'static> Classify<Error<E>, RetryDecision> for HintedClassify {
    fn classify(&self, error: &Error<E>) -> RetryDecision {
        hinted_decision(error)
    }
}

/// [`HintedClassify`]'s decision.
///
/// ```
/// use backstop_core::{Error, RetryHint};
/// use backstop_retry::{RetryDecision, hinted_decision};
/// use std::time::Duration;
///
/// struct TooManyRequests(Duration);
/// impl RetryHint for TooManyRequests {
///     fn retry_after(&self) -> Option<Duration> { Some(self.0) }
///     fn is_rate_limited(&self) -> bool { true }
/// }
/// struct BadRequest;
/// impl RetryHint for BadRequest {
///     fn is_permanent(&self) -> bool { true }
/// }
///
/// let limited = Error::Inner(TooManyRequests(Duration::from_secs(3)));
/// assert_eq!(hinted_decision(&limited), RetryDecision::RetryAfter(Duration::from_secs(3)));
/// assert_eq!(hinted_decision(&Error::Inner(BadRequest)), RetryDecision::Stop);
/// ```
pub fn hinted_decision<E: RetryHint + Send + Sync + 'static>(error: &Error<E>) -> RetryDecision {
    match error.inner() {
        Some(inner) if inner.is_permanent() => RetryDecision::Stop,
        Some(inner) => match inner.retry_after() {
            Some(wait) => RetryDecision::RetryAfter(wait),
            None => RetryDecision::Retry,
        },
        None => standard_decision(error),
    }
}
