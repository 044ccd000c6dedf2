//! One deadline for a whole request, readable by every layer it passes through (feature
//! `tokio`).
//!
//! A retry layer, a route's fallback chain or the application sets the deadline once with
//! [`scope`]; a limiter's wait, a pool checkout or a queue inside reads
//! [`remaining`] and never waits past it. Without a scope there is no deadline.
//!
//! ```
//! use backstop_core::deadline;
//! use std::time::Duration;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
//! # rt.block_on(async {
//! assert_eq!(deadline::remaining(), None);
//! let budget = deadline::scope(Duration::from_secs(2), async {
//!     deadline::remaining().unwrap()
//! })
//! .await;
//! assert!(budget <= Duration::from_secs(2));
//! # });
//! ```

use crate::time::clamp;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `future` with a deadline `timeout` from now, or the enclosing deadline if that is
/// sooner: a nested scope can shorten the deadline, never extend it.
pub async fn scope<F: Future>(timeout: Duration, future: F) -> F::Output {
    let mine = Instant::now() + clamp(timeout);
    let deadline = match current() {
        Some(outer) if outer < mine => outer,
        _ => mine,
    };
    DEADLINE.scope(deadline, future).await
}

/// The current request's deadline, if one was set with [`scope`].
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Time left until the current deadline (zero once it has passed), or `None` without one.
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

/// `wait`, shortened to the time left before the current deadline.
pub fn bound(wait: Duration) -> Duration {
    match remaining() {
        Some(left) => wait.min(left),
        None => wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_only_shorten() {
        scope(Duration::from_secs(1), async {
            scope(Duration::from_secs(10), async {
                assert_eq!(remaining(), Some(Duration::from_secs(1)));
                assert_eq!(bound(Duration::from_secs(5)), Duration::from_secs(1));
            })
            .await;
            scope(Duration::from_millis(100), async {
                assert_eq!(remaining(), Some(Duration::from_millis(100)));
            })
            .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(remaining(), Some(Duration::ZERO));
        })
        .await;
        assert_eq!(bound(Duration::from_secs(5)), Duration::from_secs(5));
    }
}
