//! One deadline across attempts: attempts never outlive it, inner layers see what remains,
//! and no attempt starts when too little is left.

use backstop_core::{Error, Layer, RejectKind, Service, deadline, service_fn};
use backstop_retry::{Retry, RetryConfig, RetryLayer};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod support;

#[derive(Debug, PartialEq)]
struct Status(u16);

fn config(timeout: Duration, min_attempt_time: Duration) -> RetryConfig {
    RetryConfig {
        timeout: Some(timeout),
        min_attempt_time,
        ..support::exact_policy(10)
    }
}

/// A backend failing after `work`, recording when each attempt started and the deadline
/// time it saw remaining (what a limiter's wait or a pool checkout inside would read).
type Seen = Arc<Mutex<Vec<(Duration, Option<Duration>)>>>;

fn failing_after(
    work: Duration,
    t0: Instant,
) -> (impl Service<(), Response = (), Error = Error<Status>>, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let service = service_fn(move |()| {
        log.lock().push((t0.elapsed(), deadline::remaining()));
        async move {
            tokio::time::sleep(work).await;
            Err(Error::Inner(Status(503)))
        }
    });
    (service, seen)
}

/// `config(timeout, min_attempt_time)` over a backend failing after 300 ms: the handle
/// (for its stats), the stack and what the backend saw.
fn retried_failing(
    timeout: Duration,
    min_attempt_time: Duration,
    t0: Instant,
) -> (
    Retry,
    impl Service<(), Response = (), Error = Error<Status>>,
    Seen,
) {
    let (backend, seen) = failing_after(Duration::from_millis(300), t0);
    let retry = config(timeout, min_attempt_time).build().unwrap();
    (retry.clone(), RetryLayer::new(retry).layer(backend), seen)
}

/// One call through [`retried_failing`]: the handle, the error, how long the call took and
/// what the backend saw.
async fn call_failing(
    timeout: Duration,
    min_attempt_time: Duration,
) -> (Retry, Error<Status>, Duration, Seen) {
    let t0 = Instant::now();
    let (retry, stack, seen) = retried_failing(timeout, min_attempt_time, t0);
    let error = stack.call(()).await.unwrap_err();
    (retry, error, t0.elapsed(), seen)
}

/// The kind of the refusal `error` is.
fn refusal(error: &Error<Status>) -> RejectKind {
    error.rejection().expect("a refusal").kind
}

#[tokio::test(start_paused = true)]
async fn a_hanging_backend_is_cut_at_the_deadline() {
    let retry = config(Duration::from_secs(1), Duration::from_millis(1))
        .build()
        .unwrap();
    let hangs = service_fn(|()| futures::future::pending::<Result<(), Error<Status>>>());
    let stack = RetryLayer::new(retry.clone()).layer(hangs);
    let started = Instant::now();
    let error = stack.call(()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(refusal(&error), RejectKind::DeadlineExceeded);
    let stats = retry.stats();
    assert_eq!((stats.attempts, stats.deadline_exhaustions), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn attempts_see_what_remains_and_never_outlive_the_deadline() {
    let (retry, error, took, seen) =
        call_failing(Duration::from_secs(1), Duration::from_millis(1)).await;
    assert_eq!(took, Duration::from_secs(1));
    // Backoffs of 100 and 200 ms: the third attempt (started at 900 ms, would end at
    // 1 200 ms) is cut at the deadline.
    assert_eq!(refusal(&error), RejectKind::DeadlineExceeded);
    let seen = seen.lock().clone();
    let starts: Vec<u64> = seen.iter().map(|(at, _)| at.as_millis() as u64).collect();
    assert_eq!(starts, [0, 400, 900]);
    for (at, remaining) in seen {
        assert_eq!(at + remaining.unwrap(), Duration::from_secs(1));
    }
    assert_eq!(retry.stats().deadline_exhaustions, 1);
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_with_too_little_time_left() {
    let (retry, error, took, seen) =
        call_failing(Duration::from_secs(1), Duration::from_millis(250)).await;
    // After the second failure (700 ms) a 200 ms backoff leaves 100 ms < 250 ms: stop there,
    // with the last error, without waiting.
    assert_eq!(error.inner(), Some(&Status(503)));
    assert_eq!(took, Duration::from_millis(700));
    assert_eq!(seen.lock().len(), 2);
    assert_eq!(retry.stats().deadline_exhaustions, 1);
}

#[tokio::test(start_paused = true)]
async fn a_callers_shorter_deadline_wins_and_a_spent_one_starts_nothing() {
    let t0 = Instant::now();
    let (_, stack, seen) = retried_failing(Duration::from_secs(10), Duration::from_millis(1), t0);
    let error = deadline::scope(Duration::from_millis(500), stack.call(()))
        .await
        .unwrap_err();
    assert_eq!(refusal(&error), RejectKind::DeadlineExceeded);
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
    assert_eq!(seen.lock().len(), 2);

    let (retry, stack, seen) =
        retried_failing(Duration::from_secs(10), Duration::from_millis(1), t0);
    let error = deadline::scope(Duration::ZERO, stack.call(()))
        .await
        .unwrap_err();
    assert_eq!(refusal(&error), RejectKind::DeadlineExceeded);
    assert!(seen.lock().is_empty());
    let stats = retry.stats();
    assert_eq!((stats.attempts, stats.deadline_exhaustions), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_wait_inside_is_bounded_by_the_remaining_time() {
    // A limiter or pool inside that would wait 10 s waits only until the deadline.
    let waits = Arc::new(Mutex::new(Vec::new()));
    let log = waits.clone();
    let backend = service_fn(move |()| {
        let wait = deadline::bound(Duration::from_secs(10));
        log.lock().push(wait);
        async move {
            tokio::time::sleep(wait).await;
            Err::<(), _>(Error::<Status>::Rejected(backstop_core::Rejected::new(
                RejectKind::Timeout,
            )))
        }
    });
    let stack = RetryLayer::new(
        config(Duration::from_secs(2), Duration::from_millis(1))
            .build()
            .unwrap(),
    )
    .layer(backend);
    let started = Instant::now();
    assert!(stack.call(()).await.is_err());
    assert!(started.elapsed() <= Duration::from_secs(2));
    assert_eq!(waits.lock()[0], Duration::from_secs(2));
}
