//! Why a submitted item did not get a result from the handler.

use std::sync::Arc;
use std::time::Duration;

/// Why [`Batcher::submit`](crate::Batcher::submit) returned no response.
///
/// Rejections (`QueueFull`, `QueueTimeout`, `Closed`) mean the handler never saw the item;
/// the other variants mean its batch was dispatched and failed as a whole. The error is
/// `Clone` because one batch failure is delivered to every caller in that batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The queue was at capacity and `try_submit` does not wait for room.
    #[error("batch queue is full")]
    QueueFull,
    /// The item waited in the queue longer than the configured queue timeout.
    #[error("item waited {waited:?} in the batch queue, over the {timeout:?} queue timeout")]
    QueueTimeout {
        /// How long the item had waited when it was rejected.
        waited: Duration,
        /// The configured `queue_timeout`.
        timeout: Duration,
    },
    /// The batcher was closed (or dropped) before the item was dispatched.
    #[error("batcher is closed")]
    Closed,
    /// `submit` was called outside a tokio runtime, so no dispatcher can run.
    #[error("batcher needs a tokio runtime")]
    NoRuntime,
    /// The handler returned an error for the whole batch.
    #[error("batch handler failed: {0}")]
    Handler(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// The key or priority closure panicked on this item; it was not queued.
    #[error(transparent)]
    Panicked(backstop_core::Panicked),
    /// The handler panicked while processing the batch.
    #[error("batch handler panicked")]
    HandlerPanicked,
    /// The handler returned a different number of results than items it was given.
    #[error("batch handler returned {got} results for {expected} items")]
    ResultCount {
        /// Items in the batch.
        expected: usize,
        /// Results the handler returned.
        got: usize,
    },
}

impl BatchError {
    /// The refusal in the shared vocabulary, for a refusal: `QueueFull`, `QueueTimeout`
    /// (as [`RejectKind::Timeout`](backstop_core::RejectKind::Timeout)) and `Closed` (also
    /// for `NoRuntime`); `None` when the batch ran and failed.
    pub fn rejection(&self) -> Option<backstop_core::Rejected> {
        use backstop_core::{RejectKind, Rejected};
        let kind = match self {
            Self::QueueFull => RejectKind::QueueFull,
            Self::QueueTimeout { .. } => RejectKind::Timeout,
            Self::Closed | Self::NoRuntime => RejectKind::Closed,
            _ => return None,
        };
        Some(Rejected::new(kind))
    }

    /// True for rejections that happened before the handler saw the item (queue full,
    /// queue timeout, closed), which a caller may map to 429/503 and retry elsewhere.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::QueueFull | Self::QueueTimeout { .. } | Self::Closed | Self::NoRuntime
        )
    }
}
