//! How well retries and hedges behave, on simulated (paused) time.
//!
//! `cargo bench -p backstop --bench retry_quality` prints one line per figure:
//!
//! - `p99_ms workload=lognormal contender=<none|tower_hedge|backstop> value=<v>` and
//!   `extra_load workload=lognormal contender=<…> value=<fraction>`: a backend with
//!   log-normal latencies (median 100 ms, sigma 0.25) and 2 % stragglers at 20×, 20 calls
//!   in flight; both hedgers hedge after the observed 97th percentile.
//! - `attempts_per_request workload=outage contender=<tower_retry|backstop> value=<v>`: a
//!   backend failing every call for a minute at 100 calls a second, 5 attempts allowed;
//!   Backstop's budget allows 20 % retries (no floor), tower's `Retry` has no budget.
//!
//! The workload is seeded (paused time, one thread), so a run repeats exactly;
//! `RETRY_QUALITY_SEED=<n>` (42 by default) draws other latencies, to check that a result
//! holds beyond one draw.

// The backend and hedging policy of the crate's own hedging test, so both measure the same.
#[path = "../crates/backstop-retry/tests/support/tail.rs"]
mod tail;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backstop_core::{Error, Layer, Service, service_fn};
use backstop_retry::{Jitter, RetryBackoffConfig, RetryBudgetConfig, RetryConfig, RetryLayer};
use futures::StreamExt;
use tail::SeededLatency;
use tokio::time::Instant;
use tower::{Service as _, ServiceExt as _};

const CALLS: usize = 20_000;
const WARMUP: usize = 2_000;
const IN_FLIGHT: usize = 20;

#[derive(Debug, thiserror::Error)]
#[error("down")]
struct Down;

/// The latency generator's seed: `RETRY_QUALITY_SEED`, 42 by default, so a result can be
/// checked on other draws of the same workload.
fn seed() -> u64 {
    std::env::var("RETRY_QUALITY_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(42)
}

/// The simulated backend: counts calls, sleeps a sampled latency.
fn lognormal(calls: Arc<AtomicU64>) -> impl Fn(()) -> tokio::time::Sleep + Clone {
    let latency = Arc::new(SeededLatency::new(seed()));
    move |()| {
        calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(latency.next())
    }
}

/// Runs `n` calls of `call`, `IN_FLIGHT` at a time; returns the sorted latencies.
async fn drive<F, Fut>(n: usize, call: F) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut latencies: Vec<Duration> = futures::stream::iter(0..n)
        .map(|_| {
            let call = call();
            async move {
                let started = Instant::now();
                call.await;
                started.elapsed()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    latencies.sort();
    latencies
}

fn p99_ms(sorted: &[Duration]) -> f64 {
    sorted[(sorted.len() * 99).div_ceil(100) - 1].as_secs_f64() * 1e3
}

fn report(contender: &str, latencies: &[Duration], backend_calls: u64) {
    println!(
        "p99_ms workload=lognormal contender={contender} value={:.1}",
        p99_ms(latencies)
    );
    let extra = backend_calls as f64 / latencies.len() as f64 - 1.0;
    println!("extra_load workload=lognormal contender={contender} value={extra:.4}");
}

/// Reports `CALLS` of `call` after a warm-up, counting only the backend calls (`calls`)
/// they made.
async fn report_warm<F, Fut>(contender: &str, calls: &AtomicU64, call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    drive(WARMUP, &call).await;
    let before = calls.load(Ordering::Relaxed);
    let latencies = drive(CALLS, &call).await;
    report(
        contender,
        &latencies,
        calls.load(Ordering::Relaxed) - before,
    );
}

#[derive(Clone)]
struct HedgeAll;

impl tower::hedge::Policy<()> for HedgeAll {
    fn clone_request(&self, _: &()) -> Option<()> {
        Some(())
    }

    fn can_retry(&self, _: &()) -> bool {
        true
    }
}

async fn lognormal_workload() {
    // No hedging.
    let calls = Arc::new(AtomicU64::new(0));
    let backend = lognormal(calls.clone());
    let latencies = drive(CALLS, || backend(())).await;
    report("none", &latencies, calls.load(Ordering::Relaxed));

    // tower::hedge, after its warm-up.
    let calls = Arc::new(AtomicU64::new(0));
    let backend = lognormal(calls.clone());
    let service = tower::service_fn(move |()| {
        let sleep = backend(());
        async move {
            sleep.await;
            Ok::<_, Down>(())
        }
    });
    // `Hedge` is not `Clone`: callers share it and only hold the lock to start a call.
    let hedge = tokio::sync::Mutex::new(tower::hedge::Hedge::new(
        service,
        HedgeAll,
        100,
        0.97,
        Duration::from_secs(10),
    ));
    let call = || async {
        let pending = {
            let mut hedge = hedge.lock().await;
            hedge.ready().await.expect("always ready").call(())
        };
        pending.await.expect("never fails");
    };
    report_warm("tower_hedge", &calls, call).await;

    // Backstop, after its first latency window.
    let calls = Arc::new(AtomicU64::new(0));
    let backend = lognormal(calls.clone());
    let service = service_fn(move |()| {
        let sleep = backend(());
        async move {
            sleep.await;
            Ok::<_, Error<Down>>(())
        }
    });
    let retry = tail::hedging().build().expect("valid config");
    let stack = Arc::new(RetryLayer::new(retry).layer(service));
    let call = || {
        let stack = stack.clone();
        async move { stack.call(()).await.expect("never fails") }
    };
    report_warm("backstop", &calls, call).await;
}

/// Tower retry policy: up to 4 retries, no budget.
#[derive(Clone)]
struct FourRetries(u32);

impl tower::retry::Policy<(), (), Down> for FourRetries {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _: &mut (), result: &mut Result<(), Down>) -> Option<Self::Future> {
        if result.is_err() && self.0 < 4 {
            self.0 += 1;
            Some(tokio::time::sleep(
                Duration::from_millis(100) * 2u32.pow(self.0 - 1),
            ))
        } else {
            None
        }
    }

    fn clone_request(&mut self, _: &()) -> Option<()> {
        Some(())
    }
}

const OUTAGE_RATE: u64 = 100;
const OUTAGE_SECONDS: u64 = 60;

/// The backend of the outage: counts calls, fails every one.
fn failing(calls: Arc<AtomicU64>) -> impl Fn(()) -> std::future::Ready<Result<(), Down>> + Clone {
    move |()| {
        calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Err(Down))
    }
}

/// Sends `OUTAGE_RATE` calls a second for a minute, each spawned at its arrival, and
/// prints the attempts per request that reached the backend counting into `calls`.
async fn outage<F, Fut>(contender: &str, calls: &AtomicU64, call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_millis(1_000 / OUTAGE_RATE));
    let mut spawned = Vec::new();
    for _ in 0..OUTAGE_RATE * OUTAGE_SECONDS {
        tick.tick().await;
        spawned.push(tokio::spawn(call()));
    }
    for task in spawned {
        task.await.expect("no panic");
    }
    let value = calls.load(Ordering::Relaxed) as f64 / (OUTAGE_RATE * OUTAGE_SECONDS) as f64;
    println!("attempts_per_request workload=outage contender={contender} value={value:.3}");
}

async fn outage_workload() {
    let calls = Arc::new(AtomicU64::new(0));
    let peer = tower::retry::Retry::new(FourRetries(0), tower::service_fn(failing(calls.clone())));
    outage("tower_retry", &calls, || {
        let peer = peer.clone();
        async move {
            let _ = peer.oneshot(()).await;
        }
    })
    .await;

    let calls = Arc::new(AtomicU64::new(0));
    let fail = failing(calls.clone());
    let failing = service_fn(move |()| {
        let failed = fail(());
        async move { failed.await.map_err(Error::Inner) }
    });
    let retry = RetryConfig {
        max_attempts: 5,
        backoff: RetryBackoffConfig {
            jitter: Jitter::None,
            ..RetryBackoffConfig::default()
        },
        budget: RetryBudgetConfig {
            ratio: 0.2,
            min_per_sec: 0,
            max_banked: 100,
        },
        ..RetryConfig::default()
    }
    .build()
    .expect("valid config");
    let stack = Arc::new(RetryLayer::new(retry).layer(failing));
    outage("backstop", &calls, || {
        let stack = stack.clone();
        async move {
            let _ = stack.call(()).await;
        }
    })
    .await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused current-thread runtime");
    rt.block_on(lognormal_workload());
    rt.block_on(outage_workload());
}
