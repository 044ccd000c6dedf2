//! Backstop's metrics into OpenTelemetry: the `metrics` facade routed to an OTel meter.
//!
//! `cargo run --example otel --features metrics,cache`
//!
//! `MetricsReporter` writes to whatever `metrics::Recorder` is installed. Here that is
//! `OtelRecorder`, a small bridge (below) that creates one OpenTelemetry instrument per
//! series on the SDK's `Meter`, with Backstop's HELP text as its description and its
//! unit in UCUM (`s`, `By`, `1`): counters become monotonic sums, gauges gauges, and the
//! latency histograms histograms with [`LATENCY_BUCKETS`] as their explicit bounds.
//!
//! The SDK's reader hands the collected metrics to an exporter. In production that is
//! `opentelemetry_otlp::MetricExporter` (OTLP to a Collector, Grafana Alloy, Datadog…);
//! this example plugs in `Printer`, which prints what an OTLP exporter would send, so it
//! runs without a collector and without the OTLP crate's gRPC/HTTP stack.
//!
//! The bridge is example code rather than a dependency: the one published bridge crate
//! is young and single-maintainer, and the bridge is ~100 lines over two stable APIs.

use backstop::cache::TieredCache;
use backstop::metrics::{LATENCY_BUCKETS, MetricsReporter};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A `metrics::Recorder` that records into an OpenTelemetry [`Meter`].
struct OtelRecorder {
    meter: Meter,
    /// HELP text and unit per series, from `describe_*` (which `MetricsReporter::publish`
    /// calls before it writes a value), for the instrument made on first registration.
    descriptions: Mutex<HashMap<String, (SharedString, Option<Unit>)>>,
}

impl OtelRecorder {
    fn new(meter: Meter) -> Self {
        Self {
            meter,
            descriptions: Mutex::new(HashMap::new()),
        }
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.descriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.as_str().to_owned(), (help, unit));
    }

    /// The description and UCUM unit of `name` (a ratio, described without a unit, is `1`).
    fn described(&self, name: &str) -> (String, &'static str) {
        let descriptions = self
            .descriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match descriptions.get(name) {
            Some((help, unit)) => (help.to_string(), ucum(*unit)),
            None => (String::new(), "1"),
        }
    }
}

fn ucum(unit: Option<Unit>) -> &'static str {
    match unit {
        Some(Unit::Seconds) => "s",
        Some(Unit::Bytes) => "By",
        _ => "1",
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|label| KeyValue::new(label.key().to_owned(), label.value().to_owned()))
        .collect()
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(key, unit, help);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(key, unit, help);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(key, unit, help);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let (help, unit) = self.described(key.name());
        // OTel names carry no `_total`: an OTLP-to-Prometheus exporter adds it back to a
        // monotonic sum, so the series keeps its Prometheus name end to end.
        let name = key.name().strip_suffix("_total").unwrap_or(key.name());
        let counter = self
            .meter
            .u64_counter(name.to_owned())
            .with_description(help)
            .with_unit(unit)
            .build();
        Counter::from_arc(Arc::new(OtelCounter {
            counter,
            attributes: attributes(key),
            total: AtomicU64::new(0),
        }))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let (help, unit) = self.described(key.name());
        let gauge = self
            .meter
            .f64_gauge(key.name().to_owned())
            .with_description(help)
            .with_unit(unit)
            .build();
        Gauge::from_arc(Arc::new(OtelGauge {
            gauge,
            attributes: attributes(key),
            value: Mutex::new(0.0),
        }))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let (help, unit) = self.described(key.name());
        let histogram = self
            .meter
            .f64_histogram(key.name().to_owned())
            .with_description(help)
            .with_unit(unit)
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build();
        Histogram::from_arc(Arc::new(OtelHistogram {
            histogram,
            attributes: attributes(key),
        }))
    }
}

/// Backstop publishes counters as absolute totals read from `stats()`; an OTel counter
/// takes increments, so the bridge adds the difference from the last total it saw.
struct OtelCounter {
    counter: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    total: AtomicU64,
}

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
        self.counter.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        // Adding zero on the first publish still creates the series, so a counter that has
        // not moved yet is exported as 0, as Prometheus would show it.
        let before = self.total.fetch_max(value, Ordering::Relaxed);
        self.counter
            .add(value.saturating_sub(before), &self.attributes);
    }
}

struct OtelGauge {
    gauge: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    /// OTel gauges are only set; the facade's increments are applied here first.
    value: Mutex<f64>,
}

impl OtelGauge {
    fn apply(&self, change: impl FnOnce(f64) -> f64) {
        let mut value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        *value = change(*value);
        self.gauge.record(*value, &self.attributes);
    }
}

impl GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        self.apply(|now| now + value);
    }

    fn decrement(&self, value: f64) {
        self.apply(|now| now - value);
    }

    fn set(&self, value: f64) {
        self.apply(|_| value);
    }
}

struct OtelHistogram {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attributes);
    }
}

/// Stands in for `opentelemetry_otlp::MetricExporter`: prints each exported metric and
/// keeps the lines, so `main` can check what reached OpenTelemetry.
#[derive(Clone, Default)]
struct Printer {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Printer {
    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> String {
    let pairs: Vec<String> = attributes
        .map(|pair| format!("{}={}", pair.key, pair.value))
        .collect();
    pairs.join(",")
}

impl PushMetricExporter for Printer {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        for scope in metrics.scope_metrics() {
            for metric in scope.metrics() {
                let (name, unit) = (metric.name(), metric.unit());
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for point in sum.data_points() {
                            let at = labels(point.attributes());
                            lines.push(format!("sum {name}{{{at}}} [{unit}] = {}", point.value()));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(gauge)) => {
                        for point in gauge.data_points() {
                            let at = labels(point.attributes());
                            lines
                                .push(format!("gauge {name}{{{at}}} [{unit}] = {}", point.value()));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                        for point in histogram.data_points() {
                            let at = labels(point.attributes());
                            let bounds: Vec<f64> = point.bounds().collect();
                            let counts: Vec<u64> = point.bucket_counts().collect();
                            lines.push(format!(
                                "histogram {name}{{{at}}} [{unit}] count={} sum={:.6} bounds={bounds:?} counts={counts:?}",
                                point.count(),
                                point.sum()
                            ));
                        }
                    }
                    _ => lines.push(format!("other {name}")),
                }
            }
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let printer = Printer::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(printer.clone()).build())
        .build();
    metrics::set_global_recorder(OtelRecorder::new(provider.meter("backstop")))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cache: TieredCache<String, String> = TieredCache::in_memory(1_000)?;
    let reporter = MetricsReporter::new();
    let watched = cache.clone();
    reporter.register("answers", move || watched.stats());

    runtime.block_on(async {
        for question in ["why", "how", "why"] {
            let answer = cache
                .get_or_load(&question.to_string(), || async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, std::io::Error>(Some("because".to_string()))
                })
                .await?;
            assert_eq!(answer.as_deref(), Some("because"));
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;

    // Publish (on a scrape or a timer in an application), then let the SDK collect and
    // export, as its periodic reader does on its own interval.
    reporter.publish();
    provider.force_flush()?;
    let lines = printer.lines();
    for line in &lines {
        println!("{line}");
    }

    let loads = lines
        .iter()
        .find(|line| line.starts_with("histogram backstop_cache_load_seconds{name=answers}"))
        .ok_or("no loader histogram reached OpenTelemetry")?;
    assert!(
        loads.contains("[s] count=2"),
        "two loads, the repeat was a hit: {loads}"
    );
    assert!(loads.contains("bounds=[0.005, 0.01, 0.025"), "{loads}");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("sum backstop_cache_loads{name=answers} [1] = 2")),
        "the counter arrives as a sum without _total"
    );
    provider.shutdown()?;
    Ok(())
}
