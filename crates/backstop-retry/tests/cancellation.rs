//! Cancelling a call at any await (an attempt, a backoff, a hedge, a stream) leaks nothing:
//! every attempt started is dropped with the call.

use backstop_core::{Error, Layer, Service, service_fn};
use backstop_retry::{
    HedgeConfig, Jitter, RetryConfig, RetryLayer, StandardClassify, StreamTimeouts,
};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

mod support;

use support::Live;

#[derive(Debug)]
struct Status;

fn config() -> RetryConfig {
    RetryConfig {
        backoff: support::backoff(Duration::from_millis(50), Jitter::None),
        hedge: Some(HedgeConfig {
            percentile: 0.5,
            window: 10,
            max_ratio: 1.0,
            min_delay: Duration::from_millis(1),
        }),
        ..support::exact_policy(4)
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_at_any_point_drops_every_attempt() {
    let stats = cancel_everywhere(config()).await;
    assert!(stats.hedges_fired > 0 && stats.retries > 0, "{stats:?}");
}

/// The plain path (no deadline, timeout or hedge: the first attempt unwrapped, the retries
/// boxed only after it fails) drops its attempts the same way.
#[tokio::test(start_paused = true)]
async fn cancelling_a_plain_call_at_any_point_drops_every_attempt() {
    let stats = cancel_everywhere(RetryConfig {
        hedge: None,
        ..config()
    })
    .await;
    assert!(stats.retries > 0 && stats.hedges_fired == 0, "{stats:?}");
}

/// Cancels calls through a layer with `config` after every 3 ms up to 400 ms, checking that
/// no attempt outlives its call.
async fn cancel_everywhere(config: RetryConfig) -> backstop_retry::RetryStats {
    let live = Arc::new(AtomicI64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let (l, c) = (live.clone(), calls.clone());
    // Ten fast calls fill the hedge window; later calls take 40 ms (hedged after ~10 ms)
    // and fail twice before succeeding, so a call passes attempts, hedges and backoffs.
    let service = service_fn(move |()| {
        let n = c.fetch_add(1, Ordering::Relaxed);
        let guard = Live::enter(&l);
        async move {
            let _guard = guard;
            if n < 10 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
            if n % 5 < 3 {
                Err(Error::Inner(Status))
            } else {
                Ok(())
            }
        }
    });
    let retry = config.build().unwrap();
    let stack = RetryLayer::new(retry.clone()).layer(service);
    for _ in 0..10 {
        stack.call(()).await.unwrap();
    }
    for cancel_after in (0..400).step_by(3) {
        let call = stack.call(());
        let _ = tokio::time::timeout(Duration::from_millis(cancel_after), call).await;
        assert_eq!(
            live.load(Ordering::Relaxed),
            0,
            "cancelled after {cancel_after} ms"
        );
    }
    retry.stats()
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stream_or_its_opening_drops_the_inner_stream() {
    let live = Arc::new(AtomicI64::new(0));
    let retry = config().build().unwrap();
    let timeouts = StreamTimeouts {
        first_chunk: Duration::from_secs(1),
        idle: Duration::from_secs(1),
    };
    let open = || {
        let l = live.clone();
        async move {
            let guard = Live::enter(&l);
            let chunks = futures::stream::iter([Ok::<_, Error<Status>>(1), Ok(2)])
                .chain(futures::stream::pending())
                .map(move |chunk| {
                    let _ = &guard;
                    chunk
                });
            Ok(chunks.boxed())
        }
    };
    let mut stream = retry
        .stream(&StandardClassify, timeouts, open)
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), 1);
    assert_eq!(live.load(Ordering::Relaxed), 1);
    drop(stream);
    assert_eq!(live.load(Ordering::Relaxed), 0);

    let silent = || {
        let l = live.clone();
        async move {
            let guard = Live::enter(&l);
            Ok::<_, Error<Status>>(
                futures::stream::pending::<Result<u32, Error<Status>>>()
                    .map(move |chunk| {
                        let _ = &guard;
                        chunk
                    })
                    .boxed(),
            )
        }
    };
    let opening = retry.stream(&StandardClassify, timeouts, silent);
    assert!(
        tokio::time::timeout(Duration::from_millis(1_500), opening)
            .await
            .is_err()
    );
    assert_eq!(live.load(Ordering::Relaxed), 0);
}
