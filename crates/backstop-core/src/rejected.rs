//! The one refusal: every Backstop primitive that declines work says so with [`Rejected`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A Backstop primitive declined to run a call: the work did not start.
///
/// It says what refused ([`RejectKind`]) and, when the primitive knows, how long to wait
/// before a retry could pass (`retry_after`). It is small, `Clone` and allocation-free, so
/// an open circuit or an empty limiter can refuse at its caller's full rate.
///
/// ```
/// use backstop_core::{RejectKind, Rejected};
/// use std::time::Duration;
///
/// let refused = Rejected::new(RejectKind::RateLimited { quota: 1 })
///     .with_retry_after(Duration::from_millis(1_500));
/// assert_eq!(refused.kind, RejectKind::RateLimited { quota: 1 });
/// assert_eq!(refused.retry_after, Some(Duration::from_millis(1_500)));
/// assert_eq!(refused.retry_after_secs(), Some(2)); // rounded up, as `Retry-After` wants
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Rejected {
    /// What refused.
    pub kind: RejectKind,
    /// The wait after which the same call could be admitted, when known.
    pub retry_after: Option<Duration>,
}

impl Rejected {
    /// A refusal of `kind` with no retry hint.
    #[inline]
    pub const fn new(kind: RejectKind) -> Self {
        Self {
            kind,
            retry_after: None,
        }
    }

    /// The same refusal, telling the caller to retry after `wait`.
    #[inline]
    pub const fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// `retry_after` in whole seconds, rounded up (`Retry-After` takes integers, and rounding
    /// down would invite a retry that is refused again).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|wait| {
            let secs = wait.as_secs();
            if wait.subsec_nanos() > 0 {
                secs.saturating_add(1)
            } else {
                secs
            }
        })
    }

    /// Whether waiting could ever help: `false` for a cost larger than the limit itself or
    /// a closed primitive.
    pub fn is_transient(&self) -> bool {
        !matches!(self.kind, RejectKind::TooLarge { .. } | RejectKind::Closed)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected: {}", self.kind)?;
        if let Some(wait) = self.retry_after {
            write!(f, "; retry after {wait:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// What refused a call. New kinds may be added, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum RejectKind {
    /// A rate limit or budget has no room now. `quota` is the index of the quota that
    /// refused among the limiter's quotas (0 for a single-quota limiter), so requests and
    /// tokens can be told apart.
    RateLimited {
        /// Index of the refusing quota.
        quota: u16,
    },
    /// The cost asked for exceeds what the quota can ever grant; no wait helps.
    TooLarge {
        /// Index of the quota that can never grant the cost.
        quota: u16,
    },
    /// A keyed primitive is at its key cap and could not make room for a new key.
    TooManyKeys,
    /// A circuit breaker is open (or half-open with every probe taken).
    CircuitOpen,
    /// A bounded queue (batcher, bulkhead waiters) is full.
    QueueFull,
    /// A bulkhead or concurrency limit has no free permit.
    ConcurrencyLimited,
    /// No pooled connection became free within the wait timeout.
    PoolExhausted,
    /// A wait for capacity (queue, lease, in-flight result) outlived its timeout.
    Timeout,
    /// The request's deadline leaves too little time to start this work.
    DeadlineExceeded,
    /// Shed by priority: lower-priority work refused to keep higher-priority work fast.
    Shed,
    /// A shared store (Redis) is unreachable and the configured policy fails closed.
    Unavailable,
    /// The primitive has been shut down.
    Closed,
}

impl RejectKind {
    /// A stable snake_case name for metrics labels and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::TooLarge { .. } => "too_large",
            Self::TooManyKeys => "too_many_keys",
            Self::CircuitOpen => "circuit_open",
            Self::QueueFull => "queue_full",
            Self::ConcurrencyLimited => "concurrency_limited",
            Self::PoolExhausted => "pool_exhausted",
            Self::Timeout => "timeout",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Shed => "shed",
            Self::Unavailable => "unavailable",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited { quota } => write!(f, "rate limited by quota {quota}"),
            Self::TooLarge { quota } => write!(f, "cost exceeds what quota {quota} can grant"),
            other => f.write_str(&other.as_str().replace('_', " ")),
        }
    }
}

/// The state of one quota after a decision: what a transport needs for rate-limit headers.
///
/// Admitted and refused calls can both report it, one per quota (requests and tokens
/// apart, never mixed into one "remaining").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QuotaState {
    /// The quota's name, such as `"requests"` or `"tokens"`.
    pub name: Arc<str>,
    /// Units the quota grants per window.
    pub limit: u64,
    /// Units still available now.
    pub remaining: u64,
    /// Time until the quota is full again.
    pub reset: Duration,
    /// The quota's period.
    pub window: Duration,
}

impl QuotaState {
    /// A quota named `name` granting `limit` units per `window`, `remaining` of them left,
    /// full again after `reset`.
    pub fn new(
        name: impl Into<Arc<str>>,
        limit: u64,
        remaining: u64,
        reset: Duration,
        window: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            limit,
            remaining: remaining.min(limit),
            reset,
            window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = Rejected::new(RejectKind::CircuitOpen);
        assert_eq!(r.retry_after_secs(), None);
        assert_eq!(
            r.with_retry_after(Duration::from_secs(3))
                .retry_after_secs(),
            Some(3)
        );
        assert_eq!(
            r.with_retry_after(Duration::from_millis(1))
                .retry_after_secs(),
            Some(1)
        );
        assert_eq!(
            r.with_retry_after(Duration::MAX).retry_after_secs(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn display_names_the_kind_and_the_wait() {
        let r = Rejected::new(RejectKind::QueueFull).with_retry_after(Duration::from_millis(5));
        assert_eq!(r.to_string(), "rejected: queue full; retry after 5ms");
        let r = Rejected::new(RejectKind::RateLimited { quota: 1 });
        assert_eq!(r.to_string(), "rejected: rate limited by quota 1");
    }

    #[test]
    fn only_permanent_refusals_are_not_transient() {
        assert!(Rejected::new(RejectKind::Timeout).is_transient());
        assert!(!Rejected::new(RejectKind::TooLarge { quota: 0 }).is_transient());
        assert!(!Rejected::new(RejectKind::Closed).is_transient());
    }

    #[test]
    fn quota_state_never_reports_more_remaining_than_the_limit() {
        let q = QuotaState::new("tokens", 100, 500, Duration::ZERO, Duration::from_secs(60));
        assert_eq!(q.remaining, 100);
    }
}
