//! Streams: time-to-first-chunk and idle timeouts, retries before the first chunk, a cut
//! stream is an error.

use backstop_core::{Error, RejectKind};
use backstop_retry::{Retry, StandardClassify, StreamTimeouts};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

mod support;

#[derive(Debug, PartialEq)]
struct Status(u16);

type Chunks = BoxStream<'static, Result<&'static str, Error<Status>>>;

fn retry() -> Retry {
    support::exact_policy(3).build().unwrap()
}

const TIMEOUTS: StreamTimeouts = StreamTimeouts {
    first_chunk: Duration::from_secs(2),
    idle: Duration::from_secs(1),
};

fn tokens() -> Chunks {
    stream::iter([Ok("a"), Ok("b"), Ok("c")]).boxed()
}

async fn collect(
    stream: impl futures::Stream<Item = Result<&'static str, Error<Status>>>,
) -> Vec<&'static str> {
    stream.map(|chunk| chunk.unwrap()).collect().await
}

#[tokio::test(start_paused = true)]
async fn a_silent_stream_is_retried_after_the_first_chunk_timeout() {
    let retry = retry();
    let opened = AtomicU32::new(0);
    let started = Instant::now();
    let stream = retry
        .stream(&StandardClassify, TIMEOUTS, || async {
            Ok(match opened.fetch_add(1, Ordering::Relaxed) {
                0 => stream::pending().boxed(),
                _ => tokens(),
            })
        })
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(2_100));
    assert_eq!(collect(stream).await, ["a", "b", "c"]);
    assert_eq!(opened.load(Ordering::Relaxed), 2);
    assert_eq!(retry.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn an_error_before_the_first_chunk_is_retried() {
    let retry = retry();
    let opened = AtomicU32::new(0);
    let stream = retry
        .stream(&StandardClassify, TIMEOUTS, || async {
            match opened.fetch_add(1, Ordering::Relaxed) {
                0 => Err(Error::Inner(Status(503))),
                1 => Ok(stream::iter([Err(Error::Inner(Status(502)))]).boxed()),
                _ => Ok(tokens()),
            }
        })
        .await
        .unwrap();
    assert_eq!(collect(stream).await, ["a", "b", "c"]);
    assert_eq!(opened.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn first_chunk_timeouts_that_run_out_of_attempts_are_a_timeout() {
    let retry = retry();
    let started = Instant::now();
    let error = retry
        .stream(&StandardClassify, TIMEOUTS, || async {
            Ok::<Chunks, _>(stream::pending().boxed())
        })
        .await
        .unwrap_err();
    assert_eq!(error.rejection().unwrap().kind, RejectKind::Timeout);
    // Three 2 s waits for a first chunk, 100 and 200 ms of backoff between them.
    assert_eq!(started.elapsed(), Duration::from_millis(6_300));
}

#[tokio::test(start_paused = true)]
async fn a_stream_cut_after_it_began_ends_with_an_error_and_is_not_retried() {
    let retry = retry();
    let opened = AtomicU32::new(0);
    let mut stream = retry
        .stream(&StandardClassify, TIMEOUTS, || async {
            opened.fetch_add(1, Ordering::Relaxed);
            let chunks: Chunks = stream::iter([Ok("a"), Ok("b")])
                .chain(stream::pending())
                .boxed();
            Ok(chunks)
        })
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), "a");
    assert_eq!(stream.next().await.unwrap().unwrap(), "b");
    let silent_from = Instant::now();
    let cut = stream.next().await.unwrap().unwrap_err();
    assert_eq!(cut.rejection().unwrap().kind, RejectKind::Timeout);
    assert_eq!(silent_from.elapsed(), Duration::from_secs(1));
    assert!(stream.next().await.is_none());
    assert_eq!(opened.load(Ordering::Relaxed), 1);
    assert_eq!(retry.stats().streams_cut, 1);
}

#[tokio::test(start_paused = true)]
async fn chunks_within_the_idle_timeout_flow_to_a_clean_end() {
    let retry = retry();
    let stream = retry
        .stream(&StandardClassify, TIMEOUTS, || async {
            Ok(stream::iter(["a", "b", "c", "d"])
                .then(|chunk| async move {
                    tokio::time::sleep(Duration::from_millis(900)).await;
                    Ok(chunk)
                })
                .boxed())
        })
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(collect(stream).await, ["a", "b", "c", "d"]);
    assert_eq!(started.elapsed(), Duration::from_millis(2_700));
    assert_eq!(retry.stats().streams_cut, 0);
}
