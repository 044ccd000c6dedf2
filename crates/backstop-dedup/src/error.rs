use std::sync::Arc;
use std::time::Duration;

/// Why a deduplicated call did not produce a value.
///
/// Every caller that shared an execution receives a clone of the same error, so the
/// leader's failure is never hidden from its followers (unlike `async_singleflight`,
/// whose followers got `Err(None)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DedupError<E> {
    /// The work returned this error.
    #[error("deduplicated work failed: {0}")]
    Inner(E),
    /// The work panicked; the message is the panic payload when it was a string.
    ///
    /// The key is cleared, so the next call starts a fresh execution.
    #[error("deduplicated work panicked: {message}")]
    Panicked {
        /// The panic payload, or a placeholder when it was not a string.
        message: Arc<str>,
    },
    /// This follower stopped waiting after the given time; the execution itself goes on
    /// for the callers still waiting.
    #[error("gave up waiting for the in-flight execution after {after:?}")]
    Timeout {
        /// The follower timeout that elapsed.
        after: Duration,
    },
    /// Only from a `DistributedGroup` configured to fail when Redis does: the
    /// coordination store could not be reached in time.
    #[error("deduplication store unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: Arc<str>,
    },
}

impl<E> DedupError<E> {
    /// The work's own error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message: Arc<str> = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Arc::from(*s)
        } else if let Some(s) = payload.downcast_ref::<String>() {
            Arc::from(s.as_str())
        } else {
            Arc::from("non-string panic payload")
        };
        Self::Panicked { message }
    }
}
