//! Batching an LLM-style backend, and what it buys.
//!
//! `cargo run --release --example batching`
//!
//! Part one shows the API: requests grouped by model, interactive traffic ahead of batch
//! traffic, a bounded queue with a queue timeout, stats as JSON.
//!
//! Part two measures: a simulated backend whose cost is `20 ms + 1 ms·n` per call (n items),
//! at most 4 calls at once, under Poisson arrivals, run in paused tokio time so the figures
//! are exact and take no wall-clock time (arrivals land on tokio's 1 ms timer ticks). It
//! prints throughput and p50/p99 latency for one-call-per-item (`unbatched`) against the
//! batcher (`backstop`) and the batcher in adaptive mode with a 50 ms handler-latency target
//! (`backstop_adaptive`) as `<metric> workload=<w> contender=<c> value=<v>` lines.

use backstop::batch::{AdaptiveBatchConfig, BatchConfig, BatchError, BatchStats, Batcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep};

#[derive(Debug, Clone)]
struct Prompt {
    model: &'static str,
    text: String,
    interactive: bool,
}

async fn api_tour() -> Result<(), BatchError> {
    let batcher = Batcher::builder(|prompts: Vec<Prompt>| async move {
        // One backend call per batch; every prompt in it targets the same model.
        sleep(Duration::from_millis(30)).await;
        let model = prompts.first().map_or("none", |p| p.model);
        Ok::<_, std::io::Error>(
            prompts
                .iter()
                .map(|p| format!("[{model}] {}", p.text.to_uppercase()))
                .collect::<Vec<_>>(),
        )
    })
    .max_batch_size(8)
    .max_delay(Duration::from_millis(5))
    .queue_capacity(256)
    .queue_timeout(Duration::from_secs(2))
    .max_concurrent_batches(2)
    .priority_levels(2)
    .key(|p: &Prompt| p.model)
    .priority(|p: &Prompt| usize::from(p.interactive))
    .build()
    .expect("valid batch config");

    let calls = (0..20).map(|n| {
        let batcher = batcher.clone();
        let prompt = Prompt {
            model: if n % 3 == 0 { "large" } else { "small" },
            text: format!("prompt {n}"),
            interactive: n % 4 == 0,
        };
        tokio::spawn(async move { batcher.submit(prompt).await })
    });
    let calls: Vec<_> = calls.collect();
    for call in calls {
        let reply = call.await.expect("caller task finished")?;
        println!("{reply}");
    }
    let stats = serde_json::to_string_pretty(&batcher.stats()).expect("stats serialize");
    println!("{stats}");
    Ok(())
}

const COST_FIXED: Duration = Duration::from_millis(20);
const COST_PER_ITEM: Duration = Duration::from_millis(1);
const CONCURRENCY: usize = 4;
const ITEMS: usize = 4_000;
const MAX_BATCH: usize = 64;
const MAX_DELAY: Duration = Duration::from_millis(10);
const ADAPTIVE_TARGET: Duration = Duration::from_millis(50);

fn backend_cost(items: usize) -> Duration {
    COST_FIXED + COST_PER_ITEM * items as u32
}

struct Outcome {
    throughput: f64,
    p50: Duration,
    p99: Duration,
}

/// Exponential inter-arrival gaps from a fixed-seed xorshift, so every run is identical.
struct Arrivals {
    state: u64,
    rate: f64,
}

impl Iterator for Arrivals {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let uniform = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        Some(Duration::from_secs_f64(-(1.0 - uniform).ln() / self.rate))
    }
}

/// Offers `ITEMS` Poisson arrivals at `rate` per second to `serve`.
async fn offer<F, Fut>(rate: f64, serve: F) -> Outcome
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut at = start;
    let mut callers = Vec::with_capacity(ITEMS);
    let arrivals = Arrivals {
        state: 0x9E37_79B9_7F4A_7C15,
        rate,
    };
    for (n, gap) in arrivals.take(ITEMS).enumerate() {
        at += gap;
        tokio::time::sleep_until(at).await;
        let serve = serve.clone();
        callers.push(tokio::spawn(async move {
            let arrived = Instant::now();
            serve(n as u64).await;
            (arrived.elapsed(), Instant::now())
        }));
    }
    let mut latencies = Vec::with_capacity(ITEMS);
    let mut last = start;
    for caller in callers {
        let (latency, done) = caller.await.expect("caller finished");
        latencies.push(latency);
        last = last.max(done);
    }
    latencies.sort_unstable();
    let quantile = |q: f64| latencies[((q * ITEMS as f64).ceil() as usize).clamp(1, ITEMS) - 1];
    Outcome {
        throughput: ITEMS as f64 / (last - start).as_secs_f64(),
        p50: quantile(0.50),
        p99: quantile(0.99),
    }
}

/// The batcher with `config` in front of the simulated backend.
async fn run_batched(rate: f64, config: BatchConfig) -> (Outcome, BatchStats) {
    let batcher = Batcher::new(config, |batch: Vec<u64>| async move {
        sleep(backend_cost(batch.len())).await;
        Ok::<_, std::io::Error>(batch)
    })
    .expect("valid batch config");
    let submitter = batcher.clone();
    let outcome = offer(rate, move |n| {
        let batcher = submitter.clone();
        async move {
            let result = batcher.submit(n).await;
            result.expect("no rejections in this workload");
        }
    })
    .await;
    (outcome, batcher.stats())
}

async fn compare(rate: f64) {
    let workload = format!("poisson{rate}ps_cost20ms+1ms*n_conc{CONCURRENCY}");
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let unbatched = offer(rate, move |_| {
        let slots = slots.clone();
        async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            sleep(backend_cost(1)).await;
        }
    })
    .await;

    let fixed = BatchConfig {
        max_batch_size: MAX_BATCH,
        max_delay: MAX_DELAY,
        max_concurrent_batches: CONCURRENCY,
        queue_capacity: ITEMS,
        ..BatchConfig::default()
    };
    let adaptive = BatchConfig {
        adaptive: Some(AdaptiveBatchConfig {
            target_latency: ADAPTIVE_TARGET,
            min_batch_size: 1,
        }),
        ..fixed.clone()
    };
    let (batched, stats) = run_batched(rate, fixed).await;
    let (adapted, adapted_stats) = run_batched(rate, adaptive).await;

    let contenders = [
        ("unbatched", &unbatched),
        ("backstop", &batched),
        ("backstop_adaptive", &adapted),
    ];
    for (contender, outcome) in contenders {
        let lines = [
            ("batching_throughput_per_s", outcome.throughput),
            ("batching_p50_ms", outcome.p50.as_secs_f64() * 1e3),
            ("batching_p99_ms", outcome.p99.as_secs_f64() * 1e3),
        ];
        for (metric, value) in lines {
            println!("{metric} workload={workload} contender={contender} value={value:.1}");
        }
    }
    for (contender, stats) in [("backstop", &stats), ("backstop_adaptive", &adapted_stats)] {
        println!(
            "batching_mean_batch_size workload={workload} contender={contender} value={:.1}",
            stats.batch_size.mean
        );
        println!(
            "batching_handler_p99_ms workload={workload} contender={contender} value={:.1}",
            stats.handler_latency.p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "batching_throughput_ratio workload={workload} contender=backstop value={:.2}",
        batched.throughput / unbatched.throughput
    );
    println!(
        "batching_p99_bound_ms workload={workload} contender=backstop value={:.1}",
        (MAX_DELAY + backend_cost(MAX_BATCH)).as_secs_f64() * 1e3
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("a runtime builds");
    runtime
        .block_on(api_tour())
        .expect("every prompt is answered");

    for rate in [150.0, 1_000.0, 2_000.0, 5_000.0] {
        let simulation = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a paused runtime builds");
        simulation.block_on(compare(rate));
    }
}
