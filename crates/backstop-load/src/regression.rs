//! Regression detection: a new run against a saved baseline, stage by stage, with
//! statistical tests rather than a fixed percentage.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::report::{LoadReport, StageReport, ms};
use crate::stats;

/// How strict a comparison is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionConfig {
    /// The chance of calling a change significant when nothing changed, per stage (split
    /// evenly over the stage's three tests, Bonferroni).
    pub alpha: f64,
    /// Bootstrap resamples for the p99 interval.
    pub resamples: u32,
    /// Seed of the bootstrap, so a comparison is reproducible.
    pub seed: u64,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            resamples: 1000,
            seed: 0x5eed,
        }
    }
}

/// Which way a figure moved, when the move is significant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// No significant change.
    Unchanged,
    /// Significantly worse (slower, or more errors).
    Worse,
    /// Significantly better.
    Better,
}

impl Change {
    fn of(significant: bool, worse: bool) -> Self {
        match (significant, worse) {
            (false, _) => Self::Unchanged,
            (true, true) => Self::Worse,
            (true, false) => Self::Better,
        }
    }
}

/// Mann-Whitney U on the latency samples: did the distribution shift?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencyShift {
    /// Baseline median of the samples (µs).
    pub baseline_p50_us: u64,
    /// New median (µs).
    pub current_p50_us: u64,
    /// z statistic, positive when the new run is slower.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// The verdict.
    pub change: Change,
}

/// A bootstrap interval of the p99 ratio (new / baseline): did the tail move?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TailShift {
    /// Baseline p99 of the samples (µs).
    pub baseline_p99_us: u64,
    /// New p99 (µs).
    pub current_p99_us: u64,
    /// Lower end of the interval of the ratio.
    pub ratio_low: f64,
    /// Upper end.
    pub ratio_high: f64,
    /// The verdict: significant when the interval excludes 1.
    pub change: Change,
}

/// A two-proportion z-test on error counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorShift {
    /// Baseline error rate.
    pub baseline_rate: f64,
    /// New error rate.
    pub current_rate: f64,
    /// z statistic, positive when the new run fails more.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// The verdict.
    pub change: Change,
}

/// One stage compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StageComparison {
    /// The stage's name.
    pub stage: String,
    /// Whole-distribution shift.
    pub latency: LatencyShift,
    /// Tail shift.
    pub p99: TailShift,
    /// Error-rate change.
    pub errors: ErrorShift,
}

impl StageComparison {
    /// Whether any of the stage's tests found a significant change.
    pub fn significant(&self) -> bool {
        [self.latency.change, self.p99.change, self.errors.change]
            .iter()
            .any(|change| *change != Change::Unchanged)
    }

    /// Whether any test found the stage significantly worse.
    pub fn regressed(&self) -> bool {
        [self.latency.change, self.p99.change, self.errors.change].contains(&Change::Worse)
    }
}

/// A run compared with a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegressionReport {
    /// Per stage present in both runs (matched by name).
    pub stages: Vec<StageComparison>,
    /// Stages present in only one of the runs.
    pub unmatched: Vec<String>,
}

impl RegressionReport {
    /// Whether any stage changed significantly, either way.
    pub fn significant(&self) -> bool {
        self.stages.iter().any(StageComparison::significant)
    }

    /// Whether any stage got significantly worse.
    pub fn regressed(&self) -> bool {
        self.stages.iter().any(StageComparison::regressed)
    }
}

impl fmt::Display for RegressionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for stage in &self.stages {
            writeln!(
                f,
                "stage {}: latency p50 {} -> {} (MWU p={:.4}, {:?}); p99 {} -> {} \
                 (ratio in [{:.3}, {:.3}], {:?}); errors {:.2}% -> {:.2}% (p={:.4}, {:?})",
                stage.stage,
                ms(stage.latency.baseline_p50_us),
                ms(stage.latency.current_p50_us),
                stage.latency.p_value,
                stage.latency.change,
                ms(stage.p99.baseline_p99_us),
                ms(stage.p99.current_p99_us),
                stage.p99.ratio_low,
                stage.p99.ratio_high,
                stage.p99.change,
                stage.errors.baseline_rate * 100.0,
                stage.errors.current_rate * 100.0,
                stage.errors.p_value,
                stage.errors.change,
            )?;
        }
        for name in &self.unmatched {
            writeln!(f, "stage {name}: in only one run, not compared")?;
        }
        write!(
            f,
            "regression: {}",
            if self.regressed() {
                "significantly worse"
            } else if self.significant() {
                "significantly better"
            } else {
                "no significant change"
            }
        )
    }
}

/// Compares `current` with `baseline`, stage by stage (matched by name).
///
/// ```
/// use backstop_load::{LoadReport, RegressionConfig, compare};
///
/// # fn run() -> LoadReport { LoadReport::from_json(r#"{"mode":"m","stages":[],"timeline":[],"signals":[]}"#).unwrap() }
/// let baseline = LoadReport::from_json(&run().to_json()).unwrap(); // saved earlier
/// let verdict = compare(&baseline, &run(), &RegressionConfig::default());
/// assert!(!verdict.regressed());
/// ```
pub fn compare(
    baseline: &LoadReport,
    current: &LoadReport,
    config: &RegressionConfig,
) -> RegressionReport {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let alpha = config.alpha.clamp(0.0, 1.0) / 3.0;
    let mut stages = Vec::new();
    let mut unmatched = Vec::new();
    for old in &baseline.stages {
        match current.stage(&old.name) {
            Some(new) => stages.push(compare_stage(old, new, alpha, config.resamples, &mut rng)),
            None => unmatched.push(old.name.clone()),
        }
    }
    for new in &current.stages {
        if baseline.stage(&new.name).is_none() {
            unmatched.push(new.name.clone());
        }
    }
    RegressionReport { stages, unmatched }
}

fn compare_stage(
    old: &StageReport,
    new: &StageReport,
    alpha: f64,
    resamples: u32,
    rng: &mut fastrand::Rng,
) -> StageComparison {
    let (a, b) = (&old.samples_us, &new.samples_us);
    let (z, p_value) = stats::mann_whitney(a, b);
    let latency = LatencyShift {
        baseline_p50_us: stats::quantile(&mut a.clone(), 0.5),
        current_p50_us: stats::quantile(&mut b.clone(), 0.5),
        z,
        p_value,
        change: Change::of(p_value < alpha, z > 0.0),
    };
    let (ratio_low, ratio_high) =
        stats::bootstrap_quantile_ratio(a, b, 0.99, resamples, alpha, rng).unwrap_or((1.0, 1.0));
    let p99 = TailShift {
        baseline_p99_us: stats::quantile(&mut a.clone(), 0.99),
        current_p99_us: stats::quantile(&mut b.clone(), 0.99),
        ratio_low,
        ratio_high,
        change: Change::of(ratio_low > 1.0 || ratio_high < 1.0, ratio_low > 1.0),
    };
    let failed = |s: &StageReport| (s.sent + s.dropped).saturating_sub(s.ok);
    let (z, p_value) = stats::two_proportions(
        failed(old),
        old.sent + old.dropped,
        failed(new),
        new.sent + new.dropped,
    );
    let errors = ErrorShift {
        baseline_rate: old.error_rate,
        current_rate: new.error_rate,
        z,
        p_value,
        change: Change::of(p_value < alpha, z > 0.0),
    };
    StageComparison {
        stage: old.name.clone(),
        latency,
        p99,
        errors,
    }
}
