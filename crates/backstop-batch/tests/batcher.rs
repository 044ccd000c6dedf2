//! Behaviour of the batcher under paused tokio time: every timing assertion is exact.

use backstop_batch::{BatchConfig, BatchError, BatchLayer, Batcher, CloseMode};
use backstop_core::{Error, Layer, LoadSignal, RejectKind, Service, ServiceExt, service_fn};
use backstop_testkit::assert_fields;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

type Log = Arc<Mutex<Vec<Vec<u32>>>>;

/// A handler that records each batch, sleeps `cost` and echoes `item * 10`.
fn echo(
    log: &Log,
    cost: Duration,
) -> impl Fn(Vec<u32>) -> BoxFuture<'static, Result<Vec<u32>, std::io::Error>> + Send + Sync + 'static
{
    let log = log.clone();
    move |batch: Vec<u32>| {
        log.lock().unwrap().push(batch.clone());
        async move {
            sleep(cost).await;
            Ok(batch.into_iter().map(|n| n * 10).collect())
        }
        .boxed()
    }
}

/// An [`echo`] batcher of at most `max_batch_size` requests, each waiting at most
/// `max_delay`.
fn echo_batcher(
    log: &Log,
    cost: Duration,
    max_batch_size: usize,
    max_delay: Duration,
) -> Batcher<u32, u32> {
    Batcher::builder(echo(log, cost))
        .max_batch_size(max_batch_size)
        .max_delay(max_delay)
        .build()
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `future`, boxed, after checking that its first poll leaves it pending.
fn still_pending<'a, T>(future: impl Future<Output = T> + Send + 'a) -> BoxFuture<'a, T> {
    let mut future = future.boxed();
    assert!((&mut future).now_or_never().is_none());
    future
}

#[tokio::test(start_paused = true)]
async fn full_batch_dispatches_without_waiting_for_the_delay() {
    let log = Log::default();
    let batcher = echo_batcher(&log, Duration::ZERO, 4, Duration::from_secs(1));
    let start = Instant::now();
    let results = futures::future::join_all((0..4).map(|n| batcher.submit(n))).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    let results: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results, [0, 10, 20, 30]);
    assert_eq!(*log.lock().unwrap(), [vec![0, 1, 2, 3]]);
    let stats = batcher.stats();
    assert_eq!((stats.batches, stats.dispatch_reasons.full), (1, 1));
    assert_eq!(stats.batch_size.max, 4);
}

#[tokio::test(start_paused = true)]
async fn partial_batch_dispatches_after_max_delay() {
    let log = Log::default();
    let batcher = echo_batcher(&log, Duration::ZERO, 10, ms(10));
    let start = Instant::now();
    let results = futures::future::join_all((0..3).map(|n| batcher.submit(n))).await;
    assert_eq!(start.elapsed(), ms(10));
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(*log.lock().unwrap(), [vec![0, 1, 2]]);
    let stats = batcher.stats();
    assert_eq!(stats.dispatch_reasons.timeout, 1);
    assert_eq!(stats.queue_wait.max, ms(10));
}

#[tokio::test(start_paused = true)]
async fn preferred_size_dispatches_early_and_the_rest_waits() {
    let log = Log::default();
    let batcher = Batcher::builder(echo(&log, Duration::ZERO))
        .max_batch_size(8)
        .preferred_batch_sizes([2])
        .max_delay(ms(50))
        .build()
        .unwrap();
    let start = Instant::now();
    let (a, b) = tokio::join!(batcher.submit(1), batcher.submit(2));
    assert_eq!((a.unwrap(), b.unwrap()), (10, 20));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(batcher.submit(3).await.unwrap(), 30);
    assert_eq!(start.elapsed(), ms(50));
    let reasons = batcher.stats().dispatch_reasons;
    assert_fields!(reasons, preferred: 1, timeout: 1);
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_queue_and_timer() {
    let log = Log::default();
    let batcher = Batcher::builder(echo(&log, Duration::ZERO))
        .max_batch_size(2)
        .max_delay(ms(20))
        .key(|n: &u32| n % 2)
        .build()
        .unwrap();
    let start = Instant::now();
    let odd = batcher.submit(1);
    let evens = async {
        sleep(ms(5)).await;
        tokio::join!(batcher.submit(2), batcher.submit(4))
    };
    let (odd, (two, four)) = tokio::join!(odd, evens);
    assert_eq!((odd.unwrap(), two.unwrap(), four.unwrap()), (10, 20, 40));
    // The evens filled up at 5 ms; the lone odd item waited its own full delay.
    assert_eq!(start.elapsed(), ms(20));
    assert_eq!(*log.lock().unwrap(), [vec![2, 4], vec![1]]);
}

/// Occupies the only in-flight slot with item 99 so later items queue up.
async fn blocked_batcher(
    log: &Log,
    configure: impl FnOnce(BatchConfig) -> BatchConfig,
) -> (
    Batcher<u32, u32>,
    tokio::task::JoinHandle<Result<u32, BatchError>>,
) {
    let config = configure(BatchConfig {
        max_batch_size: 1,
        max_delay: Duration::ZERO,
        max_concurrent_batches: 1,
        priority_levels: 2,
        ..BatchConfig::default()
    });
    let batcher = Batcher::builder(echo(log, ms(10)))
        .config(config)
        .priority(|n: &u32| usize::from(*n >= 100))
        .build()
        .unwrap();
    let blocker = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.submit(99).await }
    });
    tokio::task::yield_now().await;
    (batcher, blocker)
}

#[tokio::test(start_paused = true)]
async fn higher_priority_dispatches_first() {
    let log = Log::default();
    let (batcher, blocker) = blocked_batcher(&log, |c| BatchConfig {
        priority_aging: None,
        ..c
    })
    .await;
    let results = futures::future::join_all([1, 2, 100].map(|n| batcher.submit(n))).await;
    assert!(results.iter().all(Result::is_ok));
    blocker.await.unwrap().unwrap();
    assert_eq!(*log.lock().unwrap(), [[99], [100], [1], [2]]);
}

/// High-priority items (>= 100) arrive every 5 ms, faster than the 10 ms handler serves
/// them; returns when the low-priority item 1, submitted at 1 ms, completed.
async fn low_priority_completion(aging: Option<Duration>) -> Duration {
    let log = Log::default();
    let (batcher, _blocker) = blocked_batcher(&log, |c| BatchConfig {
        priority_aging: aging,
        queue_capacity: 1000,
        ..c
    })
    .await;
    let start = Instant::now();
    let producer = tokio::spawn({
        let batcher = batcher.clone();
        async move {
            let mut highs = Vec::new();
            for n in 0..60 {
                let batcher = batcher.clone();
                highs.push(tokio::spawn(async move { batcher.submit(100 + n).await }));
                sleep(ms(5)).await;
            }
            for high in highs {
                high.await.unwrap().unwrap();
            }
        }
    });
    sleep(ms(1)).await;
    batcher.submit(1).await.unwrap();
    let done = start.elapsed();
    producer.await.unwrap();
    done
}

#[tokio::test(start_paused = true)]
async fn aging_keeps_low_priority_from_starving() {
    let strict = low_priority_completion(None).await;
    let aged = low_priority_completion(Some(ms(20))).await;
    // Strictly, the low item waits behind all 60 high items (600 ms of handler time).
    assert!(strict >= ms(600), "strict {strict:?}");
    // With aging it overtakes high items that arrived over 20 ms after it.
    assert!(aged <= ms(60), "aged {aged:?}");
}

#[tokio::test(start_paused = true)]
async fn items_waiting_too_long_are_rejected_with_a_typed_error() {
    let log = Log::default();
    let (batcher, blocker) = blocked_batcher(&log, |c| BatchConfig {
        queue_timeout: Some(ms(4)),
        ..c
    })
    .await;
    let start = Instant::now();
    match batcher.submit(1).await {
        Err(BatchError::QueueTimeout { waited, timeout }) => {
            assert_eq!(timeout, ms(4));
            assert!(waited >= ms(4) && waited < ms(5), "{waited:?}");
        }
        other => panic!("expected a queue timeout, got {other:?}"),
    }
    assert!(start.elapsed() < ms(5));
    blocker.await.unwrap().unwrap();
    assert_eq!(*log.lock().unwrap(), [[99]]);
    assert_eq!(batcher.stats().rejected_timeout, 1);
}

#[tokio::test(start_paused = true)]
async fn full_queue_fails_fast_or_waits_for_room() {
    let log = Log::default();
    let (batcher, blocker) = blocked_batcher(&log, |c| BatchConfig {
        queue_capacity: 2,
        ..c
    })
    .await;
    let queued = still_pending(futures::future::join_all([1, 2].map(|n| batcher.submit(n))));
    assert!(matches!(
        batcher.try_submit(3).await,
        Err(BatchError::QueueFull)
    ));
    let waiting = still_pending(batcher.submit(4));
    assert_eq!(batcher.load().queued, 2);
    let (queued, waiting) = tokio::join!(queued, waiting);
    assert!(queued.iter().all(Result::is_ok));
    assert_eq!(waiting.unwrap(), 40);
    blocker.await.unwrap().unwrap();
    assert_eq!(batcher.stats().rejected_full, 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_batches_are_capped_and_pipelined() {
    let in_flight = Arc::new(Mutex::new((0usize, 0usize)));
    let handler = {
        let in_flight = in_flight.clone();
        move |batch: Vec<u32>| {
            let in_flight = in_flight.clone();
            async move {
                {
                    let mut guard = in_flight.lock().unwrap();
                    guard.0 += 1;
                    guard.1 = guard.1.max(guard.0);
                }
                sleep(ms(10)).await;
                in_flight.lock().unwrap().0 -= 1;
                Ok::<_, std::io::Error>(batch)
            }
        }
    };
    let batcher = Batcher::builder(handler)
        .max_batch_size(2)
        .max_concurrent_batches(2)
        .build()
        .unwrap();
    let start = Instant::now();
    let results = futures::future::join_all((0..8).map(|n| batcher.submit(n))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(in_flight.lock().unwrap().1, 2);
    // Four batches, two at a time, 10 ms each.
    assert_eq!(start.elapsed(), ms(20));
}

#[tokio::test(start_paused = true)]
async fn handler_error_reaches_every_caller_of_its_batch_only() {
    let batcher = Batcher::builder(|batch: Vec<u32>| async move {
        if batch.contains(&13) {
            Err(std::io::Error::other("unlucky batch"))
        } else {
            Ok(batch)
        }
    })
    .max_batch_size(2)
    .build()
    .unwrap();
    let (a, b) = tokio::join!(batcher.submit(13), batcher.submit(1));
    for result in [a, b] {
        match result {
            Err(BatchError::Handler(error)) => assert_eq!(error.to_string(), "unlucky batch"),
            other => panic!("expected a handler error, got {other:?}"),
        }
    }
    assert_eq!(batcher.submit(2).await.unwrap(), 2);
    assert_fields!(batcher.stats(), failed: 2, handler_errors: 1, succeeded: 1);
}

#[tokio::test(start_paused = true)]
async fn panicking_handler_fails_its_batch_and_the_batcher_keeps_working() {
    let batcher = Batcher::builder(|batch: Vec<u32>| async move {
        sleep(ms(1)).await;
        assert!(!batch.contains(&13), "handler bug");
        Ok::<_, std::io::Error>(batch)
    })
    .max_batch_size(2)
    .build()
    .unwrap();
    let (a, b) = tokio::join!(batcher.submit(13), batcher.submit(1));
    assert!(matches!(a, Err(BatchError::HandlerPanicked)));
    assert!(matches!(b, Err(BatchError::HandlerPanicked)));
    let (c, d) = tokio::join!(batcher.submit(2), batcher.submit(3));
    assert_eq!((c.unwrap(), d.unwrap()), (2, 3));
    assert_fields!(batcher.stats(), handler_panics: 1, in_flight_batches: 0);
}

#[tokio::test(start_paused = true)]
async fn wrong_result_count_is_an_error_not_a_hang() {
    let batcher = Batcher::builder(|batch: Vec<u32>| async move {
        Ok::<_, std::io::Error>(batch.into_iter().skip(1).collect::<Vec<_>>())
    })
    .max_batch_size(3)
    .build()
    .unwrap();
    let results = futures::future::join_all((0..3).map(|n| batcher.submit(n))).await;
    for result in results {
        assert!(matches!(
            result,
            Err(BatchError::ResultCount {
                expected: 3,
                got: 2
            })
        ));
    }
    assert_eq!(batcher.stats().result_count_mismatches, 1);
}

#[tokio::test(start_paused = true)]
async fn caller_dropped_before_dispatch_is_removed_and_frees_its_slot() {
    let log = Log::default();
    let batcher = Batcher::builder(echo(&log, Duration::ZERO))
        .max_batch_size(4)
        .max_delay(ms(10))
        .queue_capacity(1)
        .build()
        .unwrap();
    let gone = still_pending(batcher.submit(1));
    assert!(matches!(
        batcher.try_submit(2).await,
        Err(BatchError::QueueFull)
    ));
    drop(gone);
    assert_eq!(batcher.load().queued, 0);
    assert_eq!(batcher.try_submit(3).await.unwrap(), 30);
    assert_eq!(*log.lock().unwrap(), [[3]]);
    assert_eq!(batcher.stats().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn caller_dropped_after_dispatch_has_its_result_discarded() {
    let log = Log::default();
    let batcher = Batcher::builder(echo(&log, ms(10)))
        .max_batch_size(2)
        .build()
        .unwrap();
    let gone = still_pending(batcher.submit(1));
    let kept = batcher.submit(2);
    let (kept, ()) = tokio::join!(kept, async {
        sleep(ms(5)).await;
        drop(gone);
    });
    assert_eq!(kept.unwrap(), 20);
    assert_eq!(*log.lock().unwrap(), [[1, 2]]);
    assert_fields!(batcher.stats(), discarded: 1, cancelled: 0);
}

#[tokio::test(start_paused = true)]
async fn close_flushes_queued_items_at_once_and_rejects_new_ones() {
    let log = Log::default();
    let batcher = echo_batcher(&log, Duration::ZERO, 8, Duration::from_secs(60));
    let start = Instant::now();
    let queued = futures::future::join_all((0..3).map(|n| batcher.submit(n)));
    let (results, ()) = tokio::join!(queued, async {
        tokio::task::yield_now().await;
        batcher.close();
    });
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(batcher.is_closed());
    assert!(matches!(batcher.submit(9).await, Err(BatchError::Closed)));
    assert!(matches!(
        batcher.try_submit(9).await,
        Err(BatchError::Closed)
    ));
    let stats = batcher.stats();
    assert_eq!(
        (stats.dispatch_reasons.flush, stats.rejected_closed),
        (1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn close_in_fail_mode_rejects_queued_items_and_waiting_submitters() {
    let log = Log::default();
    let (batcher, blocker) = blocked_batcher(&log, |c| BatchConfig {
        on_close: CloseMode::Fail,
        queue_capacity: 1,
        ..c
    })
    .await;
    let queued = batcher.submit(1);
    let waiting = batcher.submit(2);
    let (queued, waiting, ()) = tokio::join!(queued, waiting, async {
        tokio::task::yield_now().await;
        batcher.close();
    });
    assert!(matches!(queued, Err(BatchError::Closed)));
    assert!(matches!(waiting, Err(BatchError::Closed)));
    // The batch already in the handler finishes normally.
    assert_eq!(blocker.await.unwrap().unwrap(), 990);
    assert_eq!(*log.lock().unwrap(), [[99]]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_tears_everything_down() {
    let sentinel = Arc::new(());
    let handler = {
        let sentinel = sentinel.clone();
        move |batch: Vec<u32>| {
            let _ = &sentinel;
            async move { Ok::<_, std::io::Error>(batch) }
        }
    };
    let batcher = Batcher::builder(handler).build().unwrap();
    assert_eq!(batcher.submit(7).await.unwrap(), 7);
    let clone = batcher.clone();
    drop(batcher);
    assert!(!clone.is_closed());
    drop(clone);
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    // The dispatcher exited and released the handler: nothing is left running.
    assert_eq!(Arc::strong_count(&sentinel), 1);
}

#[test]
fn submitting_outside_a_runtime_is_an_error_not_a_panic() {
    let batcher = Batcher::builder(|batch: Vec<u32>| async move { Ok::<_, std::io::Error>(batch) })
        .build()
        .unwrap();
    let result = futures::executor::block_on(batcher.submit(1));
    assert!(matches!(result, Err(BatchError::NoRuntime)));
}

#[tokio::test(start_paused = true)]
async fn load_reports_queue_in_flight_and_waits() {
    let log = Log::default();
    let (batcher, blocker) = blocked_batcher(&log, |c| c).await;
    let queued = futures::future::join_all([1, 2].map(|n| batcher.submit(n)));
    let (_, load) = tokio::join!(queued, async {
        tokio::task::yield_now().await;
        batcher.load()
    });
    assert_fields!(load, in_flight: 1, queued: 2, capacity: Some(1));
    blocker.await.unwrap().unwrap();
    let load = batcher.load();
    assert_fields!(load, in_flight: 0, queued: 0);
    // Item 1 waited 10 ms, item 2 20 ms, the blocker none.
    assert_eq!(load.mean_wait, ms(10));
    assert_eq!(load.p95_wait, ms(20));
}

#[tokio::test(start_paused = true)]
async fn batch_layer_serves_single_requests_from_a_batch_service() {
    let batches = Log::default();
    let inner = {
        let batches = batches.clone();
        service_fn(move |batch: Vec<u32>| {
            batches.lock().unwrap().push(batch.clone());
            async move { Ok::<_, std::io::Error>(batch.into_iter().map(|n| n + 1).collect::<Vec<_>>()) }
        })
        .lift()
    };
    let config = BatchConfig {
        max_batch_size: 2,
        ..BatchConfig::default()
    };
    let layer = BatchLayer::new(config).unwrap().key(|n: &u32| *n >= 10);
    let service = layer.layer(inner);
    let results = futures::future::join_all([1, 10, 2, 11].map(|n| service.call(n))).await;
    let results: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results, [2, 11, 3, 12]);
    let mut seen = batches.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [vec![1, 2], vec![10, 11]]);
    assert!(
        BatchLayer::<u32>::new(BatchConfig {
            max_batch_size: 0,
            ..BatchConfig::default()
        })
        .is_err()
    );
}

#[derive(Debug, PartialEq)]
struct Overloaded(u32);

#[tokio::test(start_paused = true)]
async fn batch_layer_shares_one_typed_failure_with_every_caller_of_the_batch() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let inner = {
        let calls = calls.clone();
        service_fn(move |batch: Vec<u32>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if batch.contains(&0) {
                    Err(Overloaded(529))
                } else {
                    Ok(batch)
                }
            }
        })
        .lift()
    };
    let service = BatchLayer::new(BatchConfig {
        max_batch_size: 3,
        queue_capacity: 3,
        ..BatchConfig::default()
    })
    .unwrap()
    .layer(inner);
    let results = futures::future::join_all([0, 1, 2].map(|n| service.call(n))).await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one batch"
    );
    for result in &results {
        let error = result.as_ref().unwrap_err();
        assert!(
            matches!(error, Error::Shared(_)),
            "one failure, shared: {error:?}"
        );
        assert_eq!(error.inner(), Some(&Overloaded(529)), "and still typed");
    }
    service.batcher().close();
    let closed = service.call(5).await.unwrap_err();
    assert_eq!(closed.rejection().unwrap().kind, RejectKind::Closed);
    assert_eq!(service.readiness().unwrap_err().kind, RejectKind::Closed);
}

#[test]
fn bad_config_is_a_typed_error() {
    let error = Batcher::builder(|batch: Vec<u32>| async move { Ok::<_, std::io::Error>(batch) })
        .max_batch_size(4)
        .preferred_batch_sizes([8])
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "preferred_batch_sizes");
}

#[tokio::test(start_paused = true)]
async fn adaptive_mode_shrinks_batches_toward_the_latency_target() {
    // The backend costs 1 ms per item; the target is 10 ms per call.
    let sizes = Log::default();
    let handler = {
        let sizes = sizes.clone();
        move |batch: Vec<u32>| {
            sizes.lock().unwrap().push(batch.clone());
            async move {
                sleep(ms(batch.len() as u64)).await;
                Ok::<_, std::io::Error>(batch)
            }
        }
    };
    let batcher = Batcher::builder(handler)
        .max_batch_size(64)
        .queue_capacity(2_000)
        .adaptive(ms(10), 2)
        .build()
        .unwrap();
    let results = futures::future::join_all((0..1_000).map(|n| batcher.submit(n))).await;
    assert!(results.iter().all(Result::is_ok));
    let sizes: Vec<usize> = sizes.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes[0], 64);
    // Once adapted, batches hover around the target (the last one takes the remainder).
    let settled = &sizes[sizes.len() / 2..sizes.len() - 1];
    assert!(
        settled.iter().all(|size| (5..=11).contains(size)),
        "{settled:?}"
    );
    let limit = batcher.stats().effective_max_batch_size;
    assert!((5..=11).contains(&limit), "{limit}");
}

#[tokio::test(start_paused = true)]
async fn submitter_dropped_while_waiting_for_room_leaks_nothing() {
    let log = Log::default();
    let (batcher, blocker) = blocked_batcher(&log, |c| BatchConfig {
        queue_capacity: 1,
        ..c
    })
    .await;
    let queued = still_pending(batcher.submit(1));
    let waiting = still_pending(batcher.submit(2));
    drop(waiting);
    let (queued, late) = tokio::join!(queued, async {
        // Once item 1 is dispatched its room goes to this submit, not to the dropped one.
        sleep(ms(10)).await;
        batcher.submit(3).await
    });
    assert_eq!((queued.unwrap(), late.unwrap()), (10, 30));
    blocker.await.unwrap().unwrap();
    assert_eq!(*log.lock().unwrap(), [[99], [1], [3]]);
    assert_fields!(batcher.stats(), submitted: 3, cancelled: 0, queued: 0);
}

#[tokio::test(start_paused = true)]
async fn stats_serialize_with_human_durations() {
    let log = Log::default();
    let batcher = echo_batcher(&log, ms(3), 2, ms(4));
    batcher.submit(1).await.unwrap();
    let stats = serde_json::to_value(batcher.stats()).unwrap();
    assert_eq!(stats["dispatch_reasons"]["timeout"], 1);
    assert_eq!(stats["queue_wait"]["max"], "4ms");
    assert_eq!(stats["handler_latency"]["p99"], "3ms");
    assert_eq!(stats["batch_size"]["max"], 1);
    assert_eq!(stats["effective_max_batch_size"], 2);
}

#[test]
fn callers_get_an_error_when_the_dispatchers_runtime_shuts_down() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let batcher = Batcher::builder(|batch: Vec<u32>| async move { Ok::<_, std::io::Error>(batch) })
        .max_batch_size(2)
        .max_delay(Duration::from_secs(60))
        .build()
        .unwrap();
    // The first full batch starts the dispatcher on `runtime`.
    let (a, b) = runtime.block_on(async { tokio::join!(batcher.submit(1), batcher.submit(2)) });
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    // A caller elsewhere queues an item that waits for the 60 s delay...
    let stranded = still_pending(batcher.submit(3));
    // ...and the dispatcher's runtime goes away: the caller is failed, not left hanging.
    drop(runtime);
    let result = futures::executor::block_on(stranded);
    assert!(matches!(result, Err(BatchError::Closed)));
    assert!(batcher.is_closed());
}
