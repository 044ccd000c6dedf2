//! Stress search: step the rate up until an SLO breaks; the last rate that held is the
//! capacity.

use std::fmt;
use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_at_most, ensure_duration};
use backstop_core::{Service, StackError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::LoadTestError;
use crate::plan::{Arrivals, LoadPlan, LoadStage, MAX_RATE, MAX_STAGES};
use crate::report::LoadReport;
use crate::runner::LoadTest;
use crate::slo::Slo;

/// A stress search: open-loop steps of `start_rate`, `start_rate + step`, … up to
/// `max_rate`, each held for `step_duration` and checked against `slo`.
#[derive(Debug, Clone, PartialEq)]
pub struct StressPlan {
    /// How arrivals are spaced.
    pub arrivals: Arrivals,
    /// The first step's rate (requests per second).
    pub start_rate: f64,
    /// How much each step adds.
    pub step: f64,
    /// The last rate tried.
    pub max_rate: f64,
    /// How long each step lasts.
    pub step_duration: Duration,
    /// What a step must meet to count as held.
    pub slo: Slo,
    /// Per-request timeout, from the scheduled send.
    pub timeout: Option<Duration>,
    /// How long to wait for a step's stragglers before the next step.
    pub drain_timeout: Duration,
    /// Seed of arrivals and sampling.
    pub seed: u64,
}

impl StressPlan {
    /// Steps from `start_rate` by `step` up to `max_rate`, `step_duration` each, against
    /// `slo`, with constant arrivals.
    pub fn new(
        start_rate: f64,
        step: f64,
        max_rate: f64,
        step_duration: Duration,
        slo: Slo,
    ) -> Self {
        Self {
            arrivals: Arrivals::Constant,
            start_rate,
            step,
            max_rate,
            step_duration,
            slo,
            timeout: None,
            drain_timeout: Duration::from_secs(30),
            seed: 0x5eed,
        }
    }

    fn rates(&self) -> impl Iterator<Item = f64> + '_ {
        (0..)
            .map(|i| self.start_rate + self.step * f64::from(i))
            .take_while(|rate| *rate <= self.max_rate * (1.0 + 1e-9))
    }
}

impl Validate for StressPlan {
    fn validate(&self) -> Result<(), ConfigError> {
        let rate_ok = |rate: f64| rate.is_finite() && rate > 0.0 && rate <= MAX_RATE;
        let rule = "must be a finite rate above 0 and at most 10000000 per second";
        ensure(rate_ok(self.start_rate), "start_rate", rule)?;
        ensure(rate_ok(self.step), "step", rule)?;
        ensure(rate_ok(self.max_rate), "max_rate", rule)?;
        ensure(
            self.max_rate >= self.start_rate,
            "max_rate",
            "must be at least start_rate",
        )?;
        let steps = ((self.max_rate - self.start_rate) / self.step).floor() + 1.0;
        ensure_at_most("step", steps as u64, MAX_STAGES)?;
        ensure(
            !self.step_duration.is_zero(),
            "step_duration",
            "must be positive",
        )?;
        ensure_duration("step_duration", self.step_duration)?;
        self.slo.validate()
    }
}

/// What a stress search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StressReport {
    /// The highest rate whose step met the SLO (`None`: even the first step broke it).
    pub capacity: Option<f64>,
    /// The first rate whose step broke the SLO (`None`: every step held up to `max_rate`).
    pub broke_at: Option<f64>,
    /// Every step run, one stage each.
    pub steps: LoadReport,
}

impl fmt::Display for StressReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.steps)?;
        match (self.capacity, self.broke_at) {
            (Some(capacity), Some(broke)) => write!(
                f,
                "stress: capacity {capacity:.1}/s (last rate that held); SLO broke at {broke:.1}/s"
            ),
            (Some(capacity), None) => {
                write!(
                    f,
                    "stress: held up to {capacity:.1}/s, the highest rate tried"
                )
            }
            (None, _) => write!(f, "stress: even the first step broke the SLO"),
        }
    }
}

/// Runs a [`StressPlan`].
///
/// ```
/// use backstop_core::{Error, service_fn};
/// use backstop_load::{Slo, StressPlan, StressTest};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true)
/// #     .build().unwrap().block_on(async {
/// // A service that takes 1 ms: it holds any rate with p99 under 5 ms.
/// let service = service_fn(|_: u64| async {
///     tokio::time::sleep(Duration::from_millis(1)).await;
///     Ok::<_, Error<()>>(())
/// });
/// let plan = StressPlan::new(100.0, 100.0, 300.0, Duration::from_secs(1),
///     Slo::new().latency(0.99, Duration::from_millis(5)));
/// let found = StressTest::new(plan).unwrap().run(&service, |i| i).await.unwrap();
/// assert_eq!(found.capacity, Some(300.0));
/// # });
/// ```
#[derive(Debug)]
pub struct StressTest {
    plan: StressPlan,
}

impl StressTest {
    /// A search over `plan`, validated now.
    pub fn new(plan: StressPlan) -> Result<Self, LoadTestError> {
        plan.validate()?;
        Ok(Self { plan })
    }

    /// Steps the rate up against `service` until a step breaks the SLO.
    pub async fn run<S, Req, F>(
        &self,
        service: &S,
        mut request: F,
    ) -> Result<StressReport, LoadTestError>
    where
        S: Service<Req>,
        S::Error: StackError,
        F: FnMut(u64) -> Req,
    {
        let plan = &self.plan;
        let started = Instant::now();
        let mut steps: Option<LoadReport> = None;
        let mut capacity = None;
        let mut broke_at = None;
        let mut issued = 0u64;
        for (index, rate) in plan.rates().enumerate() {
            let mut step_plan = LoadPlan::open_loop(plan.arrivals)
                .seed(plan.seed.wrapping_add(index as u64))
                .stage(
                    LoadStage::constant(format!("{rate:.0}/s"), rate, plan.step_duration)
                        .slo(plan.slo.clone()),
                );
            step_plan.timeout = plan.timeout;
            step_plan.drain_timeout = plan.drain_timeout;
            step_plan.sample_interval = plan.step_duration;
            let offset_ms = backstop_core::time::millis(started.elapsed());
            let mut report = LoadTest::new(step_plan)?
                .run(service, |i| request(issued + i))
                .await?;
            issued += report.stages.iter().map(|s| s.sent).sum::<u64>();
            for point in &mut report.timeline {
                point.at_ms = point.at_ms.saturating_add(offset_ms);
            }
            let held = report.passed();
            steps = Some(match steps.take() {
                None => report,
                Some(mut all) => {
                    all.stages.append(&mut report.stages);
                    all.timeline.append(&mut report.timeline);
                    all
                }
            });
            if held {
                capacity = Some(rate);
            } else {
                broke_at = Some(rate);
                break;
            }
        }
        Ok(StressReport {
            capacity,
            broke_at,
            // Validation guarantees at least one step.
            steps: steps.unwrap_or_else(|| LoadReport {
                mode: String::new(),
                stages: Vec::new(),
                timeline: Vec::new(),
                signals: Vec::new(),
                stats: Vec::new(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_step_up_to_the_maximum() {
        let plan = StressPlan::new(100.0, 50.0, 300.0, Duration::from_secs(1), Slo::new());
        assert_eq!(
            plan.rates().collect::<Vec<_>>(),
            [100.0, 150.0, 200.0, 250.0, 300.0]
        );
        let bad = StressPlan::new(100.0, 0.0, 300.0, Duration::from_secs(1), Slo::new());
        assert_eq!(bad.validate().unwrap_err().field(), "step");
        let many = StressPlan::new(1.0, 1.0, 1e6, Duration::from_secs(1), Slo::new());
        assert_eq!(many.validate().unwrap_err().field(), "step");
    }
}
