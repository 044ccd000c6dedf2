//! Every primitive's stats, published through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! The primitives keep their own counters (plain atomics read by `stats()`); they never
//! call into a metrics recorder on the hot path. A [`MetricsReporter`] holds a snapshot
//! function per primitive and, on [`publish`](MetricsReporter::publish), writes every
//! snapshot to whatever recorder the application installed — a Prometheus exporter, a
//! StatsD sink, a test recorder. Call it just before a scrape renders, or on an interval.
//!
//! Names follow Prometheus conventions and one scheme, checked by a test over [`SERIES`]:
//! `backstop_<primitive>_<what>`, `_total` for counters and only for them, base units
//! (`_seconds`, `_bytes`), ratios from 0 to 1 (`_ratio`, never a percentage), a `name`
//! label for the instance and further labels for dimensions (`tier`, `state`, `reason`,
//! `class`, `target`). Every series is described to the recorder (HELP text and unit) on
//! each publish; [`SERIES`] is the full list, for dashboards and alert rules.
//!
//! | primitive | examples |
//! |---|---|
//! | tiered cache | `backstop_cache_hits_total{name,tier="l1"}`, `backstop_cache_misses_total`, `backstop_cache_loads_total`, `backstop_cache_load_seconds` (histogram) |
//! | memory cache | `backstop_cache_hits_total{name,tier="memory"}`, `backstop_cache_evictions_total{name,cause}`, `backstop_cache_entries` |
//! | stream cache | `backstop_cache_stream_replays_total`, `backstop_cache_stream_not_stored_total{name,reason}`, its group's `backstop_dedup_*` |
//! | breaker | `backstop_breaker_state{name,state}` (1 for the current state), `backstop_breaker_failure_ratio`, `backstop_breaker_rejected_calls_total` |
//! | limiter (local or Redis) | `backstop_limit_admitted_total{name}`, `backstop_limit_rejected_total{name}`, `backstop_limit_keys{name}`, `backstop_limit_redis_errors_total` |
//! | bulkhead | `backstop_bulkhead_in_flight{name}`, `backstop_bulkhead_rejected_total{name,reason}` |
//! | adaptive limiter | `backstop_adaptive_limit{name}`, `backstop_adaptive_rejected_total{name,reason}`, `backstop_adaptive_class_in_flight{name,class}` |
//! | budgets | `backstop_budget_reserved_total{name}`, `backstop_budget_refused_total{name}`, `backstop_budget_keys{name,level}` |
//! | dedup (group, window, distributed, streams) | `backstop_dedup_executions_total{name}`, `backstop_dedup_coalesced_total{name}` (every caller served by an execution it did not start), `backstop_dedup_window_hits_total{name}` |
//! | retry | `backstop_retry_attempts_total{name}`, `backstop_retry_budget_refusals_total{name}`, `backstop_retry_hedge_delay_seconds{name}` |
//! | router | `backstop_route_fallbacks_total{name}`, `backstop_route_target_failed_total{name,target,class}`, `backstop_route_target_ewma_latency_seconds{name,target}` |
//! | batcher | `backstop_batch_batches_total{name,reason}`, `backstop_batch_size{name,quantile}`, `backstop_batch_queue_wait_seconds` and `backstop_batch_handler_seconds` (histograms) |
//! | pool | `backstop_pool_connections{name,state="in_use"\|"idle"}`, `backstop_pool_timeouts_total{name}`, `backstop_pool_wait_seconds` and `backstop_pool_usage_seconds` (histograms) |
//! | autoscaler | `backstop_scale_desired_replicas{name}`, `backstop_scale_current_replicas{name}` |
//!
//! **Latency** is a histogram, never a quantile gauge: the batcher's queue wait and handler
//! time, the tiered cache's loader time and the pool's checkout wait and hold time reach
//! the recorder as observations (each value once, the ones added since the previous
//! publish), bucketed by the exporter with [`LATENCY_BUCKETS`] or your own, so
//! `histogram_quantile(0.99, sum by (le) (rate(backstop_pool_wait_seconds_bucket[5m])))`
//! works across processes and windows. Time your own calls with a
//! `backstop_core::Histogram` and [`MetricsReporter::register_histogram`].
//!
//! **OpenTelemetry**: the facade is exporter-neutral, so the same reporter, names, HELP
//! text and units reach OpenTelemetry through a `metrics::Recorder` that records into an
//! OTel SDK `Meter` instead of the Prometheus recorder. `examples/otel.rs` is such a bridge
//! (about a hundred lines over the `metrics` and `opentelemetry` APIs): one instrument per
//! series, described with the HELP text and the unit in UCUM (`s`, `By`, `1`); counters
//! become monotonic sums (the bridge adds the difference between the absolute totals the
//! reporter writes, and drops `_total`, which an OTLP-to-Prometheus exporter adds back),
//! gauges gauges, and the latency histograms explicit-bucket histograms with
//! [`LATENCY_BUCKETS`] as their boundaries. Hand the `SdkMeterProvider` a
//! `PeriodicReader` over `opentelemetry_otlp::MetricExporter` to ship them to a
//! Collector, and call [`MetricsReporter::publish`] on an interval shorter than the
//! reader's.
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
mod catalogue;
#[cfg(feature = "dedup")]
mod dedup;
mod fields;
mod histogram;
#[cfg(feature = "limit")]
mod limit;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "retry")]
mod retry;
#[cfg(feature = "route")]
mod route;
#[cfg(feature = "scale")]
mod scale;
mod write;

pub use catalogue::{Kind, SERIES, Series, describe};
pub use histogram::{LATENCY_BUCKETS, LatencyHistogram};
use write::{Labels, values};

use backstop_core::{HistogramSnapshot, LoadSnapshot};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A stats snapshot that knows how to write itself to the `metrics` facade.
///
/// Implemented for every primitive's stats type; `name` becomes the `name` label.
pub trait PublishMetrics {
    /// Writes this snapshot's counters and gauges, labelled with `name`.
    fn publish(&self, name: &str);

    /// The latency histograms this snapshot carries, each with its series name (one of
    /// [`SERIES`] of kind [`Kind::Histogram`]): every value since creation.
    ///
    /// A histogram reaches the recorder as the observations added since the previous
    /// publish, so it needs a memory of that publish: [`MetricsReporter::register`]
    /// keeps one per registration. [`publish`](Self::publish) alone writes none of them.
    fn histograms(&self) -> Vec<(&'static str, &HistogramSnapshot)> {
        Vec::new()
    }
}

impl<T: PublishMetrics + ?Sized> PublishMetrics for &T {
    fn publish(&self, name: &str) {
        (**self).publish(name);
    }

    fn histograms(&self) -> Vec<(&'static str, &HistogramSnapshot)> {
        (**self).histograms()
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
        // One series per histogram metric, created on first sight: each remembers what it
        // published last, so a value is observed once however often `publish` runs.
        let published: Mutex<Vec<LatencyHistogram>> = Mutex::new(Vec::new());
        let publish: Snapshot = Box::new(move |name| {
            let stats = snapshot();
            stats.publish(name);
            let mut published = published.lock().unwrap_or_else(PoisonError::into_inner);
            for (metric, histogram) in stats.histograms() {
                let index = match published
                    .iter()
                    .position(|series| series.metric() == metric)
                {
                    Some(index) => index,
                    None => {
                        published.push(LatencyHistogram::new(metric));
                        published.len() - 1
                    }
                };
                published[index].publish(name, histogram);
            }
        });
        self.lock().push((name.into(), publish));
        self
    }

    /// Publishes the histogram `snapshot()` returns as the series `metric` (one of
    /// [`SERIES`] of kind [`Kind::Histogram`]), labelled `name`, on every
    /// [`publish`](Self::publish): the values recorded since the previous publish reach the
    /// recorder as observations, so the exporter's own buckets (see [`LATENCY_BUCKETS`])
    /// count them.
    ///
    /// `snapshot` is usually `move || histogram.snapshot()` over a shared
    /// `backstop_core::Histogram`.
    pub fn register_histogram<F>(
        &self,
        name: impl Into<String>,
        metric: &'static str,
        snapshot: F,
    ) -> &Self
    where
        F: Fn() -> backstop_core::HistogramSnapshot + Send + Sync + 'static,
    {
        let published = LatencyHistogram::new(metric);
        let publish: Snapshot = Box::new(move |name| published.publish(name, &snapshot()));
        self.lock().push((name.into(), publish));
        self
    }

    /// Reads every registered snapshot and writes it to the installed recorder, after
    /// describing every series (HELP text and unit) to it.
    pub fn publish(&self) {
        describe();
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
        let labels = Labels::named(name);
        labels.publish_fields("backstop_load", self);
        labels.publish(values! {
            "backstop_load_mean_wait_seconds" => self.mean_wait,
            "backstop_load_p95_wait_seconds" => self.p95_wait,
        });
    }
}
