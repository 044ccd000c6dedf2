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

use crate::RejectKind;
use crate::time::clamp;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Set (for good) by the first [`scope`] in the process. Until then no task can have a
/// deadline, and [`current`] answers from this flag alone: a plain load, where the
/// task-local's thread-local lookup and borrow were a fifth of a retry layer's success path
/// (issue 20). Sticky rather than counted, so scopes never write a shared cache line once it
/// is set. A task that entered a scope and moved threads sees the flag: the runtime's hand-over
/// of the task orders the store before the move.
static ANY_SCOPE: AtomicBool = AtomicBool::new(false);

/// Runs `future` with a deadline `timeout` from now, or the enclosing deadline if that is
/// sooner: a nested scope can shorten the deadline, never extend it.
pub async fn scope<F: Future>(timeout: Duration, future: F) -> F::Output {
    if !ANY_SCOPE.load(Ordering::Relaxed) {
        ANY_SCOPE.store(true, Ordering::Relaxed);
    }
    let mine = Instant::now() + clamp(timeout);
    let deadline = match current() {
        Some(outer) if outer < mine => outer,
        _ => mine,
    };
    DEADLINE.scope(deadline, future).await
}

/// The current request's deadline, if one was set with [`scope`].
#[inline]
pub fn current() -> Option<Instant> {
    if !ANY_SCOPE.load(Ordering::Relaxed) {
        return None;
    }
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

/// Runs `future` within `timeout` as [`scope`] does, or as it is without one: for a layer
/// whose one deadline across attempts is optional.
pub async fn scope_opt<F: Future>(timeout: Option<Duration>, future: F) -> F::Output {
    match timeout {
        Some(timeout) => scope(timeout, future).await,
        None => future.await,
    }
}

/// Whether less than `least` (and at least a nanosecond) is left before the current
/// deadline: too little to start another attempt. `false` without a deadline.
pub fn too_close(least: Duration) -> bool {
    remaining().is_some_and(|left| left < least.max(Duration::from_nanos(1)))
}

/// Runs one attempt of a request within `each` (the attempt's own timeout, if any) and
/// what remains of the current deadline. A cut attempt is dropped, and the kind says which
/// limit cut it: [`RejectKind::Timeout`] for the attempt's own (another attempt may
/// succeed), [`RejectKind::DeadlineExceeded`] for the request's (nothing more can be
/// tried).
///
/// ```
/// use backstop_core::{RejectKind, deadline};
/// use std::time::Duration;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # rt.block_on(async {
/// let stalls = std::future::pending::<()>;
/// let each = Some(Duration::from_secs(1));
/// assert_eq!(deadline::attempt(each, stalls()).await, Err(RejectKind::Timeout));
/// let cut = deadline::scope(Duration::from_millis(300), deadline::attempt(each, stalls()));
/// assert_eq!(cut.await, Err(RejectKind::DeadlineExceeded));
/// assert_eq!(deadline::attempt(each, async { 7 }).await, Ok(7));
/// # });
/// ```
pub async fn attempt<F: Future>(
    each: Option<Duration>,
    future: F,
) -> Result<F::Output, RejectKind> {
    let (limit, cut) = match (each, remaining()) {
        (Some(each), Some(left)) if left <= each => (left, RejectKind::DeadlineExceeded),
        (Some(each), _) => (each, RejectKind::Timeout),
        (None, Some(left)) => (left, RejectKind::DeadlineExceeded),
        (None, None) => return Ok(future.await),
    };
    tokio::time::timeout(clamp(limit), future)
        .await
        .map_err(|_| cut)
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

    #[tokio::test(start_paused = true)]
    async fn an_attempt_is_cut_by_the_sooner_limit_and_says_which() {
        let stalls = std::future::pending::<()>;
        assert!(!too_close(Duration::from_secs(1)));
        scope_opt(Some(Duration::from_secs(2)), async {
            let started = Instant::now();
            let own = attempt(Some(Duration::from_millis(500)), stalls()).await;
            assert_eq!(own, Err(RejectKind::Timeout));
            assert_eq!(started.elapsed(), Duration::from_millis(500));
            let request = attempt(None, stalls()).await;
            assert_eq!(request, Err(RejectKind::DeadlineExceeded));
            assert_eq!(started.elapsed(), Duration::from_secs(2));
            assert!(too_close(Duration::ZERO));
        })
        .await;
        assert_eq!(scope_opt(None, async { remaining() }).await, None);
    }
}
