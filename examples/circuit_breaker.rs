//! A flaky backend is shed while it is down and trusted again once probes succeed.
//!
//! `cargo run --example circuit_breaker`
//!
//! The backend answers for the first 40 requests, fails for the next second, then
//! recovers. The breaker opens after the failure rate crosses 50 %, rejects calls without
//! touching the backend (each rejection says when to retry), probes with 3 calls after
//! the open period, backs off while the probes keep failing, and closes once they pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backstop::breaker::{Breaker, BreakerEvent};
use backstop::core::Error;

#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("503 service unavailable")
    }
}

/// Down between 40 requests in and one second after that.
struct FlakyBackend {
    served: AtomicU64,
    down_since: std::sync::OnceLock<Instant>,
}

impl FlakyBackend {
    async fn complete(&self, prompt: u64) -> Result<String, Unavailable> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        if n < 40 {
            return Ok(format!("answer {prompt}"));
        }
        let since = *self.down_since.get_or_init(Instant::now);
        if since.elapsed() < Duration::from_secs(1) {
            Err(Unavailable)
        } else {
            Ok(format!("answer {prompt}"))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let breaker = Breaker::builder()
        .name("llm-backend")
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_millis(300))
        .backoff(2.0, Duration::from_secs(2))
        .permitted_calls_in_half_open(3)
        .build()
        .expect("valid config");
    let started = Instant::now();
    breaker.subscribe(move |event| {
        if let BreakerEvent::StateTransition { name, from, to } = event {
            println!(
                "[{:>5} ms] {name}: {from} -> {to}",
                started.elapsed().as_millis()
            );
        }
    });

    let backend = Arc::new(FlakyBackend {
        served: AtomicU64::new(0),
        down_since: std::sync::OnceLock::new(),
    });
    let (mut ok, mut failed, mut shed) = (0, 0, 0);
    for prompt in 0..400u64 {
        let backend = backend.clone();
        match breaker
            .call(|| async move { backend.complete(prompt).await })
            .await
        {
            Ok(_) => ok += 1,
            Err(Error::Rejected(rejected)) => {
                shed += 1;
                if shed % 50 == 1 {
                    println!(
                        "[{:>5} ms] shed request {prompt}: {rejected} (retry after {:?})",
                        started.elapsed().as_millis(),
                        rejected.retry_after
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => failed += 1,
        }
    }
    let stats = breaker.stats();
    println!(
        "answered={ok} failed={failed} shed={shed} backend_calls={} final_state={}",
        backend.served.load(Ordering::SeqCst),
        stats.state
    );
    println!(
        "stats: {}",
        serde_json::to_string(&stats).expect("stats serialize")
    );
}
