//! A run published live through the `metrics` facade (feature `metrics`), for Prometheus
//! or any other recorder the application installs.
//!
//! Names start `backstop_loadtest_` (the umbrella's `backstop_load_*` gauges are the load
//! signals of primitives, a different thing):
//! - `backstop_loadtest_requests_total{test, stage, outcome}`: answered requests by
//!   outcome class (`ok`, `rejected:<kind>`, `error`, `timeout`), counted as they finish;
//! - `backstop_loadtest_latency_seconds{test, stage, outcome}`: their latencies (from the
//!   scheduled send in open loop), a histogram;
//! - `backstop_loadtest_sent_total{test, stage}` and `backstop_loadtest_dropped_total{test,
//!   stage}`: sent and dropped arrivals, set every sample interval;
//! - `backstop_loadtest_in_flight{test}`: requests outstanding, every sample interval.
//!
//! Handles are registered once per stage and outcome class, so a request costs one
//! counter increment and one histogram record on handles the recorder gave out.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

use crate::recorder::{OutcomeClass, StageRecorder};

/// The handles of one run.
pub(crate) struct LiveMetrics {
    test: String,
    in_flight: Gauge,
}

impl LiveMetrics {
    pub(crate) fn new(test: String) -> Self {
        let in_flight = metrics::gauge!("backstop_loadtest_in_flight", "test" => test.clone());
        Self { test, in_flight }
    }

    /// The handles of stage `stage`.
    pub(crate) fn stage(&self, stage: &str) -> StageMetrics {
        let labels = vec![
            Label::new("test", self.test.clone()),
            Label::new("stage", stage.to_owned()),
        ];
        StageMetrics {
            sent: metrics::counter!("backstop_loadtest_sent_total", labels.iter()),
            dropped: metrics::counter!("backstop_loadtest_dropped_total", labels.iter()),
            labels,
        }
    }

    /// Sets the per-interval figures from the recorders.
    pub(crate) fn tick(&self, recorders: &[StageRecorder], in_flight: u64) {
        self.in_flight.set(in_flight as f64);
        for recorder in recorders {
            if let Some(live) = &recorder.live {
                live.sent.absolute(recorder.sent);
                live.dropped.absolute(recorder.dropped);
            }
        }
    }
}

/// The handles of one stage.
pub(crate) struct StageMetrics {
    labels: Vec<Label>,
    sent: Counter,
    dropped: Counter,
}

impl StageMetrics {
    /// The handles of outcome class `class` in this stage.
    pub(crate) fn outcome(&self, class: &OutcomeClass) -> OutcomeMetrics {
        let mut labels = self.labels.clone();
        labels.push(Label::new("outcome", class.label()));
        OutcomeMetrics {
            requests: metrics::counter!("backstop_loadtest_requests_total", labels.iter()),
            latency: metrics::histogram!("backstop_loadtest_latency_seconds", labels.iter()),
        }
    }
}

/// The handles of one outcome class of one stage.
pub(crate) struct OutcomeMetrics {
    requests: Counter,
    latency: Histogram,
}

impl OutcomeMetrics {
    pub(crate) fn record(&self, latency: Duration) {
        self.requests.increment(1);
        self.latency.record(latency.as_secs_f64());
    }
}
