//! Hedged requests on a simulated heavy-tailed backend: the tail shrinks, the extra load
//! stays within the hedge budget, losers are cancelled.

use backstop_core::{Error, Layer, Service, service_fn};
use backstop_retry::RetryLayer;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use support::Live;
use support::tail::{SeededLatency, hedging};
use tokio::time::Instant;

mod support;

#[derive(Debug)]
struct Never;

struct Backend {
    calls: Arc<AtomicU64>,
    live: Arc<AtomicI64>,
}

fn backend(
    seed: u64,
) -> (
    impl Service<(), Response = (), Error = Error<Never>> + 'static,
    Backend,
) {
    let latencies = SeededLatency::new(seed);
    let counters = Backend {
        calls: Arc::default(),
        live: Arc::default(),
    };
    let (calls, live) = (counters.calls.clone(), counters.live.clone());
    let service = service_fn(move |()| {
        calls.fetch_add(1, Ordering::Relaxed);
        let guard = Live::enter(&live);
        let latency = latencies.next();
        async move {
            tokio::time::sleep(latency).await;
            drop(guard);
            Ok(())
        }
    });
    (service, counters)
}

/// Runs `n` calls, 20 at a time; returns their latencies sorted.
async fn run<S>(stack: Arc<S>, n: usize) -> Vec<Duration>
where
    S: Service<(), Response = (), Error = Error<Never>> + 'static,
{
    let mut latencies: Vec<Duration> = futures::stream::iter(0..n)
        .map(|_| {
            let stack = stack.clone();
            async move {
                let started = Instant::now();
                stack.call(()).await.unwrap();
                started.elapsed()
            }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    latencies.sort();
    latencies
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(start_paused = true)]
async fn hedging_cuts_the_p99_at_least_threefold_within_five_percent_extra_load() {
    const N: usize = 10_000;
    let (plain, _) = backend(11);
    let baseline = p99(&run(Arc::new(plain), N).await);

    let (hedged, counters) = backend(11);
    let retry = hedging().build().unwrap();
    let stack = Arc::new(RetryLayer::new(retry.clone()).layer(hedged));
    run(stack.clone(), 1_000).await; // the first latency window: no hedges yet
    assert_eq!(retry.stats().hedges_fired, 0);
    let before = counters.calls.load(Ordering::Relaxed);
    let latencies = run(stack, N).await;
    let extra = (counters.calls.load(Ordering::Relaxed) - before) as f64 / N as f64 - 1.0;
    let with_hedging = p99(&latencies);
    let stats = retry.stats();
    println!(
        "p99 without hedging {baseline:?}, with hedging {with_hedging:?} ({:.1}x); extra load \
         {:.2} %; hedges fired {}, won {}, delay {:?}",
        baseline.as_secs_f64() / with_hedging.as_secs_f64(),
        extra * 100.0,
        stats.hedges_fired,
        stats.hedges_won,
        stats.hedge_delay
    );
    assert!(
        baseline >= with_hedging * 3,
        "{baseline:?} vs {with_hedging:?}"
    );
    assert!(extra <= 0.05, "extra load {extra}");
    assert!(stats.hedges_won > 0 && stats.hedges_won <= stats.hedges_fired);
    assert_eq!(counters.live.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn the_losing_attempt_is_cancelled_when_the_hedge_wins() {
    // 1 000 fast calls fill the latency window, then one call whose first attempt stalls.
    let live = Arc::new(AtomicI64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let (l, c) = (live.clone(), calls.clone());
    let stall_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stall = stall_next.clone();
    let service = service_fn(move |()| {
        c.fetch_add(1, Ordering::Relaxed);
        let guard = Live::enter(&l);
        let latency = if stall.swap(false, Ordering::Relaxed) {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(10)
        };
        async move {
            tokio::time::sleep(latency).await;
            drop(guard);
            Ok::<_, Error<Never>>(latency)
        }
    });
    let retry = hedging().build().unwrap();
    let stack = RetryLayer::new(retry.clone()).layer(service);
    for _ in 0..1_000 {
        stack.call(()).await.unwrap();
    }
    stall_next.store(true, Ordering::Relaxed);
    let started = Instant::now();
    assert_eq!(stack.call(()).await.unwrap(), Duration::from_millis(10));
    assert!(
        started.elapsed() <= Duration::from_millis(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "the stalled attempt was cancelled"
    );
    let stats = retry.stats();
    assert_eq!((stats.hedges_fired, stats.hedges_won), (1, 1));
    assert_eq!(calls.load(Ordering::Relaxed), 1_002);
}
