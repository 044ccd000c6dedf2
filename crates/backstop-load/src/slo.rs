//! Service-level objectives checked per stage: percentiles, error rate, throughput.

use std::time::Duration;

use backstop_core::HistogramSnapshot;
use backstop_core::config::{ConfigError, ensure, ensure_duration};
use serde::{Deserialize, Serialize};

use crate::report::StageReport;

/// One objective a stage must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum SloObjective {
    /// The `quantile` (0..=1) of every answered request's latency is at most `max`.
    /// Percentiles, not means: a mean hides the tail users feel.
    Latency {
        /// Which quantile, such as 0.99.
        quantile: f64,
        /// Its ceiling.
        max: Duration,
    },
    /// The share of requests that were not `ok` (refused, failed, timed out, dropped or
    /// unfinished) is at most `max` (0..=1).
    ErrorRate {
        /// Its ceiling.
        max: f64,
    },
    /// The share of requests that failed is at most `max` (0..=1): as `ErrorRate`, except
    /// that a refusal by a rate limit, budget or key cap (what an HTTP front answers with
    /// 429) is expected, not a failure — the stack enforcing a caller's quota is doing its
    /// job, as k6's `expectedStatuses(429)` says. Other refusals (circuit open, queue or
    /// bulkhead full, shed, timeouts) still count: they are the service out of capacity.
    FailureRate {
        /// Its ceiling.
        max: f64,
    },
    /// Successful answers per second over the stage are at least `min`.
    Throughput {
        /// Its floor.
        min: f64,
    },
}

/// The objectives of one stage; empty means nothing to check (the stage passes).
///
/// ```
/// use backstop_load::Slo;
/// use std::time::Duration;
///
/// let slo = Slo::new()
///     .latency(0.99, Duration::from_millis(250))
///     .error_rate_below(0.01)
///     .throughput_above(90.0);
/// assert_eq!(slo.objectives().len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slo {
    objectives: Vec<SloObjective>,
}

impl Slo {
    /// No objectives.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds "the `quantile` latency is at most `max`".
    pub fn latency(mut self, quantile: f64, max: Duration) -> Self {
        self.objectives
            .push(SloObjective::Latency { quantile, max });
        self
    }

    /// Adds "at most `max` (0..=1) of requests are not ok".
    pub fn error_rate_below(mut self, max: f64) -> Self {
        self.objectives.push(SloObjective::ErrorRate { max });
        self
    }

    /// Adds "at most `max` (0..=1) of requests failed", quota refusals (429s) not counted
    /// ([`SloObjective::FailureRate`]).
    pub fn failure_rate_below(mut self, max: f64) -> Self {
        self.objectives.push(SloObjective::FailureRate { max });
        self
    }

    /// Adds "at least `min` successful answers per second".
    pub fn throughput_above(mut self, min: f64) -> Self {
        self.objectives.push(SloObjective::Throughput { min });
        self
    }

    /// The objectives, in the order added.
    pub fn objectives(&self) -> &[SloObjective] {
        &self.objectives
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for objective in &self.objectives {
            match *objective {
                SloObjective::Latency { quantile, max } => {
                    ensure(
                        (0.0..=1.0).contains(&quantile),
                        "slo.quantile",
                        "must be between 0 and 1",
                    )?;
                    ensure_duration("slo.latency", max)?;
                }
                SloObjective::ErrorRate { max } => ensure(
                    (0.0..=1.0).contains(&max),
                    "slo.error_rate",
                    "must be between 0 and 1",
                )?,
                SloObjective::FailureRate { max } => ensure(
                    (0.0..=1.0).contains(&max),
                    "slo.failure_rate",
                    "must be between 0 and 1",
                )?,
                SloObjective::Throughput { min } => ensure(
                    min.is_finite() && min >= 0.0,
                    "slo.throughput",
                    "must be finite and non-negative",
                )?,
            }
        }
        Ok(())
    }

    /// Checks every objective against a stage's figures; `latencies` holds every answered
    /// request of the stage, so any quantile can be read.
    pub(crate) fn evaluate(
        &self,
        stage: &StageReport,
        latencies: &HistogramSnapshot,
    ) -> Vec<SloCheck> {
        self.objectives
            .iter()
            .map(|objective| match *objective {
                SloObjective::Latency { quantile, max } => SloCheck::at_most(
                    format!("p{} latency (ms)", quantile * 100.0),
                    latencies.quantile(quantile).as_secs_f64() * 1000.0,
                    max.as_secs_f64() * 1000.0,
                ),
                SloObjective::ErrorRate { max } => {
                    SloCheck::at_most("error rate".to_owned(), stage.error_rate, max)
                }
                SloObjective::FailureRate { max } => SloCheck::at_most(
                    "failure rate (429s expected)".to_owned(),
                    stage.failure_rate,
                    max,
                ),
                SloObjective::Throughput { min } => {
                    SloCheck::at_least("throughput (ok/s)".to_owned(), stage.throughput, min)
                }
            })
            .collect()
    }
}

/// The verdict on one objective for one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SloCheck {
    /// What was checked, with its unit.
    pub objective: String,
    /// The bound.
    pub target: f64,
    /// The measured value.
    pub actual: f64,
    /// Headroom as a fraction of the target: positive when met (0.2 = 20 % to spare),
    /// negative when broken. Absolute when the target is zero.
    pub margin: f64,
    /// Whether the objective held.
    pub passed: bool,
}

impl SloCheck {
    fn at_most(objective: String, actual: f64, target: f64) -> Self {
        Self::with_spare(objective, actual, target, target - actual, actual <= target)
    }

    fn at_least(objective: String, actual: f64, target: f64) -> Self {
        Self::with_spare(objective, actual, target, actual - target, actual >= target)
    }

    /// The check of an objective met with `spare` to spare (negative when broken), the
    /// margin being `spare` as a fraction of a positive target.
    fn with_spare(objective: String, actual: f64, target: f64, spare: f64, passed: bool) -> Self {
        let margin = if target > 0.0 { spare / target } else { spare };
        Self {
            objective,
            target,
            actual,
            margin,
            passed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_are_fractions_of_the_target() {
        let met = SloCheck::at_most("p99".into(), 80.0, 100.0);
        assert!(met.passed);
        assert!((met.margin - 0.2).abs() < 1e-12);
        let broken = SloCheck::at_least("tput".into(), 90.0, 100.0);
        assert!(!broken.passed);
        assert!((broken.margin + 0.1).abs() < 1e-12);
    }

    #[test]
    fn out_of_range_objectives_are_refused() {
        assert!(Slo::new().latency(1.5, Duration::ZERO).validate().is_err());
        assert!(Slo::new().error_rate_below(-0.1).validate().is_err());
        assert!(Slo::new().failure_rate_below(1.5).validate().is_err());
        assert!(Slo::new().throughput_above(f64::NAN).validate().is_err());
    }
}
