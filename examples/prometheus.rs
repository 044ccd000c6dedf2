//! Backstop's stats as Prometheus text, the way a `/metrics` endpoint would serve them.
//!
//! ```sh
//! cargo run --example prometheus
//! ```
//!
//! Builds a small stack (per-user limiter, dedup group, tiered cache, breaker, bulkhead),
//! sends it some traffic including a failing backend, then publishes every primitive's
//! stats through the `metrics` facade into a Prometheus recorder and prints the scrape.
//! In a service, install the recorder once at start-up and, in the `/metrics` handler, call
//! `reporter.publish()` then return `handle.render()`.

use backstop::breaker::Breaker;
use backstop::cache::{MemoryTier, TieredCache};
use backstop::core::LoadSignal;
use backstop::dedup::Group;
use backstop::limit::{Bulkhead, BulkheadConfig, KeyedRateLimiter, Quota};
use backstop::metrics::MetricsReporter;
use metrics_exporter_prometheus::PrometheusBuilder;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder)?;

    let per_user = Arc::new(KeyedRateLimiter::new(Quota::per_second(5)?.with_burst(5)?));
    let prompts: Group<String, String, String> = Group::new();
    let cache: TieredCache<String, String> = TieredCache::builder()
        .memory(MemoryTier::with_capacity(1_000)?, None)
        .build()?;
    let breaker = Breaker::builder()
        .name("provider")
        .count_window(10)
        .minimum_calls(5)
        .build()?;
    let bulkhead = Bulkhead::new(BulkheadConfig {
        max_concurrent: 4,
        ..BulkheadConfig::default()
    })?;

    let reporter = MetricsReporter::new();
    let watched = per_user.clone();
    reporter.register("per_user", move || watched.stats());
    let watched = prompts.clone();
    reporter.register("prompts", move || watched.stats());
    let watched = cache.clone();
    reporter.register("responses", move || watched.stats());
    let watched = breaker.clone();
    reporter.register("provider", move || watched.stats());
    let watched = bulkhead.clone();
    reporter.register("provider", move || watched.stats());
    let watched = bulkhead.clone();
    reporter.register("provider", move || watched.load());

    for request in 0..40u32 {
        let user = format!("user-{}", request % 3);
        if per_user.check_key(&user).is_err() {
            continue;
        }
        let prompt = format!("question {}", request % 8);
        if cache.get(&prompt).await.is_some() {
            continue;
        }
        let _permit = bulkhead.acquire().await?;
        let breaker = breaker.clone();
        let answer = prompts
            .work(prompt.clone(), move || {
                async move {
                    breaker
                        .call(|| async move {
                            // The backend fails every prompt ending in 7.
                            if request % 8 == 7 {
                                Err("503".to_string())
                            } else {
                                Ok(format!("answer {request}"))
                            }
                        })
                        .await
                        .map_err(|error| error.to_string())
                }
            })
            .await;
        if let Ok(outcome) = answer {
            cache.insert(&prompt, outcome.into_value()).await?;
        }
    }

    reporter.publish();
    let rendered = scrape.render();
    let mut samples: Vec<&str> = rendered
        .lines()
        .filter(|line| line.starts_with("backstop_"))
        .collect();
    samples.sort_unstable();
    for sample in samples {
        println!("{sample}");
    }
    Ok(())
}
