//! What traffic to send: the mode (open or closed loop), the stages and their rate patterns.

use std::time::Duration;

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_count, ensure_duration,
};

use crate::slo::Slo;
use crate::trace::TraceReplay;

/// The highest rate a stage may ask for, in requests per second: well above what one
/// process sends (a 2-core machine here issues ~18 million no-op calls a second), so the
/// bound refuses nonsense, never a flat-out run.
pub const MAX_RATE: f64 = 100_000_000.0;
/// The most closed-loop virtual users.
pub const MAX_USERS: u64 = 100_000;
/// The most stages in one plan.
pub const MAX_STAGES: u64 = 10_000;
/// The most latency samples kept per stage for regression tests.
pub const MAX_SAMPLES: u64 = 1_000_000;
/// The most timeline points (run length divided by the sample interval).
pub const MAX_TIMELINE_POINTS: u64 = 1_000_000;
/// The most requests in flight at once an open-loop run may allow.
pub const MAX_IN_FLIGHT: u64 = 10_000_000;

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Arrivals {
    /// Evenly spaced: one request every `1 / rate` seconds (wrk2's model).
    Constant,
    /// A Poisson process: exponential gaps with mean `1 / rate`, as independent users make.
    Poisson,
}

/// Whether the generator keeps a schedule (open loop) or waits for answers (closed loop).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum LoadMode {
    /// Requests are sent on a schedule whatever the service does; latency counts from the
    /// scheduled send time, so time spent queued behind a slow service is measured (no
    /// coordinated omission).
    OpenLoop {
        /// How arrivals are spaced.
        arrivals: Arrivals,
    },
    /// `users` virtual users, each sending its next request `think` after the previous
    /// answer. Latency counts from the actual send, so a stalled service slows the users
    /// down instead of showing up in the latencies: reports label it "closed-loop".
    ClosedLoop {
        /// Concurrent virtual users.
        users: u64,
        /// Pause between an answer and the user's next request.
        think: Duration,
    },
}

impl LoadMode {
    /// A label for reports, saying which loop measured the figures.
    pub fn label(&self) -> String {
        match self {
            Self::OpenLoop {
                arrivals: Arrivals::Constant,
            } => "open-loop, constant arrivals".to_owned(),
            Self::OpenLoop {
                arrivals: Arrivals::Poisson,
            } => "open-loop, poisson arrivals".to_owned(),
            Self::ClosedLoop { users, think } => format!(
                "closed-loop, {users} virtual users, think {}",
                backstop_core::duration::format(*think)
            ),
        }
    }
}

/// How the target rate moves within one stage (requests per second; ignored in closed loop).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RatePattern {
    /// The same rate throughout.
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// A straight line from `from` to `to` over the stage.
    Ramp {
        /// Rate at the start of the stage.
        from: f64,
        /// Rate at the end of the stage.
        to: f64,
    },
    /// `base`, except `peak` during `[at, at + length)` from the stage's start.
    Spike {
        /// Rate outside the spike.
        base: f64,
        /// Rate during the spike.
        peak: f64,
        /// When the spike starts, from the stage's start.
        at: Duration,
        /// How long the spike lasts.
        length: Duration,
    },
    /// Rates replayed from a recorded trace.
    Trace(TraceReplay),
}

impl RatePattern {
    /// The target rate `offset` into a stage lasting `duration`.
    pub fn rate_at(&self, offset: Duration, duration: Duration) -> f64 {
        match self {
            Self::Constant { rate } => *rate,
            Self::Ramp { from, to } => {
                if duration.is_zero() {
                    return *to;
                }
                let fraction = (offset.as_secs_f64() / duration.as_secs_f64()).clamp(0.0, 1.0);
                from + (to - from) * fraction
            }
            Self::Spike {
                base,
                peak,
                at,
                length,
            } => {
                if offset >= *at && offset < at.saturating_add(*length) {
                    *peak
                } else {
                    *base
                }
            }
            Self::Trace(trace) => trace.rate_at(offset),
        }
    }

    /// The mean target rate over a stage lasting `duration`.
    pub fn mean_rate(&self, duration: Duration) -> f64 {
        match self {
            Self::Constant { rate } => *rate,
            Self::Ramp { from, to } => (from + to) / 2.0,
            Self::Spike {
                base,
                peak,
                at,
                length,
            } => {
                let total = duration.as_secs_f64();
                if total == 0.0 {
                    return *base;
                }
                let spike_end = at.saturating_add(*length).min(duration);
                let spiking = spike_end.saturating_sub(*at).as_secs_f64();
                (base * (total - spiking) + peak * spiking) / total
            }
            Self::Trace(trace) => trace.mean_rate(duration),
        }
    }

    fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let rate_ok = |rate: f64| rate.is_finite() && (0.0..=MAX_RATE).contains(&rate);
        let rule = "must be a finite rate between 0 and 10000000 per second";
        match self {
            Self::Constant { rate } => ensure(rate_ok(*rate), field, rule),
            Self::Ramp { from, to } => {
                ensure(rate_ok(*from), field, rule)?;
                ensure(rate_ok(*to), field, rule)
            }
            Self::Spike {
                base,
                peak,
                at,
                length,
            } => {
                ensure(rate_ok(*base), field, rule)?;
                ensure(rate_ok(*peak), field, rule)?;
                ensure_duration(&format!("{field}.at"), *at)?;
                ensure_duration(&format!("{field}.length"), *length)
            }
            Self::Trace(trace) => ensure(trace.max_rate() <= MAX_RATE, field, rule),
        }
    }
}

/// One stage of a plan: a named stretch of time with a rate pattern and its own SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadStage {
    /// The stage's name in reports and baselines.
    pub name: String,
    /// How long the stage sends.
    pub duration: Duration,
    /// The target rate over the stage.
    pub pattern: RatePattern,
    /// Objectives checked on this stage's requests.
    pub slo: Slo,
}

impl LoadStage {
    /// A stage of `pattern` lasting `duration`.
    pub fn new(name: impl Into<String>, duration: Duration, pattern: RatePattern) -> Self {
        Self {
            name: name.into(),
            duration,
            pattern,
            slo: Slo::new(),
        }
    }

    /// `rate` requests per second for `duration`.
    pub fn constant(name: impl Into<String>, rate: f64, duration: Duration) -> Self {
        Self::new(name, duration, RatePattern::Constant { rate })
    }

    /// A linear ramp from `from` to `to` requests per second over `duration`.
    pub fn ramp(name: impl Into<String>, from: f64, to: f64, duration: Duration) -> Self {
        Self::new(name, duration, RatePattern::Ramp { from, to })
    }

    /// `base` requests per second with a burst of `peak` during `[at, at + length)`.
    pub fn spike(
        name: impl Into<String>,
        base: f64,
        peak: f64,
        at: Duration,
        length: Duration,
        duration: Duration,
    ) -> Self {
        Self::new(
            name,
            duration,
            RatePattern::Spike {
                base,
                peak,
                at,
                length,
            },
        )
    }

    /// A long constant stage named `soak`, for leaks and slow drift.
    pub fn soak(rate: f64, duration: Duration) -> Self {
        Self::constant("soak", rate, duration)
    }

    /// The rates of a recorded trace, for as long as the replay lasts.
    pub fn trace(name: impl Into<String>, trace: TraceReplay) -> Self {
        let duration = trace.duration();
        Self::new(name, duration, RatePattern::Trace(trace))
    }

    /// The same stage, checked against `slo`.
    pub fn slo(mut self, slo: Slo) -> Self {
        self.slo = slo;
        self
    }
}

/// A whole load test: mode, stages and the generator's own bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Open or closed loop.
    pub mode: LoadMode,
    /// The stages, run one after the other.
    pub stages: Vec<LoadStage>,
    /// A request not answered this long after its scheduled send counts as a timeout
    /// (`None`: wait for it, bounded by `drain_timeout`).
    pub timeout: Option<Duration>,
    /// After the last send, how long to wait for requests still in flight; those left are
    /// reported as `unfinished`.
    pub drain_timeout: Duration,
    /// How often load signals are read and the timeline gets a point.
    pub sample_interval: Duration,
    /// Open loop: an arrival finding this many requests in flight is not sent and counts
    /// as `dropped` (it bounds the generator's memory against a service that never answers).
    pub max_in_flight: u64,
    /// Latency samples kept per stage (a uniform reservoir) for regression tests.
    pub samples_per_stage: u64,
    /// Seed of Poisson gaps and reservoir sampling, so runs are reproducible.
    pub seed: u64,
}

impl Default for LoadPlan {
    fn default() -> Self {
        Self {
            mode: LoadMode::OpenLoop {
                arrivals: Arrivals::Constant,
            },
            stages: Vec::new(),
            timeout: None,
            drain_timeout: Duration::from_secs(30),
            sample_interval: Duration::from_secs(1),
            max_in_flight: 100_000,
            samples_per_stage: 10_000,
            seed: 0x5eed,
        }
    }
}

impl LoadPlan {
    /// An open-loop plan with `arrivals` and no stages yet.
    pub fn open_loop(arrivals: Arrivals) -> Self {
        Self {
            mode: LoadMode::OpenLoop { arrivals },
            ..Self::default()
        }
    }

    /// A closed-loop plan of `users` virtual users with no think time and no stages yet.
    pub fn closed_loop(users: u64) -> Self {
        Self {
            mode: LoadMode::ClosedLoop {
                users,
                think: Duration::ZERO,
            },
            ..Self::default()
        }
    }

    /// The plan with `stage` appended.
    pub fn stage(mut self, stage: LoadStage) -> Self {
        self.stages.push(stage);
        self
    }

    backstop_core::config_setters! {
        self;
        /// The plan with a per-request timeout.
        timeout: Some(Duration),
        /// The plan with another sample interval.
        sample_interval: Duration,
        /// The plan with another seed.
        seed: u64,
    }

    /// The planned length of the run, all stages together.
    pub fn duration(&self) -> Duration {
        self.stages.iter().fold(Duration::ZERO, |sum, stage| {
            sum.saturating_add(stage.duration)
        })
    }
}

impl Validate for LoadPlan {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_count("stages", self.stages.len(), 1, MAX_STAGES as usize)?;
        for (index, stage) in self.stages.iter().enumerate() {
            let field = format!("stages.{index}");
            ensure_duration(&format!("{field}.duration"), stage.duration)?;
            stage.pattern.validate(&format!("{field}.pattern"))?;
            stage.slo.validate().map_err(|e| e.within(&field))?;
        }
        ensure_duration("duration", self.duration())?;
        if let LoadMode::ClosedLoop { users, think } = self.mode {
            ensure(users > 0, "mode.users", "must be at least 1")?;
            ensure_at_most("mode.users", users, MAX_USERS)?;
            ensure_duration("mode.think", think)?;
        }
        if let Some(timeout) = self.timeout {
            ensure(!timeout.is_zero(), "timeout", "must be positive")?;
            ensure_duration("timeout", timeout)?;
        }
        ensure_duration("drain_timeout", self.drain_timeout)?;
        ensure(
            self.sample_interval >= Duration::from_millis(1),
            "sample_interval",
            "must be at least 1ms",
        )?;
        ensure_duration("sample_interval", self.sample_interval)?;
        let points = self.duration().as_nanos() / self.sample_interval.as_nanos();
        ensure(
            points <= u128::from(MAX_TIMELINE_POINTS),
            "sample_interval",
            "must split the run into at most 1000000 points",
        )?;
        ensure(
            self.max_in_flight > 0,
            "max_in_flight",
            "must be at least 1",
        )?;
        ensure_at_most("max_in_flight", self.max_in_flight, MAX_IN_FLIGHT)?;
        ensure_at_most("samples_per_stage", self.samples_per_stage, MAX_SAMPLES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_and_spike_rates_follow_their_shape() {
        let ten = Duration::from_secs(10);
        let ramp = RatePattern::Ramp {
            from: 0.0,
            to: 100.0,
        };
        assert_eq!(ramp.rate_at(Duration::from_secs(5), ten), 50.0);
        assert_eq!(ramp.mean_rate(ten), 50.0);
        let spike = RatePattern::Spike {
            base: 10.0,
            peak: 110.0,
            at: Duration::from_secs(2),
            length: Duration::from_secs(1),
        };
        assert_eq!(spike.rate_at(Duration::from_secs(1), ten), 10.0);
        assert_eq!(spike.rate_at(Duration::from_millis(2500), ten), 110.0);
        assert_eq!(spike.rate_at(Duration::from_secs(3), ten), 10.0);
        assert_eq!(spike.mean_rate(ten), 20.0);
    }

    #[test]
    fn bad_plans_are_typed_errors() {
        let empty = LoadPlan::default();
        assert_eq!(empty.validate().unwrap_err().field(), "stages");
        let nan = LoadPlan::default().stage(LoadStage::constant("x", f64::NAN, Duration::ZERO));
        assert_eq!(nan.validate().unwrap_err().field(), "stages.0.pattern");
        let long = LoadPlan::default().stage(LoadStage::constant(
            "x",
            1.0,
            backstop_core::config::MAX_DURATION * 2,
        ));
        assert_eq!(long.validate().unwrap_err().field(), "stages.0.duration");
        let users = LoadPlan::closed_loop(0).stage(LoadStage::constant("x", 1.0, Duration::ZERO));
        assert_eq!(users.validate().unwrap_err().field(), "mode.users");
        let fine = LoadPlan::default()
            .sample_interval(Duration::from_millis(1))
            .stage(LoadStage::constant("x", 1.0, Duration::from_secs(2_000)));
        assert_eq!(fine.validate().unwrap_err().field(), "sample_interval");
    }
}
