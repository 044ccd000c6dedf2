//! Errors a checkout or a pool build can return.

use std::time::Duration;

use backstop_core::{ConfigError, Panicked};

/// Why `get()` did not return a connection.
#[derive(Debug, thiserror::Error)]
pub enum PoolError<E> {
    /// No connection became free within the wait timeout. When creating connections
    /// failed meanwhile, the last creation error is attached so a timeout does not hide
    /// the real cause (bb8 #141).
    #[error("timed out after {waited:?} waiting for a pooled connection{}", cause_suffix(.last_create_error))]
    Timeout {
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

fn cause_suffix(last: &Option<String>) -> String {
    last.as_ref()
        .map(|e| format!(" (last connection attempt failed: {e})"))
        .unwrap_or_default()
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration broke a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Background housekeeping needs a Tokio runtime and none was running.
    #[error("building a pool with background housekeeping needs a running Tokio runtime")]
    NoRuntime,
}
