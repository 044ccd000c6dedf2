//! The retry budget under a full outage: retries add at most the budget's share of the
//! load plus its floor, never the attempt count.

use backstop_core::{Error, Layer, Service, service_fn};
use backstop_retry::{Jitter, RetryBudgetConfig, RetryConfig, RetryLayer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

mod support;

#[derive(Debug)]
struct Down;

#[tokio::test(start_paused = true)]
async fn a_minute_of_total_outage_stays_within_the_budget() {
    const RATE: u64 = 10; // calls per second
    const SECONDS: u64 = 60;
    const RATIO: f64 = 0.2;
    const FLOOR: u64 = 1;

    let backend_calls = Arc::new(AtomicU64::new(0));
    let counted = backend_calls.clone();
    let backend = service_fn(move |()| {
        counted.fetch_add(1, Ordering::Relaxed);
        async { Err::<(), _>(Error::Inner(Down)) }
    });
    let retry = RetryConfig {
        max_attempts: 5,
        backoff: support::backoff(Duration::from_millis(100), Jitter::None),
        budget: RetryBudgetConfig {
            ratio: RATIO,
            min_per_sec: FLOOR as u32,
            max_banked: 100,
        },
        ..RetryConfig::default()
    }
    .build()
    .unwrap();
    let stack = Arc::new(RetryLayer::new(retry.clone()).layer(backend));

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1_000 / RATE));
    let mut calls = Vec::new();
    for _ in 0..RATE * SECONDS {
        tick.tick().await;
        let stack = stack.clone();
        calls.push(tokio::spawn(async move { stack.call(()).await }));
    }
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
    let seconds = started.elapsed().as_secs_f64().ceil() as u64;

    let requests = RATE * SECONDS;
    let attempts = backend_calls.load(Ordering::Relaxed);
    let bound = requests + (requests as f64 * RATIO) as u64 + FLOOR * (seconds + 1);
    let stats = retry.stats();
    println!(
        "outage: {requests} calls, {attempts} attempts (bound {bound}, without a budget {}), \
         {} budget refusals over {seconds} s",
        requests * 5,
        stats.budget_refusals
    );
    assert!(attempts <= bound, "{attempts} attempts > bound {bound}");
    // The budget grants what it promises: the share and the floor, less under one retry.
    assert!(
        attempts + FLOOR * 2 + 1 >= bound,
        "{attempts} attempts, bound {bound}"
    );
    assert_eq!(stats.calls, requests);
    assert_eq!(stats.attempts, attempts);
    assert_eq!(stats.retries, attempts - requests);
    // Every call that did not use all five attempts was stopped by the budget.
    assert!(stats.budget_refusals >= requests - stats.retries / 4);
}
