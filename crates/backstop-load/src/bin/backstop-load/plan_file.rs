//! The plan file: TOML read into a `LoadPlan`, an `HttpTarget` and report outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backstop_core::duration::{human, human_option};
use backstop_load::{
    Arrivals, HttpTarget, LoadMode, LoadPlan, LoadStage, RatePattern, Slo, TraceReplay,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanFile {
    target: TargetSection,
    #[serde(default)]
    run: RunSection,
    #[serde(rename = "stage")]
    stages: Vec<StageSection>,
    #[serde(default)]
    pub(crate) report: ReportSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSection {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

fn get() -> String {
    "GET".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Open,
    Closed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ArrivalsName {
    #[default]
    Constant,
    Poisson,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RunSection {
    mode: Mode,
    arrivals: ArrivalsName,
    users: u64,
    #[serde(with = "human")]
    think: Duration,
    #[serde(with = "human_option")]
    timeout: Option<Duration>,
    #[serde(with = "human")]
    drain_timeout: Duration,
    #[serde(with = "human")]
    sample_interval: Duration,
    max_in_flight: u64,
    samples_per_stage: u64,
    seed: u64,
}

impl Default for RunSection {
    fn default() -> Self {
        let plan = LoadPlan::default();
        Self {
            mode: Mode::Open,
            arrivals: ArrivalsName::Constant,
            users: 1,
            think: Duration::ZERO,
            timeout: None,
            drain_timeout: plan.drain_timeout,
            sample_interval: plan.sample_interval,
            max_in_flight: plan.max_in_flight,
            samples_per_stage: plan.samples_per_stage,
            seed: plan.seed,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSection {
    name: String,
    #[serde(default, with = "human_option")]
    duration: Option<Duration>,
    rate: Option<f64>,
    ramp: Option<[f64; 2]>,
    spike: Option<SpikeSection>,
    trace: Option<TraceSection>,
    #[serde(default)]
    slo: SloSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpikeSection {
    base: f64,
    peak: f64,
    #[serde(with = "human")]
    at: Duration,
    #[serde(with = "human")]
    length: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceSection {
    file: PathBuf,
    #[serde(default = "one")]
    speedup: f64,
    #[serde(default = "one")]
    scale: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SloSection {
    #[serde(with = "human_option")]
    p50: Option<Duration>,
    #[serde(with = "human_option")]
    p90: Option<Duration>,
    #[serde(with = "human_option")]
    p95: Option<Duration>,
    #[serde(with = "human_option")]
    p99: Option<Duration>,
    #[serde(with = "human_option")]
    p999: Option<Duration>,
    error_rate: Option<f64>,
    /// As `error_rate`, with quota refusals (429s) expected rather than failures.
    failure_rate: Option<f64>,
    throughput: Option<f64>,
}

/// Where the reports go besides the text on standard output.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ReportSection {
    pub(crate) json: Option<PathBuf>,
    pub(crate) csv: Option<PathBuf>,
    pub(crate) baseline: Option<PathBuf>,
}

impl PlanFile {
    /// The target and the plan; relative trace paths are read from `dir`.
    pub(crate) fn build(&self, dir: &Path) -> Result<(HttpTarget, LoadPlan), String> {
        let t = &self.target;
        let mut target = HttpTarget::new(&t.url)
            .and_then(|target| target.method(&t.method))
            .map_err(|e| e.to_string())?;
        for (name, value) in &t.headers {
            target = target.header(name, value).map_err(|e| e.to_string())?;
        }
        let target = target.body(t.body.clone());
        let r = &self.run;
        let mut plan = match r.mode {
            Mode::Open => LoadPlan::open_loop(match r.arrivals {
                ArrivalsName::Constant => Arrivals::Constant,
                ArrivalsName::Poisson => Arrivals::Poisson,
            }),
            Mode::Closed => {
                let mut plan = LoadPlan::closed_loop(r.users);
                plan.mode = LoadMode::ClosedLoop {
                    users: r.users,
                    think: r.think,
                };
                plan
            }
        };
        plan.timeout = r.timeout;
        plan.drain_timeout = r.drain_timeout;
        plan.sample_interval = r.sample_interval;
        plan.max_in_flight = r.max_in_flight;
        plan.samples_per_stage = r.samples_per_stage;
        plan.seed = r.seed;
        for stage in &self.stages {
            plan = plan.stage(stage.build(dir)?);
        }
        Ok((target, plan))
    }
}

impl StageSection {
    fn build(&self, dir: &Path) -> Result<LoadStage, String> {
        let name = &self.name;
        let shapes = [
            self.rate.is_some(),
            self.ramp.is_some(),
            self.spike.is_some(),
            self.trace.is_some(),
        ];
        if shapes.iter().filter(|set| **set).count() > 1 {
            return Err(format!(
                "stage {name}: give one of rate, ramp, spike and trace"
            ));
        }
        let duration = || {
            self.duration
                .ok_or_else(|| format!("stage {name}: duration is required"))
        };
        let stage = if let Some(trace) = &self.trace {
            let path = dir.join(&trace.file);
            let csv = std::fs::read_to_string(&path)
                .map_err(|e| format!("stage {name}: trace {}: {e}", path.display()))?;
            let replay = TraceReplay::from_csv(&csv, trace.speedup, trace.scale)
                .map_err(|e| format!("stage {name}: {e}"))?;
            let mut stage = LoadStage::trace(name.clone(), replay);
            if let Some(duration) = self.duration {
                stage.duration = duration;
            }
            stage
        } else if let Some([from, to]) = self.ramp {
            LoadStage::ramp(name.clone(), from, to, duration()?)
        } else if let Some(spike) = &self.spike {
            LoadStage::new(
                name.clone(),
                duration()?,
                RatePattern::Spike {
                    base: spike.base,
                    peak: spike.peak,
                    at: spike.at,
                    length: spike.length,
                },
            )
        } else {
            // Closed loop ignores the rate, so it may be left out there.
            LoadStage::constant(name.clone(), self.rate.unwrap_or(0.0), duration()?)
        };
        Ok(stage.slo(self.slo.build()))
    }
}

impl SloSection {
    fn build(&self) -> Slo {
        let mut slo = Slo::new();
        for (quantile, max) in [
            (0.50, self.p50),
            (0.90, self.p90),
            (0.95, self.p95),
            (0.99, self.p99),
            (0.999, self.p999),
        ] {
            if let Some(max) = max {
                slo = slo.latency(quantile, max);
            }
        }
        if let Some(max) = self.error_rate {
            slo = slo.error_rate_below(max);
        }
        if let Some(max) = self.failure_rate {
            slo = slo.failure_rate_below(max);
        }
        if let Some(min) = self.throughput {
            slo = slo.throughput_above(min);
        }
        slo
    }
}
