//! Every primitive's stats, published through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! The primitives keep their own counters (plain atomics read by `stats()`); they never
//! call into a metrics recorder on the hot path. A [`MetricsReporter`] holds a snapshot
//! function per primitive and, on [`publish`](MetricsReporter::publish), writes every
//! snapshot to whatever recorder the application installed — a Prometheus exporter, a
//! StatsD sink, a test recorder. Call it just before a scrape renders, or on an interval.
//!
//! Names follow Prometheus conventions and one scheme: `backstop_<primitive>_<what>`,
//! `_total` for counters, `_seconds` for durations, a `name` label for the instance and
//! further labels for dimensions (`tier`, `state`, `reason`, `quantile`):
//!
//! | primitive | examples |
//! |---|---|
//! | tiered cache | `backstop_cache_hits_total{name,tier="l1"}`, `backstop_cache_misses_total`, `backstop_cache_load_seconds{quantile}` |
//! | memory cache | `backstop_cache_hits_total{name,tier="memory"}`, `backstop_cache_evictions_total{name,cause}`, `backstop_cache_entries` |
//! | breaker | `backstop_breaker_state{name,state}` (1 for the current state), `backstop_breaker_failure_rate`, `backstop_breaker_rejected_calls_total` |
//! | limiter | `backstop_limit_admitted_total{name}`, `backstop_limit_rejected_total{name}`, `backstop_limit_keys{name}` |
//! | bulkhead | `backstop_bulkhead_in_flight{name}`, `backstop_bulkhead_rejected_total{name,reason}` |
//! | dedup | `backstop_dedup_executions_total{name}`, `backstop_dedup_coalesced_total{name}`, `backstop_dedup_window_hits_total{name}` |
//! | batcher | `backstop_batch_batches_total{name,reason}`, `backstop_batch_size{name,quantile}`, `backstop_batch_queue_wait_seconds{name,quantile}` |
//! | pool | `backstop_pool_connections{name,state="in_use"\|"idle"}`, `backstop_pool_wait_seconds{name,quantile}`, `backstop_pool_timeouts_total{name}` |
//! | autoscaler | `backstop_scale_desired_replicas{name}`, `backstop_scale_current_replicas{name}` |
//!
//! ```
//! use backstop::breaker::Breaker;
//! use backstop::metrics::MetricsReporter;
//! use metrics_exporter_prometheus::PrometheusBuilder;
//!
//! let recorder = PrometheusBuilder::new().build_recorder();
//! let scrape = recorder.handle();
//! metrics::set_global_recorder(recorder).expect("no recorder installed yet");
//!
//! let breaker = Breaker::builder().name("llm").build()?;
//! let reporter = MetricsReporter::new();
//! let watched = breaker.clone();
//! reporter.register("llm", move || watched.stats());
//!
//! reporter.publish();
//! let text = scrape.render();
//! assert!(text.contains(r#"backstop_breaker_state{name="llm",state="closed"} 1"#));
//! # Ok::<_, backstop::core::ConfigError>(())
//! ```

#[cfg(feature = "batch")]
mod batch;
#[cfg(feature = "breaker")]
mod breaker;
#[cfg(feature = "cache")]
mod cache;
#[cfg(feature = "dedup")]
mod dedup;
#[cfg(feature = "limit")]
mod limit;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "scale")]
mod scale;

use backstop_core::LoadSnapshot;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A stats snapshot that knows how to write itself to the `metrics` facade.
///
/// Implemented for every primitive's stats type; `name` becomes the `name` label.
pub trait PublishMetrics {
    /// Writes this snapshot's counters and gauges, labelled with `name`.
    fn publish(&self, name: &str);
}

impl<T: PublishMetrics + ?Sized> PublishMetrics for &T {
    fn publish(&self, name: &str) {
        (**self).publish(name);
    }
}

type Snapshot = Box<dyn Fn(&str) + Send + Sync>;

/// The primitives to publish, each with its instance name and a snapshot function.
///
/// Cloning shares the registrations, so a web handler and a background task can both
/// hold it.
#[derive(Clone, Default)]
pub struct MetricsReporter {
    sources: Arc<Mutex<Vec<(String, Snapshot)>>>,
}

impl MetricsReporter {
    /// An empty reporter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `snapshot()` under `name` on every [`publish`](Self::publish).
    ///
    /// `snapshot` is usually `move || primitive.stats()` over a clone of the primitive.
    pub fn register<S, F>(&self, name: impl Into<String>, snapshot: F) -> &Self
    where
        F: Fn() -> S + Send + Sync + 'static,
        S: PublishMetrics,
    {
        let publish: Snapshot = Box::new(move |name| snapshot().publish(name));
        self.lock().push((name.into(), publish));
        self
    }

    /// Reads every registered snapshot and writes it to the installed recorder.
    pub fn publish(&self) {
        for (name, publish) in self.lock().iter() {
            publish(name);
        }
    }

    /// Names of the registered instances, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().map(|(name, _)| name.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Snapshot)>> {
        // A snapshot closure that panicked mid-publish leaves the list itself intact.
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MetricsReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsReporter")
            .field("names", &self.names())
            .finish()
    }
}

/// `backstop_load_*{name}`: the load any primitive reports through `LoadSignal`.
impl PublishMetrics for LoadSnapshot {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        gauge("backstop_load_in_flight", &labels, self.in_flight as f64);
        gauge("backstop_load_queued", &labels, self.queued as f64);
        if let Some(capacity) = self.capacity {
            gauge("backstop_load_capacity", &labels, capacity as f64);
        }
        gauge(
            "backstop_load_mean_wait_seconds",
            &labels,
            self.mean_wait.as_secs_f64(),
        );
        gauge(
            "backstop_load_p95_wait_seconds",
            &labels,
            self.p95_wait.as_secs_f64(),
        );
    }
}

pub(crate) type Labels<'a> = [(&'static str, String)];

/// Sets a monotonically increasing count read from a snapshot.
#[cfg(any(
    feature = "batch",
    feature = "breaker",
    feature = "cache",
    feature = "dedup",
    feature = "limit",
    feature = "pool"
))]
pub(crate) fn counter(metric: &'static str, labels: &Labels<'_>, value: u64) {
    ::metrics::counter!(metric, labels).absolute(value);
}

pub(crate) fn gauge(metric: &'static str, labels: &Labels<'_>, value: f64) {
    ::metrics::gauge!(metric, labels).set(value);
}

/// A latency summary as Prometheus-style quantile gauges plus a count.
#[cfg(any(feature = "batch", feature = "cache", feature = "pool"))]
pub(crate) fn latency(
    metric: &'static str,
    count: &'static str,
    name: &str,
    summary: &backstop_core::LatencySummary,
) {
    for (quantile, value) in [
        ("0.5", summary.p50),
        ("0.95", summary.p95),
        ("0.99", summary.p99),
    ] {
        gauge(
            metric,
            &[("name", name.to_owned()), ("quantile", quantile.to_owned())],
            value.as_secs_f64(),
        );
    }
    counter(count, &[("name", name.to_owned())], summary.count);
}
