//! A surge of background agents against a model server, with and without an adaptive
//! concurrency limit (simulated time: runs in about a second).
//!
//! `cargo run --release --example adaptive`
//!
//! The model server runs 20 calls at once, 50 ms each, and queues the rest. Critical
//! agents send 100 calls/s throughout; background agents send 200 calls/s, then surge to
//! 2,000 calls/s (five times what the server can do) for 10 s. Without a limit every call
//! joins the server's queue and everyone waits longer and longer; with
//! `AdaptiveLayer` (Gradient2, half the limit held for critical agents) the calls in flight
//! settle near the server's 20 slots (the limit itself is higher, since critical agents
//! leave most of their share idle and background agents may not take it), background calls
//! beyond that are refused at once, and critical calls keep their 50 ms.

use backstop::core::{Error, Layer, Service, ServiceExt, TokioClock, service_fn};
use backstop::limit::{AdaptiveLayer, AdaptiveLimitConfig, AdaptiveLimiter, PriorityClassConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

#[derive(Clone, Copy)]
struct AgentCall {
    critical: bool,
}

#[derive(Debug)]
struct ModelError;

/// Per class: latencies of answered calls, and calls sent.
#[derive(Default)]
struct Tally {
    latencies: [Vec<Duration>; 2],
    sent: [usize; 2],
}

fn summary(tally: &Tally, class: usize) -> String {
    let mut latencies = tally.latencies[class].clone();
    latencies.sort_unstable();
    let p = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    format!(
        "{:>5.1} % answered, p50 {:>6.0} ms, p99 {:>6.0} ms",
        100.0 * latencies.len() as f64 / tally.sent[class].max(1) as f64,
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
    )
}

/// Sends the traffic for 15 s through `service`, tallying the surge's last 10 s.
async fn surge<S>(service: Arc<S>) -> Tally
where
    S: Service<AgentCall, Response = (), Error = Error<ModelError>> + 'static,
{
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut credit = [0.0f64; 2];
    for ms in 0..15_000u64 {
        let rates = [100.0, if ms < 5_000 { 200.0 } else { 2_000.0 }];
        for class in 0..2 {
            credit[class] += rates[class] / 1_000.0;
            while credit[class] >= 1.0 {
                credit[class] -= 1.0;
                let (service, tally) = (service.clone(), tally.clone());
                let measured = ms >= 5_000;
                if measured {
                    tally.lock().unwrap().sent[class] += 1;
                }
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let answered = service
                        .call(AgentCall {
                            critical: class == 0,
                        })
                        .await
                        .is_ok();
                    if measured && answered {
                        tally.lock().unwrap().latencies[class].push(sent.elapsed());
                    }
                });
            }
        }
        tokio::time::sleep_until(start + Duration::from_millis(ms + 1)).await;
    }
    // Calls still queued a few seconds after the surge count as unanswered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::mem::take(&mut *tally.lock().unwrap())
}

fn model_server() -> impl Service<AgentCall, Response = (), Error = Error<ModelError>> + 'static {
    let slots = Arc::new(Semaphore::new(20));
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(1)));
    service_fn(move |_: AgentCall| {
        let (slots, jitter) = (slots.clone(), 0.9 + 0.2 * rng.lock().unwrap().f64());
        async move {
            let _slot = slots.acquire().await.map_err(|_| ModelError)?;
            tokio::time::sleep(Duration::from_millis(50).mul_f64(jitter)).await;
            Ok::<_, ModelError>(())
        }
    })
    .lift()
}

fn main() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    };

    let without = runtime().block_on(surge(Arc::new(model_server())));
    println!("without a limit:");
    println!("  critical:   {}", summary(&without, 0));
    println!("  background: {}", summary(&without, 1));

    let limiter = AdaptiveLimiter::with_clock(
        AdaptiveLimitConfig {
            initial_limit: 10,
            classes: vec![
                PriorityClassConfig::new("critical", 0.5),
                PriorityClassConfig::new("background", 0.0),
            ],
            ..Default::default()
        },
        TokioClock,
    )
    .expect("valid config");
    let critical = limiter.class("critical").expect("configured");
    let background = limiter.class("background").expect("configured");
    let limited = AdaptiveLayer::new(limiter.clone())
        .key(move |call: &AgentCall| if call.critical { critical } else { background })
        .layer(model_server());
    let with = runtime().block_on(surge(Arc::new(limited)));
    let stats = limiter.stats();
    println!("with AdaptiveLayer (Gradient2, critical holds half the limit):");
    println!("  critical:   {}", summary(&with, 0));
    println!("  background: {}", summary(&with, 1));
    println!(
        "  limit {} ({} held for critical agents, who use about 5; the server has 20 slots), \
         baseline {:.1} ms, background refused {}",
        stats.limit,
        stats.classes[0].guaranteed,
        stats.baseline.unwrap_or_default().as_secs_f64() * 1e3,
        stats.classes[1].shed + stats.classes[1].rejected
    );
}
