//! Every primitive's stats reach a real Prometheus exporter under the documented names.

#![cfg(feature = "full")]

use backstop::batch::{BatchConfig, Batcher};
use backstop::breaker::Breaker;
use backstop::cache::{MemoryCache, MemoryTier, TieredCache};
use backstop::core::{LoadSignal, ManualClock};
use backstop::dedup::Group;
use backstop::limit::{Bulkhead, BulkheadConfig, KeyedRateLimiter, Quota};
use backstop::metrics::MetricsReporter;
use backstop::pool::{Manager, Metrics, Pool, PoolConfig, RecycleResult};
use backstop::scale::{
    MetricSample, Observation, Policy, QueueConfig, QueuePolicy, Reading, Target,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::time::Duration;

fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

/// The value of the sample whose line starts with `series`, e.g. `m{name="x"}`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .expect("a number")
}

struct Connections;

impl Manager for Connections {
    type Type = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(7)
    }

    async fn recycle(&self, _: &mut u32, _: &Metrics) -> RecycleResult<std::io::Error> {
        Ok(())
    }
}

#[tokio::test]
async fn every_primitive_publishes_under_its_documented_names() {
    let reporter = MetricsReporter::new();

    let cache: TieredCache<String, String> = TieredCache::builder()
        .memory(MemoryTier::with_capacity(100).unwrap(), None)
        .build()
        .unwrap();
    cache
        .insert(&"k".to_string(), "v".to_string())
        .await
        .unwrap();
    assert!(cache.get(&"k".to_string()).await.is_some());
    assert!(cache.get(&"absent".to_string()).await.is_none());
    let watched = cache.clone();
    reporter.register("responses", move || watched.stats());

    let memory: MemoryCache<String, u32> = MemoryCache::builder().max_capacity(10).build().unwrap();
    memory.insert("a".into(), 1);
    memory.get("a");
    memory.get("b");
    let watched = memory.clone();
    reporter.register("sessions", move || watched.stats());

    let clock = ManualClock::new();
    let breaker = Breaker::builder()
        .name("llm")
        .consecutive_failures(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let _ = breaker.call(|| async { Err::<(), _>("boom") }).await;
    let _ = breaker.call(|| async { Ok::<_, &str>(()) }).await;
    let watched = breaker.clone();
    reporter.register("llm", move || watched.stats());

    let limiter = std::sync::Arc::new(KeyedRateLimiter::new(Quota::per_second(1).unwrap()));
    assert!(limiter.check_key(&"alice".to_string()).is_ok());
    assert!(limiter.check_key(&"alice".to_string()).is_err());
    let watched = limiter.clone();
    reporter.register("per_user", move || watched.stats());

    let bulkhead = Bulkhead::new(BulkheadConfig {
        max_concurrent: 1,
        max_queued: 0,
        ..BulkheadConfig::default()
    })
    .unwrap();
    let held = bulkhead.try_acquire().unwrap();
    assert!(bulkhead.try_acquire().is_err());
    let watched = bulkhead.clone();
    reporter.register("provider", move || watched.stats());
    let watched = bulkhead.clone();
    reporter.register("provider", move || watched.load());

    let group: Group<String, u32, String> = Group::new();
    group.work("q".into(), || async { Ok(1) }).await.unwrap();
    let watched = group.clone();
    reporter.register("prompts", move || watched.stats());

    let batcher = Batcher::new(BatchConfig::default(), |items: Vec<u32>| async move {
        Ok::<_, std::io::Error>(items)
    })
    .unwrap();
    assert_eq!(batcher.submit(3).await.unwrap(), 3);
    let watched = batcher.clone();
    reporter.register("calls", move || watched.stats());

    let pool = Pool::new(Connections, PoolConfig::default()).unwrap();
    let connection = pool.get().await.unwrap();
    let watched = pool.clone();
    reporter.register("provider", move || watched.stats());

    let mut policy = QueuePolicy::new(QueueConfig {
        metric: "queue".into(),
        ..QueueConfig::default()
    })
    .unwrap();
    let decision = policy.decide(&Observation::new(Duration::from_secs(1), 1, 1).metric(
        MetricSample::new("queue", Target::AverageValue(5.0), Reading::Total(50.0)),
    ));
    let desired = f64::from(decision.desired);
    reporter.register("gateway", move || decision.clone());

    let (recorder, scrape) = recorder();
    metrics::with_local_recorder(&recorder, || reporter.publish());
    let text = scrape.render();

    let hits = r#"backstop_cache_hits_total{name="responses",tier="l1",backend="memory"}"#;
    assert_eq!(sample(&text, hits), 1.0);
    assert_eq!(
        sample(&text, r#"backstop_cache_misses_total{name="responses"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"backstop_cache_hits_total{name="sessions",tier="memory"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_cache_entries{name="sessions"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_breaker_state{name="llm",state="open"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"backstop_breaker_state{name="llm",state="closed"}"#
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            r#"backstop_breaker_rejected_calls_total{name="llm"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_limit_admitted_total{name="per_user"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_limit_rejected_total{name="per_user"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_limit_keys{name="per_user"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_bulkhead_in_flight{name="provider"}"#),
        1.0
    );
    let full = r#"backstop_bulkhead_rejected_total{name="provider",reason="full"}"#;
    assert_eq!(sample(&text, full), 1.0);
    assert_eq!(
        sample(&text, r#"backstop_load_in_flight{name="provider"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_dedup_executions_total{name="prompts"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"backstop_batch_submitted_total{name="calls"}"#),
        1.0
    );
    let in_use = r#"backstop_pool_connections{name="provider",state="in_use"}"#;
    assert_eq!(sample(&text, in_use), 1.0);
    assert_eq!(
        sample(&text, r#"backstop_pool_checkouts_total{name="provider"}"#),
        1.0
    );
    let recommended = r#"backstop_scale_recommended_replicas{name="gateway"}"#;
    assert_eq!(
        sample(&text, recommended),
        10.0,
        "50 queued at 5 per replica"
    );
    let desired_series = r#"backstop_scale_desired_replicas{name="gateway"}"#;
    assert_eq!(sample(&text, desired_series), desired);

    drop((held, connection));
}

#[tokio::test]
async fn counters_follow_the_primitive_between_publishes() {
    let limiter = std::sync::Arc::new(KeyedRateLimiter::new(Quota::per_second(100).unwrap()));
    let reporter = MetricsReporter::new();
    let watched = limiter.clone();
    reporter.register("api", move || watched.stats());
    let (recorder, scrape) = recorder();
    let series = r#"backstop_limit_admitted_total{name="api"}"#;

    limiter.check_key(&1u64).unwrap();
    metrics::with_local_recorder(&recorder, || reporter.publish());
    assert_eq!(sample(&scrape.render(), series), 1.0);

    for _ in 0..4 {
        limiter.check_key(&2u64).unwrap();
    }
    metrics::with_local_recorder(&recorder, || reporter.publish());
    assert_eq!(
        sample(&scrape.render(), series),
        5.0,
        "absolute, not added twice"
    );
    assert_eq!(reporter.names(), ["api"]);
}

#[test]
fn a_registry_publishes_each_breaker_under_its_own_name() {
    let registry = backstop::breaker::BreakerRegistry::new(Default::default()).unwrap();
    registry.get("openai");
    registry.get("anthropic");
    let reporter = MetricsReporter::new();
    reporter.register("providers", move || registry.stats());
    let (recorder, scrape) = recorder();
    metrics::with_local_recorder(&recorder, || reporter.publish());
    let text = scrape.render();
    for name in ["providers/openai", "providers/anthropic"] {
        let series = format!(r#"backstop_breaker_state{{name="{name}",state="closed"}}"#);
        assert_eq!(sample(&text, &series), 1.0);
    }
}
