//! Every primitive's stats reach a real Prometheus exporter under the documented names.

#![cfg(feature = "full")]

use backstop::batch::{BatchConfig, Batcher};
use backstop::breaker::Breaker;
use backstop::cache::{MemoryCache, TieredCache};
use backstop::core::{Error, Histogram};
use backstop::core::{Layer, Service, ServiceExt, service_fn};
use backstop::core::{LoadSignal, ManualClock};
use backstop::dedup::Group;
use backstop::dedup::{DedupLayer, DedupWindow, DedupWindowConfig, StreamGroup};
use backstop::limit::{
    AdaptiveLimitConfig, AdaptiveLimiter, AdaptiveOutcome, Bulkhead, BulkheadConfig,
    KeyedRateLimiter, Quota,
};
use backstop::metrics::{Kind, LATENCY_BUCKETS, MetricsReporter, SERIES};
use backstop::pool::{Pool, PoolConfig};
use backstop::retry::RetryConfig;
use backstop::scale::{
    MetricSample, Observation, Policy, QueueConfig, QueuePolicy, Reading, Target,
};
use futures::StreamExt;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::time::Duration;

mod support;
use support::Connections;

/// A Prometheus recorder with Backstop's latency buckets, as an application sets it up
/// (without buckets the exporter renders a histogram as a summary).
fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

/// What an exporter renders after `reporter` publishes into it once.
fn publish_once(reporter: &MetricsReporter) -> String {
    let (recorder, scrape) = recorder();
    metrics::with_local_recorder(&recorder, || reporter.publish());
    scrape.render()
}

/// The value of the sample whose line starts with `series`, e.g. `m{name="x"}`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .expect("a number")
}

/// Every `backstop_` series in a scrape is in [`SERIES`], with its HELP text and the
/// type the catalogue gives it (a histogram's `_bucket`, `_sum` and `_count` samples
/// under its own name).
fn assert_every_series_is_described(text: &str) {
    let is_histogram = |name: &str| {
        SERIES
            .iter()
            .any(|series| series.name == name && series.kind == Kind::Histogram)
    };
    let names: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| line.starts_with("backstop_"))
        .map(|line| line.split(['{', ' ']).next().unwrap())
        .map(|sample| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| sample.strip_suffix(suffix))
                .find(|name| is_histogram(name))
                .unwrap_or(sample)
        })
        .collect();
    assert!(!names.is_empty());
    for name in names {
        let series = SERIES
            .iter()
            .find(|series| series.name == name)
            .unwrap_or_else(|| panic!("{name} is published but not in SERIES"));
        assert!(
            text.contains(&format!("# HELP {name} {}", series.help)),
            "no HELP for {name}"
        );
        let kind = match series.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            _ => "histogram",
        };
        assert!(text.contains(&format!("# TYPE {name} {kind}")), "{name}");
    }
}

/// A batcher answering each item with itself.
fn echo_batcher() -> Batcher<u32, u32> {
    Batcher::new(BatchConfig::default(), |items: Vec<u32>| async move {
        Ok::<_, std::io::Error>(items)
    })
    .unwrap()
}

/// A tiered cache of one memory tier.
fn memory_tiered() -> TieredCache<String, String> {
    TieredCache::in_memory(100).unwrap()
}

#[tokio::test]
async fn every_primitive_publishes_under_its_documented_names() {
    let reporter = MetricsReporter::new();

    let cache = memory_tiered();
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

    let batcher = echo_batcher();
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

    let adaptive = AdaptiveLimiter::new(AdaptiveLimitConfig::default()).unwrap();
    let permit = adaptive.acquire().await.unwrap();
    permit.complete(AdaptiveOutcome::Success);
    let watched = adaptive.clone();
    reporter.register("provider", move || watched.stats());

    let retry = RetryConfig::default().build().unwrap();
    retry
        .call(|| async { Ok::<_, Error<std::io::Error>>(1) })
        .await
        .unwrap();
    let watched = retry.clone();
    reporter.register("provider", move || watched.stats());

    let text = publish_once(&reporter);
    assert_every_series_is_described(&text);

    for (series, expected) in [
        (
            r#"backstop_cache_hits_total{name="responses",tier="l1",backend="memory"}"#,
            1.0,
        ),
        (r#"backstop_cache_misses_total{name="responses"}"#, 1.0),
        (
            r#"backstop_cache_hits_total{name="sessions",tier="memory"}"#,
            1.0,
        ),
        (r#"backstop_cache_entries{name="sessions"}"#, 1.0),
        (r#"backstop_breaker_state{name="llm",state="open"}"#, 1.0),
        (r#"backstop_breaker_state{name="llm",state="closed"}"#, 0.0),
        (r#"backstop_breaker_rejected_calls_total{name="llm"}"#, 1.0),
        (r#"backstop_limit_admitted_total{name="per_user"}"#, 1.0),
        (r#"backstop_limit_rejected_total{name="per_user"}"#, 1.0),
        (r#"backstop_limit_keys{name="per_user"}"#, 1.0),
        (r#"backstop_bulkhead_in_flight{name="provider"}"#, 1.0),
        (
            r#"backstop_bulkhead_rejected_total{name="provider",reason="full"}"#,
            1.0,
        ),
        (r#"backstop_load_in_flight{name="provider"}"#, 1.0),
        (r#"backstop_dedup_executions_total{name="prompts"}"#, 1.0),
        (r#"backstop_batch_submitted_total{name="calls"}"#, 1.0),
        (
            r#"backstop_pool_connections{name="provider",state="in_use"}"#,
            1.0,
        ),
        (r#"backstop_pool_checkouts_total{name="provider"}"#, 1.0),
        // 50 queued at 5 per replica.
        (
            r#"backstop_scale_recommended_replicas{name="gateway"}"#,
            10.0,
        ),
        (
            r#"backstop_scale_desired_replicas{name="gateway"}"#,
            desired,
        ),
        (r#"backstop_adaptive_admitted_total{name="provider"}"#, 1.0),
        (r#"backstop_retry_attempts_total{name="provider"}"#, 1.0),
    ] {
        assert_eq!(sample(&text, series), expected, "{series}");
    }

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
    let text = publish_once(&reporter);
    for name in ["providers/openai", "providers/anthropic"] {
        let series = format!(r#"backstop_breaker_state{{name="{name}",state="closed"}}"#);
        assert_eq!(sample(&text, &series), 1.0);
    }
}

#[test]
fn every_series_follows_prometheus_conventions() {
    let mut names = std::collections::HashSet::new();
    for series in SERIES {
        let name = series.name;
        assert!(names.insert(name), "{name} twice");
        assert!(name.starts_with("backstop_"), "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
        assert_eq!(
            series.kind == Kind::Counter,
            name.ends_with("_total"),
            "{name}: counters and only counters end in _total"
        );
        assert!(
            !(name.contains("quantile") && series.unit == Some(metrics::Unit::Seconds)),
            "{name}: a latency is a histogram, not all-time quantile gauges"
        );
        for reserved in ["_count", "_sum", "_bucket"] {
            assert!(!name.ends_with(reserved), "{name} ends in {reserved}");
        }
        for word in name.split('_') {
            assert!(
                ![
                    "percent", "pct", "ms", "us", "ns", "millis", "micros", "nanos"
                ]
                .contains(&word)
                    && !word.starts_with("milli")
                    && !word.starts_with("micro")
                    && !word.starts_with("nano"),
                "{name}: base units and ratios only"
            );
        }
        let base = name.strip_suffix("_total").unwrap_or(name);
        let expected = match series.unit {
            Some(metrics::Unit::Seconds) => "_seconds",
            Some(metrics::Unit::Bytes) => "_bytes",
            None => "_ratio",
            Some(metrics::Unit::Count) => "",
            Some(other) => panic!("{name}: {other:?} is not a base unit"),
        };
        if expected.is_empty() {
            for suffix in ["_seconds", "_bytes", "_ratio"] {
                assert!(
                    !base.ends_with(suffix),
                    "{name} is a count but ends in {suffix}"
                );
            }
        } else {
            assert!(base.ends_with(expected), "{name} should end in {expected}");
        }
        assert!(
            !series.help.is_empty() && series.help.ends_with('.'),
            "{name}"
        );
    }
}

#[test]
fn a_breaker_failure_rate_is_published_as_a_ratio() {
    let breaker = Breaker::builder()
        .name("llm")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(90.0)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for fails in [true, false, false, false] {
        let _ = runtime
            .block_on(breaker.call(|| async move { if fails { Err("boom") } else { Ok(()) } }));
    }
    assert_eq!(
        breaker.stats().failure_rate,
        Some(25.0),
        "the stats say percent"
    );
    let reporter = MetricsReporter::new();
    reporter.register("llm", move || breaker.stats());
    let text = publish_once(&reporter);
    assert_eq!(
        sample(&text, r#"backstop_breaker_failure_ratio{name="llm"}"#),
        0.25
    );
}

#[test]
fn a_histogram_reaches_the_exporter_as_buckets_once_per_value() {
    let (recorder, scrape) = recorder();
    let waits = std::sync::Arc::new(Histogram::new());
    let reporter = MetricsReporter::new();
    let watched = waits.clone();
    reporter.register_histogram("provider", "backstop_pool_wait_seconds", move || {
        watched.snapshot()
    });
    for ms in [2, 3, 40, 40, 700] {
        waits.record(Duration::from_millis(ms));
    }
    metrics::with_local_recorder(&recorder, || reporter.publish());
    waits.record(Duration::from_secs(7));
    metrics::with_local_recorder(&recorder, || reporter.publish());
    let text = scrape.render();
    let bucket = |le: &str| {
        sample(
            &text,
            &format!(r#"backstop_pool_wait_seconds_bucket{{name="provider",le="{le}"}}"#),
        )
    };
    assert_eq!(bucket("0.005"), 2.0);
    assert_eq!(bucket("0.05"), 4.0);
    assert_eq!(bucket("1"), 5.0);
    assert_eq!(
        bucket("10"),
        6.0,
        "the second publish adds only the new value"
    );
    assert_eq!(bucket("+Inf"), 6.0);
    assert_eq!(
        sample(
            &text,
            r#"backstop_pool_wait_seconds_count{name="provider"}"#
        ),
        6.0
    );
    let sum = sample(&text, r#"backstop_pool_wait_seconds_sum{name="provider"}"#);
    assert!((7.785..7.785 * 1.0625).contains(&sum), "{sum}");
    assert!(text.contains("# HELP backstop_pool_wait_seconds Time callers waited"));
}

/// Issue 27: the batcher's, the tiered cache's and the pool's latencies were all-time
/// quantile gauges. They are histograms now, each value observed once across publishes.
#[tokio::test(start_paused = true)]
async fn batcher_cache_and_pool_latencies_are_histograms() {
    let (recorder, scrape) = recorder();
    let reporter = MetricsReporter::new();

    let batcher = echo_batcher();
    let watched = batcher.clone();
    reporter.register("calls", move || watched.stats());
    let cache = memory_tiered();
    let watched = cache.clone();
    reporter.register("responses", move || watched.stats());
    let pool = Pool::new(Connections, PoolConfig::default()).unwrap();
    let watched = pool.clone();
    reporter.register("provider", move || watched.stats());

    let count = |text: &str, metric: &str, name: &str| {
        sample(text, &format!(r#"{metric}_count{{name="{name}"}}"#))
    };
    let mut published = Vec::new();
    for round in 1..=2u32 {
        assert_eq!(batcher.submit(round).await.unwrap(), round);
        let key = format!("k{round}");
        let loaded = cache
            .get_or_load(&key, || async {
                Ok::<_, std::io::Error>(Some("v".to_string()))
            })
            .await
            .unwrap();
        assert_eq!(loaded.as_deref(), Some("v"));
        drop(pool.get().await.unwrap());
        metrics::with_local_recorder(&recorder, || reporter.publish());
        let text = scrape.render();
        published.push([
            count(&text, "backstop_batch_queue_wait_seconds", "calls"),
            count(&text, "backstop_batch_handler_seconds", "calls"),
            count(&text, "backstop_cache_load_seconds", "responses"),
            count(&text, "backstop_pool_wait_seconds", "provider"),
            count(&text, "backstop_pool_usage_seconds", "provider"),
        ]);
        if round == 2 {
            assert_every_series_is_described(&text);
            assert!(!text.contains("quantile_seconds"), "{text}");
            let immediate = r#"backstop_pool_wait_seconds_bucket{name="provider",le="0.005"}"#;
            assert_eq!(
                sample(&text, immediate),
                2.0,
                "a checkout that found room waited 0"
            );
        }
    }
    assert_eq!(published, [[1.0; 5], [2.0; 5]], "each value observed once");
}

const CALLERS: usize = 60;

fn coalesced(reporter: &MetricsReporter, name: &str) -> f64 {
    let text = publish_once(reporter);
    assert_eq!(
        sample(
            &text,
            &format!(r#"backstop_dedup_executions_total{{name="{name}"}}"#)
        ),
        1.0,
        "{name}"
    );
    sample(
        &text,
        &format!(r#"backstop_dedup_coalesced_total{{name="{name}"}}"#),
    )
}

/// Issue 27: 60 callers shared one call and `backstop_dedup_coalesced_total` read 0. It
/// is the callers served by an execution they did not start on every path.
#[tokio::test(start_paused = true)]
async fn sixty_callers_sharing_one_call_are_59_coalesced_on_every_path() {
    let reporter = MetricsReporter::new();
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, String>(1u32)
    };

    let group: Group<u8, u32, String> = Group::new();
    futures::future::join_all((0..CALLERS).map(|_| group.work(1, slow))).await;
    reporter.register("group", move || group.stats());

    // Callers one after another: the first runs, the others are answered by the window.
    let window: DedupWindow<u8, u32, String> =
        DedupWindow::new(DedupWindowConfig::default()).unwrap();
    for _ in 0..CALLERS {
        window.work(1, slow).await.unwrap();
    }
    let watched = window.clone();
    reporter.register("window", move || watched.stats());

    let layered = Group::new();
    let service = DedupLayer::new(layered.clone()).layer(
        service_fn(|_: u8| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, std::io::Error>(1u32)
        })
        .lift(),
    );
    futures::future::join_all((0..CALLERS).map(|_| service.call(1))).await;
    reporter.register("layer", move || layered.stats());

    let streams: StreamGroup<u8, u32, Error<std::io::Error>> = StreamGroup::new();
    let readers: Vec<_> = (0..CALLERS)
        .map(|_| {
            streams.share(1, || async {
                Ok(futures::stream::iter([Ok::<_, Error<std::io::Error>>(
                    1u32,
                )]))
            })
        })
        .collect();
    futures::future::join_all(readers.into_iter().map(|s| s.collect::<Vec<_>>())).await;
    reporter.register("streams", move || streams.stats());

    for name in ["group", "window", "layer", "streams"] {
        assert_eq!(coalesced(&reporter, name), (CALLERS - 1) as f64, "{name}");
    }
}

/// Across processes, callers served by another process's execution are coalesced too:
/// 50 callers in two processes, one execution, 49 coalesced in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_dedup_counts_callers_served_by_another_process_as_coalesced() {
    use backstop::dedup::{DistributedConfig, DistributedGroup};
    use backstop_testkit::RedisTestContext;

    let Some(ctx) = RedisTestContext::from_env("metrics_distributed_coalesced").await else {
        return;
    };
    let config = DistributedConfig {
        prefix: ctx.key("dedup"),
        poll_interval: Duration::from_millis(1),
        max_poll_interval: Duration::from_millis(10),
        ..DistributedConfig::default()
    };
    let process = || {
        let client = redis::Client::open(ctx.url()).unwrap();
        DistributedGroup::<String, u64, String>::new(client, config.clone()).unwrap()
    };
    let (a, b) = (process(), process());
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = futures::future::FutureExt::shared(async move { released.await.is_ok() });
    let call = |group: &DistributedGroup<String, u64, String>| {
        let (group, released) = (group.clone(), released.clone());
        async move {
            group
                .work("k".to_string(), move || async move {
                    released.await;
                    Ok(42)
                })
                .await
        }
    };
    let first = tokio::spawn(futures::future::join_all((0..20).map(|_| call(&a))));
    while a.stats().leased_executions == 0 {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn(futures::future::join_all((0..30).map(|_| call(&b))));
    while b.stats().polls == 0 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    for outcome in first
        .await
        .unwrap()
        .into_iter()
        .chain(second.await.unwrap())
    {
        assert_eq!(outcome.unwrap().value, 42);
    }

    let reporter = MetricsReporter::new();
    reporter.register("a", move || a.stats());
    reporter.register("b", move || b.stats());
    let text = publish_once(&reporter);
    let total = |metric: &str| -> f64 {
        ["a", "b"]
            .iter()
            .map(|name| sample(&text, &format!(r#"{metric}{{name="{name}"}}"#)))
            .sum()
    };
    assert_eq!(total("backstop_dedup_executions_total"), 1.0);
    assert_eq!(total("backstop_dedup_coalesced_total"), 49.0);
    assert_eq!(
        sample(&text, r#"backstop_dedup_remote_results_total{name="b"}"#),
        1.0
    );
    ctx.cleanup().await;
}
