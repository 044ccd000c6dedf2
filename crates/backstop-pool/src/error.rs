//! Errors a checkout or a pool build can return.

use std::time::Duration;

use backstop_core::{ConfigError, Panicked, RejectKind, Rejected};

/// Why `get()` did not return a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// No connection became free within the wait timeout. When creating connections
    /// failed meanwhile, the last creation error is attached so a timeout does not hide
    /// the real cause (bb8 #141).
    #[error("timed out after {waited:?} waiting for a pooled connection{}", cause_suffix(.last_create_error))]
    Timeout {
        /// The refusal: [`RejectKind::PoolExhausted`], no retry hint (the pool cannot
        /// know when a connection comes back).
        rejected: Rejected,
        /// How long the caller waited.
        waited: Duration,
        /// The most recent connection-creation error seen while waiting, if any.
        last_create_error: Option<String>,
    },
    /// Creating a connection took longer than the create timeout.
    #[error("creating a connection timed out")]
    CreateTimeout,
    /// The manager failed to create a connection.
    #[error("creating a connection failed: {0}")]
    Create(#[source] E),
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
    /// The manager's `create` panicked; the panic was contained.
    #[error(transparent)]
    Panicked(Panicked),
}

impl<E> PoolError<E> {
    /// The timeout of a caller that waited `waited`, with the last creation error seen.
    pub(crate) fn timeout(waited: Duration, last_create_error: Option<String>) -> Self {
        Self::Timeout {
            rejected: Rejected::new(RejectKind::PoolExhausted),
            waited,
            last_create_error,
        }
    }

    /// The refusal, when no connection became free in time.
    pub fn rejection(&self) -> Option<&Rejected> {
        match self {
            Self::Timeout { rejected, .. } => Some(rejected),
            _ => None,
        }
    }
}

fn cause_suffix(last: &Option<String>) -> String {
    last.as_ref()
        .map(|e| format!(" (last connection attempt failed: {e})"))
        .unwrap_or_default()
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolBuildError {
    /// The configuration broke a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Background housekeeping needs a Tokio runtime and none was running.
    #[error("building a pool with background housekeeping needs a running Tokio runtime")]
    NoRuntime,
}
