//! How the offered load changes over a run: the `--pattern` flag, as a backstop-load plan.

use backstop::load::{Arrivals, LoadPlan, LoadStage, Slo};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The shape of the load the fleet offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// The same rate throughout.
    Constant,
    /// From a quarter of the rate up to twice it.
    Ramp,
    /// Steady, with four times the rate between 30 % and 50 % of the run.
    Spike,
    /// One, two, three and four times the rate, a quarter of the run each.
    Stress,
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "constant" => Ok(Pattern::Constant),
            "ramp" => Ok(Pattern::Ramp),
            "spike" => Ok(Pattern::Spike),
            "stress" => Ok(Pattern::Stress),
            other => Err(format!(
                "--pattern must be constant, ramp, spike or stress, not `{other}`"
            )),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pattern::Constant => "constant",
            Pattern::Ramp => "ramp",
            Pattern::Spike => "spike",
            Pattern::Stress => "stress",
        })
    }
}

/// Steps of the stress pattern, each a quarter of the run.
const STRESS_STEPS: u32 = 4;

impl Pattern {
    /// The load test backstop-load runs: open-loop Poisson arrivals (independent agents)
    /// around `rate` asks per second for `run`, each stage checked against `slo`.
    /// - constant: `rate` throughout;
    /// - ramp: from a quarter of `rate` up to twice it;
    /// - spike: `rate`, with four times it between 30 % and 50 % of the run;
    /// - stress: steps of 1, 2, 3 and 4 times `rate`, a quarter of the run each, so the
    ///   last step that met the SLO is the gateway's capacity.
    pub(crate) fn plan(self, rate: f64, run: Duration, slo: &Slo) -> LoadPlan {
        let plan = LoadPlan::open_loop(Arrivals::Poisson);
        let stage = |stage: LoadStage| stage.slo(slo.clone());
        let mut plan = match self {
            Pattern::Constant => plan.stage(stage(LoadStage::constant("constant", rate, run))),
            Pattern::Ramp => {
                plan.stage(stage(LoadStage::ramp("ramp", rate / 4.0, rate * 2.0, run)))
            }
            Pattern::Spike => plan.stage(stage(LoadStage::spike(
                "spike",
                rate,
                rate * 4.0,
                run.mul_f64(0.3),
                run.mul_f64(0.2),
                run,
            ))),
            Pattern::Stress => (1..=STRESS_STEPS).fold(plan, |plan, step| {
                let rate = rate * f64::from(step);
                plan.stage(stage(LoadStage::constant(
                    format!("{rate:.0}/s"),
                    rate,
                    run / STRESS_STEPS,
                )))
            }),
        };
        // Asks still in flight when the run ends get this long to finish; the summary
        // reports any left.
        plan.drain_timeout = Duration::from_secs(10);
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop::load::RatePattern;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for pattern in [
            Pattern::Constant,
            Pattern::Ramp,
            Pattern::Spike,
            Pattern::Stress,
        ] {
            assert_eq!(pattern.to_string().parse::<Pattern>(), Ok(pattern));
        }
        let error = "burst".parse::<Pattern>().unwrap_err();
        assert!(error.contains("`burst`"), "{error}");
    }

    #[test]
    fn shapes() {
        let ten = Duration::from_secs(10);
        let slo = Slo::new().failure_rate_below(0.1);
        let rate_at = |pattern: Pattern, second: f64| {
            let plan = pattern.plan(100.0, ten, &slo);
            let mut offset = Duration::from_secs_f64(second);
            for stage in &plan.stages {
                if offset < stage.duration {
                    return stage.pattern.rate_at(offset, stage.duration);
                }
                offset -= stage.duration;
            }
            panic!("{second} s is past the plan");
        };
        assert_eq!(rate_at(Pattern::Constant, 7.0), 100.0);
        assert_eq!(rate_at(Pattern::Ramp, 0.0), 25.0);
        assert!((rate_at(Pattern::Ramp, 9.999) - 200.0).abs() < 0.1);
        assert!(rate_at(Pattern::Ramp, 6.0) > rate_at(Pattern::Ramp, 4.0));
        assert_eq!(rate_at(Pattern::Spike, 2.0), 100.0);
        assert_eq!(rate_at(Pattern::Spike, 4.0), 400.0);
        assert_eq!(rate_at(Pattern::Spike, 5.0), 100.0);
        assert_eq!(rate_at(Pattern::Stress, 1.0), 100.0);
        assert_eq!(rate_at(Pattern::Stress, 9.0), 400.0);
        for pattern in [
            Pattern::Constant,
            Pattern::Ramp,
            Pattern::Spike,
            Pattern::Stress,
        ] {
            let plan = pattern.plan(100.0, ten, &slo);
            assert_eq!(plan.duration(), ten, "{pattern}");
            assert!(
                plan.stages.iter().all(|stage| stage.slo == slo),
                "{pattern}"
            );
            assert!(backstop::load::LoadTest::new(plan).is_ok(), "{pattern}");
        }
        let stress = Pattern::Stress.plan(100.0, ten, &slo);
        assert!(
            matches!(stress.stages[3].pattern, RatePattern::Constant { rate } if rate == 400.0)
        );
    }
}
