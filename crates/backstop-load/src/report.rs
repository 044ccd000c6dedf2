//! The result of a run, as data (serde) and as text, JSON and CSV.

use std::fmt::{self, Write as _};
use std::time::Duration;

use backstop_core::HistogramSnapshot;
use serde::{Deserialize, Serialize};

use crate::LoadTestError;
use crate::slo::SloCheck;

/// Latency figures of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencyFigures {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

impl LatencyFigures {
    /// The figures of `histogram` (each within the histogram's 6.25 % bucket width).
    pub fn of(histogram: &HistogramSnapshot) -> Self {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self {
            count: histogram.count(),
            mean_us: us(histogram.mean()),
            p50_us: us(histogram.quantile(0.50)),
            p90_us: us(histogram.quantile(0.90)),
            p95_us: us(histogram.quantile(0.95)),
            p99_us: us(histogram.quantile(0.99)),
            p999_us: us(histogram.quantile(0.999)),
            max_us: us(histogram.quantile(1.0)),
        }
    }

    /// The same figures, none above `max_us` (a histogram reads quantiles as the top of
    /// their bucket, never above the largest value seen: this applies a smaller largest
    /// value than the histogram's own).
    pub(crate) fn capped(self, max_us: u64) -> Self {
        Self {
            p50_us: self.p50_us.min(max_us),
            p90_us: self.p90_us.min(max_us),
            p95_us: self.p95_us.min(max_us),
            p99_us: self.p99_us.min(max_us),
            p999_us: self.p999_us.min(max_us),
            max_us: self.max_us.min(max_us),
            ..self
        }
    }
}

/// One outcome class of a stage: how many, how fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutcomeReport {
    /// `ok`, `rejected:<kind>`, `error` or `timeout`.
    pub class: String,
    /// Requests that ended this way.
    pub count: u64,
    /// Their latencies.
    pub latency: LatencyFigures,
}

/// What one stage's requests did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StageReport {
    /// The stage's name.
    pub name: String,
    /// Planned length.
    pub duration_secs: f64,
    /// Mean planned rate (open loop); `None` in closed loop, where the users set the pace.
    pub target_rate: Option<f64>,
    /// Requests sent.
    pub sent: u64,
    /// Arrivals not sent because `max_in_flight` requests were already outstanding.
    pub dropped: u64,
    /// Requests still unanswered when the drain timeout ended the run.
    pub unfinished: u64,
    /// Requests answered (any outcome).
    pub completed: u64,
    /// Successful answers.
    pub ok: u64,
    /// Refusals by a Backstop primitive.
    pub rejected: u64,
    /// Other failures.
    pub errors: u64,
    /// Requests that outlived the plan's timeout.
    pub timeouts: u64,
    /// Share of attempted requests (sent + dropped) that were not `ok`.
    pub error_rate: f64,
    /// Share of attempted requests that failed: not `ok` and not refused by a rate limit,
    /// budget or key cap (a 429: the caller's quota, expected under load). Absent from
    /// reports saved before it was, read as 0.
    #[serde(default)]
    pub failure_rate: f64,
    /// Requests sent per second of the stage.
    pub send_rate: f64,
    /// Successful answers per second of the stage.
    pub throughput: f64,
    /// Latency of every answered request, from its scheduled send (open loop) or actual
    /// send (closed loop).
    pub latency: LatencyFigures,
    /// Per outcome class.
    pub outcomes: Vec<OutcomeReport>,
    /// The stage's SLO checks.
    pub slo: Vec<SloCheck>,
    /// Whether every SLO check passed.
    pub passed: bool,
    /// A uniform sample of the stage's latencies (µs), for regression tests.
    pub samples_us: Vec<u64>,
}

/// Requests per sample interval, for rates over time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TimelinePoint {
    /// Start of the interval, from the start of the run.
    pub at_ms: u64,
    /// Requests scheduled to be sent in the interval (sent or dropped).
    pub sent: u64,
    /// Requests answered in the interval.
    pub completed: u64,
    /// Successful answers in the interval.
    pub ok: u64,
}

/// A load signal read during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SignalReading {
    /// The name the signal was registered under.
    pub name: String,
    /// When, from the start of the run.
    pub at_ms: u64,
    /// Work in flight.
    pub in_flight: u64,
    /// Work waiting.
    pub queued: u64,
    /// Capacity, when bounded.
    pub capacity: Option<u64>,
    /// Mean wait (µs).
    pub mean_wait_us: u64,
    /// 95th-percentile wait (µs).
    pub p95_wait_us: u64,
}

/// A primitive's `stats()` snapshot read during the run ([`LoadTest::stats`](crate::LoadTest::stats)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatsReading {
    /// The name the stats were registered under.
    pub name: String,
    /// When, from the start of the run.
    pub at_ms: u64,
    /// The snapshot, as JSON.
    pub value: serde_json::Value,
}

/// The result of a run: per-stage figures and SLO verdicts, the timeline and the signals.
/// Save it as JSON to compare a later run against it ([`compare`](crate::compare)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadReport {
    /// Which loop measured the figures (`open-loop, …` or `closed-loop, …`).
    pub mode: String,
    /// Per stage, in plan order.
    pub stages: Vec<StageReport>,
    /// Per sample interval.
    pub timeline: Vec<TimelinePoint>,
    /// Load signals read during the run.
    pub signals: Vec<SignalReading>,
    /// Stats snapshots read during the run (absent from reports saved before they were).
    #[serde(default)]
    pub stats: Vec<StatsReading>,
}

impl LoadReport {
    /// Whether every stage met its SLO.
    pub fn passed(&self) -> bool {
        self.stages.iter().all(|stage| stage.passed)
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// The report as JSON (a baseline file).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A report saved with [`to_json`](Self::to_json).
    pub fn from_json(json: &str) -> Result<Self, LoadTestError> {
        serde_json::from_str(json).map_err(|e| LoadTestError::Baseline(e.to_string()))
    }

    /// One CSV row per stage and outcome class (class `all` for the whole stage).
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(
            "stage,class,count,mean_us,p50_us,p90_us,p95_us,p99_us,p999_us,max_us,\
             send_rate,throughput,error_rate,slo_passed\n",
        );
        for stage in &self.stages {
            let rows = std::iter::once(("all", &stage.latency)).chain(
                stage
                    .outcomes
                    .iter()
                    .map(|outcome| (outcome.class.as_str(), &outcome.latency)),
            );
            for (class, l) in rows {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.6},{}",
                    csv_field(&stage.name),
                    class,
                    l.count,
                    l.mean_us,
                    l.p50_us,
                    l.p90_us,
                    l.p95_us,
                    l.p99_us,
                    l.p999_us,
                    l.max_us,
                    stage.send_rate,
                    stage.throughput,
                    stage.error_rate,
                    stage.passed
                );
            }
        }
        csv
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

pub(crate) fn ms(us: u64) -> String {
    format!("{:.1}ms", us as f64 / 1000.0)
}

impl fmt::Display for LoadReport {
    /// The text summary: one block per stage, then the signals' peaks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "load test ({})", self.mode)?;
        for stage in &self.stages {
            let target = stage
                .target_rate
                .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.1}/s"));
            writeln!(
                f,
                "stage {:<12} {:>7.1}s target {:>9} sent {:>7} ({:.1}/s) ok {:>7} ({:.1}/s) \
                 errors {:.2}% | p50 {} p95 {} p99 {} max {} | {}",
                stage.name,
                stage.duration_secs,
                target,
                stage.sent,
                stage.send_rate,
                stage.ok,
                stage.throughput,
                stage.error_rate * 100.0,
                ms(stage.latency.p50_us),
                ms(stage.latency.p95_us),
                ms(stage.latency.p99_us),
                ms(stage.latency.max_us),
                if stage.passed { "PASS" } else { "FAIL" }
            )?;
            for outcome in &stage.outcomes {
                writeln!(
                    f,
                    "    {:<28} {:>7}  p50 {} p99 {}",
                    outcome.class,
                    outcome.count,
                    ms(outcome.latency.p50_us),
                    ms(outcome.latency.p99_us)
                )?;
            }
            if stage.dropped > 0 || stage.unfinished > 0 {
                writeln!(
                    f,
                    "    dropped {} (max_in_flight reached), unfinished {}",
                    stage.dropped, stage.unfinished
                )?;
            }
            for check in &stage.slo {
                writeln!(
                    f,
                    "    SLO {:<22} actual {:>10.3} target {:>10.3} margin {:>+7.1}% {}",
                    check.objective,
                    check.actual,
                    check.target,
                    check.margin * 100.0,
                    if check.passed { "ok" } else { "BROKEN" }
                )?;
            }
        }
        // Readings of several signals interleave (one of each per sample interval): each
        // name once, in the order first read.
        let mut names: Vec<&str> = Vec::new();
        for reading in &self.signals {
            if !names.contains(&reading.name.as_str()) {
                names.push(&reading.name);
            }
        }
        for name in names {
            let readings = self.signals.iter().filter(|s| s.name == name);
            let (peak_in_flight, peak_queued) =
                readings.fold((0, 0), |(i, q), s| (i.max(s.in_flight), q.max(s.queued)));
            writeln!(
                f,
                "signal {name}: peak in flight {peak_in_flight}, peak queued {peak_queued}"
            )?;
        }
        write!(
            f,
            "overall: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_awkward_stage_names() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn interleaved_signals_print_one_peak_line_each() {
        let reading = |name: &str, at_ms, queued| SignalReading {
            name: name.to_owned(),
            at_ms,
            in_flight: 1,
            queued,
            capacity: None,
            mean_wait_us: 0,
            p95_wait_us: 0,
        };
        let report = LoadReport {
            mode: "open-loop".to_owned(),
            stages: Vec::new(),
            timeline: Vec::new(),
            signals: vec![
                reading("batcher", 1000, 3),
                reading("pool", 1000, 0),
                reading("batcher", 2000, 7),
                reading("pool", 2000, 2),
            ],
            stats: Vec::new(),
        };
        let text = report.to_string();
        assert_eq!(text.matches("signal batcher").count(), 1, "{text}");
        assert!(
            text.contains("signal batcher: peak in flight 1, peak queued 7"),
            "{text}"
        );
        assert!(
            text.contains("signal pool: peak in flight 1, peak queued 2"),
            "{text}"
        );
    }

    #[test]
    fn bad_baseline_json_is_a_typed_error() {
        assert!(matches!(
            LoadReport::from_json("{"),
            Err(LoadTestError::Baseline(_))
        ));
    }
}
