//! What one stage's requests did: outcome classes, latency histograms, a sample reservoir.

use std::time::Duration;

use backstop_core::{HistogramSnapshot, RejectKind, StackError};

use crate::plan::{LoadMode, LoadStage};
use crate::report::{LatencyFigures, OutcomeReport, StageReport};

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutcomeClass {
    /// The service answered successfully.
    Ok,
    /// A Backstop primitive refused the call (from `StackError::rejection`).
    Rejected(RejectKind),
    /// The service failed (or panicked) for any other reason.
    Error,
    /// The plan's timeout elapsed, counted from the scheduled send.
    Timeout,
}

impl OutcomeClass {
    /// A refusal by a rate limit, budget or key cap: the caller over its own quota, what
    /// an HTTP front answers with 429 (`backstop_core::http::status`), expected under load.
    pub fn is_quota_refusal(&self) -> bool {
        matches!(
            self,
            Self::Rejected(
                RejectKind::RateLimited { .. }
                    | RejectKind::TooLarge { .. }
                    | RejectKind::TooManyKeys
            )
        )
    }

    /// Classifies a finished call by its result.
    pub fn of<T, E: StackError>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(error) => match error.rejection() {
                Some(rejected) => Self::Rejected(rejected.kind),
                None => Self::Error,
            },
        }
    }

    /// A stable label: `ok`, `rejected:<kind>`, `error` or `timeout`.
    pub fn label(&self) -> String {
        match self {
            Self::Ok => "ok".to_owned(),
            Self::Rejected(kind) => format!("rejected:{}", kind.as_str()),
            Self::Error => "error".to_owned(),
            Self::Timeout => "timeout".to_owned(),
        }
    }
}

/// One outcome class of a stage: its histogram (and its live metrics).
struct Outcome {
    class: OutcomeClass,
    latency: HistogramSnapshot,
    #[cfg(feature = "metrics")]
    live: Option<crate::live::OutcomeMetrics>,
}

/// Accumulates one stage; owned by the driver task, so plain counters suffice.
pub(crate) struct StageRecorder {
    all: HistogramSnapshot,
    /// Every class but `Ok`: an ok answer, the common case, is recorded once (into `all`),
    /// and the ok histogram is what `all` holds beyond the other classes, with its own
    /// maximum kept here.
    by_outcome: Vec<Outcome>,
    ok_max: Duration,
    #[cfg(feature = "metrics")]
    ok_live: Option<crate::live::OutcomeMetrics>,
    samples: Vec<u64>,
    seen: u64,
    capacity: u64,
    rng: fastrand::Rng,
    /// Reservoir sampling by Li's algorithm L: once the reservoir is full, the count at
    /// which the next latency replaces a sample, and the running weight behind it. A
    /// latency between replacements costs one comparison, no random draw.
    replace_at: u64,
    weight: f64,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
    pub(crate) in_flight: u64,
    #[cfg(feature = "metrics")]
    pub(crate) live: Option<crate::live::StageMetrics>,
}

impl StageRecorder {
    pub(crate) fn new(capacity: u64, seed: u64) -> Self {
        Self {
            all: HistogramSnapshot::empty(),
            by_outcome: Vec::new(),
            ok_max: Duration::ZERO,
            #[cfg(feature = "metrics")]
            ok_live: None,
            samples: Vec::new(),
            seen: 0,
            capacity,
            rng: fastrand::Rng::with_seed(seed),
            replace_at: u64::MAX,
            weight: 1.0,
            sent: 0,
            dropped: 0,
            in_flight: 0,
            #[cfg(feature = "metrics")]
            live: None,
        }
    }

    /// Publishes this stage live through `live`.
    #[cfg(feature = "metrics")]
    pub(crate) fn publish(&mut self, live: crate::live::StageMetrics) {
        self.live = Some(live);
    }

    /// One request sent.
    pub(crate) fn count_sent(&mut self) {
        self.sent += 1;
        self.in_flight += 1;
    }

    pub(crate) fn record(&mut self, class: OutcomeClass, latency: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.all.record(latency);
        if class == OutcomeClass::Ok {
            self.ok_max = self.ok_max.max(latency);
            #[cfg(feature = "metrics")]
            if let Some(live) = &self.live {
                self.ok_live
                    .get_or_insert_with(|| live.outcome(&OutcomeClass::Ok))
                    .record(latency);
            }
            self.sample(latency);
            return;
        }
        let outcome = match self.by_outcome.iter().position(|o| o.class == class) {
            Some(index) => &mut self.by_outcome[index],
            None => {
                self.by_outcome.push(Outcome {
                    class,
                    latency: HistogramSnapshot::empty(),
                    #[cfg(feature = "metrics")]
                    live: self.live.as_ref().map(|live| live.outcome(&class)),
                });
                let last = self.by_outcome.len() - 1;
                &mut self.by_outcome[last]
            }
        };
        outcome.latency.record(latency);
        #[cfg(feature = "metrics")]
        if let Some(live) = &outcome.live {
            live.record(latency);
        }
        self.sample(latency);
    }

    /// Keeps every latency in the reservoir with equal probability, so a long stage's
    /// sample is still uniform over the stage.
    fn sample(&mut self, latency: Duration) {
        self.seen += 1;
        if (self.samples.len() as u64) < self.capacity {
            self.samples
                .push(backstop_core::time::nanos(latency) / 1000);
            if self.samples.len() as u64 == self.capacity {
                self.weight = self.draw_weight();
                self.replace_at = self.seen.saturating_add(self.skip());
            }
        } else if self.seen == self.replace_at {
            let slot = self.rng.usize(..self.samples.len());
            self.samples[slot] = backstop_core::time::nanos(latency) / 1000;
            self.weight *= self.draw_weight();
            self.replace_at = self.seen.saturating_add(self.skip());
        }
    }

    /// A uniform draw in (0, 1].
    fn uniform(&mut self) -> f64 {
        1.0 - self.rng.f64()
    }

    fn draw_weight(&mut self) -> f64 {
        (self.uniform().ln() / self.capacity as f64).exp()
    }

    /// How many latencies from now the next one replaces a sample (at least 1). The cast
    /// saturates, and a NaN from a degenerate weight becomes 0.
    fn skip(&mut self) -> u64 {
        let gap = self.uniform().ln() / (1.0 - self.weight).ln();
        (gap.floor() as u64).saturating_add(1)
    }

    pub(crate) fn finish(mut self, stage: &LoadStage, mode: &LoadMode) -> StageReport {
        let ok_latency = self
            .by_outcome
            .iter()
            .fold(self.all.clone(), |rest, other| rest.since(&other.latency));
        if ok_latency.count() > 0 {
            self.by_outcome.push(Outcome {
                class: OutcomeClass::Ok,
                latency: ok_latency,
                #[cfg(feature = "metrics")]
                live: None,
            });
        }
        let ok_max_us = backstop_core::time::nanos(self.ok_max) / 1000;
        let count = |wanted: fn(&OutcomeClass) -> bool| -> u64 {
            self.by_outcome
                .iter()
                .filter(|o| wanted(&o.class))
                .map(|o| o.latency.count())
                .sum()
        };
        let ok = count(|c| matches!(c, OutcomeClass::Ok));
        let rejected = count(|c| matches!(c, OutcomeClass::Rejected(_)));
        let quota_refusals = count(OutcomeClass::is_quota_refusal);
        let errors = count(|c| matches!(c, OutcomeClass::Error));
        let timeouts = count(|c| matches!(c, OutcomeClass::Timeout));
        let attempted = self.sent + self.dropped;
        let seconds = stage.duration.as_secs_f64();
        let per_second = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let target_rate = match mode {
            LoadMode::OpenLoop { .. } => Some(stage.pattern.mean_rate(stage.duration)),
            LoadMode::ClosedLoop { .. } => None,
        };
        let mut outcomes: Vec<OutcomeReport> = self
            .by_outcome
            .iter()
            .map(|o| OutcomeReport {
                class: o.class.label(),
                count: o.latency.count(),
                latency: match o.class {
                    // The derived ok histogram kept the maximum of every class.
                    OutcomeClass::Ok => LatencyFigures::of(&o.latency).capped(ok_max_us),
                    _ => LatencyFigures::of(&o.latency),
                },
            })
            .collect();
        outcomes.sort_by(|a, b| a.class.cmp(&b.class));
        let mut report = StageReport {
            name: stage.name.clone(),
            duration_secs: seconds,
            target_rate,
            sent: self.sent,
            dropped: self.dropped,
            unfinished: self.in_flight,
            completed: self.all.count(),
            ok,
            rejected,
            errors,
            timeouts,
            error_rate: if attempted > 0 {
                attempted.saturating_sub(ok) as f64 / attempted as f64
            } else {
                0.0
            },
            failure_rate: if attempted > 0 {
                attempted.saturating_sub(ok + quota_refusals) as f64 / attempted as f64
            } else {
                0.0
            },
            send_rate: per_second(self.sent),
            throughput: per_second(ok),
            latency: LatencyFigures::of(&self.all),
            outcomes,
            slo: Vec::new(),
            passed: true,
            samples_us: self.samples,
        };
        report.slo = stage.slo.evaluate(&report, &self.all);
        report.passed = report.slo.iter().all(|check| check.passed);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::Slo;
    use backstop_core::{Error, Rejected};

    #[test]
    fn classes_come_from_the_stack_error() {
        let ok: Result<(), Error<&str>> = Ok(());
        let refused: Result<(), Error<&str>> =
            Err(Error::Rejected(Rejected::new(RejectKind::QueueFull)));
        let failed: Result<(), Error<&str>> = Err(Error::Inner("down"));
        assert_eq!(OutcomeClass::of(&ok), OutcomeClass::Ok);
        assert_eq!(OutcomeClass::of(&refused).label(), "rejected:queue_full");
        assert_eq!(OutcomeClass::of(&failed), OutcomeClass::Error);
    }

    #[test]
    fn a_quota_refusal_is_an_error_but_not_a_failure() {
        let stage = LoadStage::constant("s", 10.0, Duration::from_secs(1))
            .slo(Slo::new().failure_rate_below(0.25).error_rate_below(0.25));
        let mut recorder = StageRecorder::new(10, 1);
        recorder.sent = 10;
        recorder.in_flight = 10;
        let classes = [
            (
                OutcomeClass::Rejected(RejectKind::RateLimited { quota: 1 }),
                3,
            ),
            (OutcomeClass::Rejected(RejectKind::TooManyKeys), 1),
            (OutcomeClass::Rejected(RejectKind::CircuitOpen), 1),
            (OutcomeClass::Timeout, 1),
            (OutcomeClass::Ok, 4),
        ];
        for (class, count) in classes {
            for _ in 0..count {
                recorder.record(class, Duration::from_millis(1));
            }
        }
        let mode = LoadMode::OpenLoop {
            arrivals: crate::Arrivals::Constant,
        };
        let report = recorder.finish(&stage, &mode);
        assert_eq!(report.error_rate, 0.6);
        assert_eq!(report.failure_rate, 0.2, "the circuit and the timeout only");
        let verdicts: Vec<bool> = report.slo.iter().map(|check| check.passed).collect();
        assert_eq!(verdicts, [true, false]);
        assert!(OutcomeClass::Rejected(RejectKind::TooLarge { quota: 0 }).is_quota_refusal());
        assert!(!OutcomeClass::Rejected(RejectKind::Shed).is_quota_refusal());
    }

    #[test]
    fn reservoir_stays_bounded_and_counts_stay_exact() {
        let stage = LoadStage::constant("s", 10.0, Duration::from_secs(10))
            .slo(Slo::new().error_rate_below(0.5));
        let mut recorder = StageRecorder::new(100, 1);
        recorder.sent = 1_000;
        recorder.in_flight = 1_000;
        for i in 0..1_000u64 {
            let class = if i % 4 == 0 {
                OutcomeClass::Timeout
            } else {
                OutcomeClass::Ok
            };
            recorder.record(class, Duration::from_micros(i));
        }
        let mode = LoadMode::OpenLoop {
            arrivals: crate::Arrivals::Constant,
        };
        let report = recorder.finish(&stage, &mode);
        assert_eq!(report.samples_us.len(), 100);
        assert_eq!(
            (report.ok, report.timeouts, report.unfinished),
            (750, 250, 0)
        );
        assert_eq!(report.error_rate, 0.25);
        assert_eq!(report.throughput, 75.0);
        assert!(report.passed);
        // A uniform sample of 0..1000 has its mean near 500.
        let mean = report.samples_us.iter().sum::<u64>() as f64 / 100.0;
        assert!((350.0..650.0).contains(&mean), "{mean}");
    }

    #[test]
    fn ok_figures_derived_from_the_whole_match_an_ok_only_histogram() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut recorder = StageRecorder::new(10, 2);
        let mut ok_only = HistogramSnapshot::empty();
        for _ in 0..20_000 {
            let latency = Duration::from_micros(rng.u64(0..2_000_000));
            let class = match rng.u8(0..10) {
                0 => OutcomeClass::Timeout,
                1 => OutcomeClass::Rejected(RejectKind::Shed),
                2 => OutcomeClass::Error,
                _ => {
                    // Ok answers are the fast ones, so their maximum is not the stage's.
                    let fast = latency / 4;
                    ok_only.record(fast);
                    recorder.record(OutcomeClass::Ok, fast);
                    continue;
                }
            };
            recorder.record(class, latency);
        }
        let stage = LoadStage::constant("s", 10.0, Duration::from_secs(10));
        let mode = LoadMode::OpenLoop {
            arrivals: crate::Arrivals::Constant,
        };
        let report = recorder.finish(&stage, &mode);
        let ok = report.outcomes.iter().find(|o| o.class == "ok").unwrap();
        assert_eq!(ok.count, ok_only.count());
        assert_eq!(ok.latency, LatencyFigures::of(&ok_only));
        assert!(ok.latency.max_us < report.latency.max_us);
        assert_eq!(
            report.ok + report.rejected + report.errors + report.timeouts,
            20_000
        );
    }
}
