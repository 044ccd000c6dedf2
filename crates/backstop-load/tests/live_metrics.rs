//! A run published live through the `metrics` facade, read back from a recorder the test
//! installs for the run's thread.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_core::{Error, RejectKind, Rejected, service_fn};
use backstop_load::{Arrivals, LoadPlan, LoadStage, LoadTest};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Every value recorded into one histogram.
#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// Keeps every metric under `name{label=value,...}` (labels in registration order).
#[derive(Default)]
struct Debugging {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Values>>>,
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Debugging {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(counters.entry(render(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().unwrap();
        Gauge::from_arc(gauges.entry(render(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(histograms.entry(render(key)).or_default().clone())
    }
}

impl Debugging {
    fn counter(&self, key: &str) -> u64 {
        self.counters.lock().unwrap()[key].load(Ordering::Relaxed)
    }

    fn gauge(&self, key: &str) -> f64 {
        f64::from_bits(self.gauges.lock().unwrap()[key].load(Ordering::Relaxed))
    }

    fn values(&self, key: &str) -> Vec<f64> {
        self.histograms.lock().unwrap()[key]
            .0
            .lock()
            .unwrap()
            .clone()
    }
}

#[test]
fn a_live_run_publishes_requests_outcomes_and_latencies() {
    let recorder = Debugging::default();
    // Every third request is refused; the others take 5 ms, or 40 ms for every tenth.
    let service = service_fn(|n: u64| async move {
        if n.is_multiple_of(3) {
            return Err(Error::Rejected(Rejected::new(RejectKind::QueueFull)));
        }
        let took = if n % 10 == 1 { 40 } else { 5 };
        tokio::time::sleep(Duration::from_millis(took)).await;
        Ok::<_, Error<()>>(())
    });
    let plan = LoadPlan::open_loop(Arrivals::Constant)
        .stage(LoadStage::constant("warm", 50.0, Duration::from_secs(2)))
        .stage(LoadStage::constant("steady", 150.0, Duration::from_secs(2)));
    let report = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                LoadTest::new(plan)
                    .unwrap()
                    .metrics("checkout")
                    .run(&service, |i| i)
                    .await
                    .unwrap()
            })
    });
    for stage in &report.stages {
        let labels = format!("test=checkout,stage={}", stage.name);
        assert_eq!(
            recorder.counter(&format!("backstop_loadtest_sent_total{{{labels}}}")),
            stage.sent
        );
        assert_eq!(
            recorder.counter(&format!("backstop_loadtest_dropped_total{{{labels}}}")),
            0
        );
        for outcome in &stage.outcomes {
            let key = format!("{{{labels},outcome={}}}", outcome.class);
            assert_eq!(
                recorder.counter(&format!("backstop_loadtest_requests_total{key}")),
                outcome.count,
                "{key}"
            );
            let values = recorder.values(&format!("backstop_loadtest_latency_seconds{key}"));
            assert_eq!(values.len() as u64, outcome.count, "{key}");
            // The histogram holds the latencies the report summarises (in seconds).
            let max = values.iter().copied().fold(0.0, f64::max);
            assert!(
                (max * 1e6 - outcome.latency.max_us as f64).abs() <= 1.0,
                "{key}: {max} vs {}",
                outcome.latency.max_us
            );
        }
    }
    let steady = report.stage("steady").unwrap();
    assert_eq!(steady.sent, 300);
    assert_eq!(
        recorder.counter(
            "backstop_loadtest_requests_total{test=checkout,stage=steady,outcome=rejected:queue_full}"
        ),
        steady.rejected
    );
    assert!(steady.rejected >= 99 && steady.ok >= 199, "{report}");
    let slow = recorder
        .values("backstop_loadtest_latency_seconds{test=checkout,stage=steady,outcome=ok}")
        .iter()
        .filter(|v| **v >= 0.040)
        .count();
    assert!(slow >= 20, "{slow}");
    // Nothing is outstanding once the run is over.
    assert_eq!(
        recorder.gauge("backstop_loadtest_in_flight{test=checkout}"),
        0.0
    );
}
