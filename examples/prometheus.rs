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
use backstop::cache::TieredCache;
use backstop::core::Histogram;
use backstop::core::LoadSignal;
use backstop::dedup::Group;
use backstop::limit::{Bulkhead, BulkheadConfig, KeyedRateLimiter, Quota};
use backstop::metrics::{LATENCY_BUCKETS, MetricsReporter};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Histograms get buckets a Prometheus user expects (5 ms to 2 min); without them this
    // exporter would render each histogram as a summary.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder)?;

    let per_user = Arc::new(KeyedRateLimiter::new(Quota::per_second(5)?.with_burst(5)?));
    let prompts: Group<String, String, String> = Group::new();
    let cache: TieredCache<String, String> = TieredCache::in_memory(1_000)?;
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
    // A latency the application measures itself, published as a real histogram.
    let provider_latency = Arc::new(Histogram::new());
    let watched = provider_latency.clone();
    reporter.register_histogram("provider", "backstop_call_seconds", move || {
        watched.snapshot()
    });

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
        let latency = provider_latency.clone();
        let answer = prompts
            .work(prompt.clone(), move || {
                async move {
                    breaker
                        .call(|| async move {
                            latency.record(std::time::Duration::from_millis(
                                u64::from(request % 8) * 30,
                            ));
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
