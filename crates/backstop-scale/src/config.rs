//! Serde configuration for every policy, validated into [`ConfigError`].

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure};
use serde::{Deserialize, Serialize};

/// How a rate policy limits change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKind {
    /// At most `value` replicas per period.
    Pods,
    /// At most `value` percent of the replicas at the start of the period.
    Percent,
}

/// One HPA scaling policy: at most `value` pods or percent per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePolicy {
    /// Pods or percent.
    pub kind: RateKind,
    /// The allowed change.
    pub value: u32,
    /// The period the change is measured over.
    #[serde(with = "backstop_core::duration::human")]
    pub period: Duration,
}

impl RatePolicy {
    /// At most `value` replicas per `period`.
    pub fn pods(value: u32, period: Duration) -> Self {
        Self {
            kind: RateKind::Pods,
            value,
            period,
        }
    }

    /// At most `value` percent per `period`.
    pub fn percent(value: u32, period: Duration) -> Self {
        Self {
            kind: RateKind::Percent,
            value,
            period,
        }
    }
}

/// Which policy wins when several apply (the HPA's `selectPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The policy allowing the largest change (HPA default).
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// Stabilization window and rate policies for one direction (the HPA's `HPAScalingRules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScalingRules {
    /// Recommendations within this window are considered (lowest for up, highest for down).
    #[serde(with = "backstop_core::duration::human")]
    pub stabilization_window: Duration,
    /// Rate policies; an empty list means no rate limit.
    pub policies: Vec<RatePolicy>,
    /// How the policies combine.
    pub select: Select,
}

impl ScalingRules {
    /// The HPA default for scale-up: no stabilization, the larger of +100 % or +4 pods per 15 s.
    pub fn default_up() -> Self {
        Self {
            stabilization_window: Duration::ZERO,
            policies: vec![
                RatePolicy::percent(100, Duration::from_secs(15)),
                RatePolicy::pods(4, Duration::from_secs(15)),
            ],
            select: Select::Max,
        }
    }

    /// The HPA default for scale-down: 300 s stabilization, −100 % per 15 s.
    pub fn default_down() -> Self {
        Self {
            stabilization_window: Duration::from_secs(300),
            policies: vec![RatePolicy::percent(100, Duration::from_secs(15))],
            select: Select::Max,
        }
    }

    /// Replaces the stabilization window.
    #[must_use]
    pub fn with_window(mut self, window: Duration) -> Self {
        self.stabilization_window = window;
        self
    }

    /// Replaces the rate policies.
    #[must_use]
    pub fn with_policies(mut self, policies: Vec<RatePolicy>) -> Self {
        self.policies = policies;
        self
    }

    /// Replaces the select rule.
    #[must_use]
    pub fn with_select(mut self, select: Select) -> Self {
        self.select = select;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (i, p) in self.policies.iter().enumerate() {
            let field = format!("policies[{i}]");
            ensure(p.value > 0, &field, "value must be at least 1")?;
            ensure(
                !p.period.is_zero() && p.period <= Duration::from_secs(1800),
                &field,
                "period must be between 1s and 30m (as the HPA requires)",
            )?;
        }
        ensure(
            self.stabilization_window <= Duration::from_secs(3600),
            "stabilization_window",
            "must be at most 1h (as the HPA requires)",
        )
    }
}

impl Default for ScalingRules {
    fn default() -> Self {
        Self::default_up()
    }
}

/// Scale-up and scale-down behaviour plus an optional cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behavior {
    /// Rules when scaling up.
    pub scale_up: ScalingRules,
    /// Rules when scaling down.
    pub scale_down: ScalingRules,
    /// No change of any kind within this long after the last one (zero: none, the HPA default).
    #[serde(with = "backstop_core::duration::human")]
    pub cooldown: Duration,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules::default_up(),
            scale_down: ScalingRules::default_down(),
            cooldown: Duration::ZERO,
        }
    }
}

impl Validate for Behavior {
    fn validate(&self) -> Result<(), ConfigError> {
        self.scale_up.validate().map_err(|e| e.within("scale_up"))?;
        self.scale_down
            .validate()
            .map_err(|e| e.within("scale_down"))
    }
}

fn validate_bounds(min: u32, max: u32, allow_zero_min: bool) -> Result<(), ConfigError> {
    ensure(max >= 1, "max_replicas", "must be at least 1")?;
    if !allow_zero_min {
        ensure(min >= 1, "min_replicas", "must be at least 1")?;
    }
    ensure(
        min <= max,
        "min_replicas",
        "must not be greater than max_replicas",
    )
}

fn validate_tolerance(tolerance: f64) -> Result<(), ConfigError> {
    ensure(
        tolerance.is_finite() && (0.0..1.0).contains(&tolerance),
        "tolerance",
        "must be at least 0 and below 1",
    )
}

/// Kubernetes-HPA target tracking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HpaConfig {
    /// Lower bound (at least 1).
    pub min_replicas: u32,
    /// Upper bound.
    pub max_replicas: u32,
    /// No action while every ratio is within `1 ± tolerance` (HPA default 0.1).
    pub tolerance: f64,
    /// Noise-aware band: when above 0, each metric's tolerance widens to this many times its
    /// measured short-term relative noise (capped below 1), so white noise on a flat load does
    /// not make the fleet chase every sample. 0 (the default) is the exact HPA behaviour.
    pub noise_tolerance: f64,
    /// Stabilization, rate policies and cooldown.
    pub behavior: Behavior,
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 10,
            tolerance: 0.1,
            noise_tolerance: 0.0,
            behavior: Behavior::default(),
        }
    }
}

impl HpaConfig {
    /// Sets the noise-aware band multiplier (0 disables it).
    #[must_use]
    pub fn with_noise_tolerance(mut self, k: f64) -> Self {
        self.noise_tolerance = k;
        self
    }

    /// Sets the replica bounds.
    #[must_use]
    pub fn with_bounds(mut self, min: u32, max: u32) -> Self {
        self.min_replicas = min;
        self.max_replicas = max;
        self
    }

    /// Sets the tolerance.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Sets the behaviour.
    #[must_use]
    pub fn with_behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }
}

impl Validate for HpaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_bounds(self.min_replicas, self.max_replicas, false)?;
        validate_tolerance(self.tolerance)?;
        ensure(
            self.noise_tolerance.is_finite() && self.noise_tolerance >= 0.0,
            "noise_tolerance",
            "must be a non-negative number",
        )?;
        self.behavior.validate().map_err(|e| e.within("behavior"))
    }
}

/// Step scaling on utilization thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThresholdConfig {
    /// Lower bound (at least 1).
    pub min_replicas: u32,
    /// Upper bound.
    pub max_replicas: u32,
    /// Scale up when utilization (percent) is above this.
    pub scale_up_above: f64,
    /// Scale down when utilization (percent) is below this.
    pub scale_down_below: f64,
    /// Replicas added per scale-up.
    pub up_step: u32,
    /// Replicas removed per scale-down.
    pub down_step: u32,
    /// Scale-up step as a percent of the current replicas (rounded up); the step taken is the
    /// larger of this and `up_step`, so a big fleet grows as fast relative to its size as a
    /// small one (the `Percent` step of KEDA/HPA policies). 0 disables it.
    pub up_step_percent: f64,
    /// Scale-down step as a percent of the current replicas (rounded down); the step taken is
    /// the larger of this and `down_step`. 0 disables it.
    pub down_step_percent: f64,
    /// No action within this long after the last one.
    #[serde(with = "backstop_core::duration::human")]
    pub cooldown: Duration,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 10,
            scale_up_above: 80.0,
            scale_down_below: 30.0,
            up_step: 1,
            down_step: 1,
            up_step_percent: 0.0,
            down_step_percent: 0.0,
            cooldown: Duration::from_secs(300),
        }
    }
}

impl ThresholdConfig {
    /// Sets the replica bounds.
    #[must_use]
    pub fn with_bounds(mut self, min: u32, max: u32) -> Self {
        self.min_replicas = min;
        self.max_replicas = max;
        self
    }

    /// Sets the step sizes.
    #[must_use]
    pub fn with_steps(mut self, up: u32, down: u32) -> Self {
        self.up_step = up;
        self.down_step = down;
        self
    }

    /// Sets the proportional steps, in percent of the current replicas.
    #[must_use]
    pub fn with_step_percents(mut self, up: f64, down: f64) -> Self {
        self.up_step_percent = up;
        self.down_step_percent = down;
        self
    }

    /// Sets the cooldown.
    #[must_use]
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
}

impl Validate for ThresholdConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_bounds(self.min_replicas, self.max_replicas, false)?;
        ensure(
            self.scale_down_below.is_finite() && self.scale_down_below >= 0.0,
            "scale_down_below",
            "must be a non-negative number",
        )?;
        ensure(
            self.scale_up_above.is_finite() && self.scale_up_above > self.scale_down_below,
            "scale_up_above",
            "must be greater than scale_down_below",
        )?;
        ensure(self.up_step >= 1, "up_step", "must be at least 1")?;
        ensure(self.down_step >= 1, "down_step", "must be at least 1")?;
        ensure(
            self.up_step_percent.is_finite() && self.up_step_percent >= 0.0,
            "up_step_percent",
            "must be a non-negative number",
        )?;
        ensure(
            self.down_step_percent.is_finite() && (0.0..=100.0).contains(&self.down_step_percent),
            "down_step_percent",
            "must be between 0 and 100",
        )
    }
}

/// What the queue policy does once its metric source keeps failing (KEDA's `fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackConfig {
    /// Consecutive failures before the fallback applies.
    pub failure_threshold: u32,
    /// Replicas to run while the source is failing.
    pub replicas: u32,
}

/// KEDA-style queue scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Name of the backlog metric in the observation.
    pub metric: String,
    /// Lower bound; 0 allows scaling to zero.
    pub min_replicas: u32,
    /// Upper bound.
    pub max_replicas: u32,
    /// Backlog each replica should carry.
    pub target_per_replica: f64,
    /// The workload is active only while the backlog is strictly greater than this.
    pub activation_threshold: f64,
    /// Inactive this long before scaling to zero (KEDA default 300 s).
    #[serde(with = "backstop_core::duration::human")]
    pub cooldown: Duration,
    /// Replicas to run when the metric source keeps failing.
    pub fallback: Option<FallbackConfig>,
    /// No action while the ratio is within `1 ± tolerance`.
    pub tolerance: f64,
    /// Noise-aware band, as [`HpaConfig::noise_tolerance`]: 0 (the default) disables it.
    pub noise_tolerance: f64,
    /// Stabilization and rate policies for scaling between 1 and max.
    pub behavior: Behavior,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            metric: "queue_length".to_owned(),
            min_replicas: 0,
            max_replicas: 10,
            target_per_replica: 5.0,
            activation_threshold: 0.0,
            cooldown: Duration::from_secs(300),
            fallback: None,
            tolerance: 0.1,
            noise_tolerance: 0.0,
            behavior: Behavior::default(),
        }
    }
}

impl QueueConfig {
    /// Sets the noise-aware band multiplier (0 disables it).
    #[must_use]
    pub fn with_noise_tolerance(mut self, k: f64) -> Self {
        self.noise_tolerance = k;
        self
    }

    /// Sets the metric name.
    #[must_use]
    pub fn with_metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = metric.into();
        self
    }

    /// Sets the replica bounds.
    #[must_use]
    pub fn with_bounds(mut self, min: u32, max: u32) -> Self {
        self.min_replicas = min;
        self.max_replicas = max;
        self
    }

    /// Sets the backlog target per replica.
    #[must_use]
    pub fn with_target(mut self, target_per_replica: f64) -> Self {
        self.target_per_replica = target_per_replica;
        self
    }

    /// Sets the activation threshold.
    #[must_use]
    pub fn with_activation(mut self, threshold: f64) -> Self {
        self.activation_threshold = threshold;
        self
    }

    /// Sets the fallback.
    #[must_use]
    pub fn with_fallback(mut self, failure_threshold: u32, replicas: u32) -> Self {
        self.fallback = Some(FallbackConfig {
            failure_threshold,
            replicas,
        });
        self
    }

    /// Sets the behaviour.
    #[must_use]
    pub fn with_behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.metric.is_empty(), "metric", "must not be empty")?;
        validate_bounds(self.min_replicas, self.max_replicas, true)?;
        ensure(
            self.target_per_replica.is_finite() && self.target_per_replica > 0.0,
            "target_per_replica",
            "must be greater than 0",
        )?;
        ensure(
            self.activation_threshold.is_finite() && self.activation_threshold >= 0.0,
            "activation_threshold",
            "must be a non-negative number",
        )?;
        validate_tolerance(self.tolerance)?;
        ensure(
            self.noise_tolerance.is_finite() && self.noise_tolerance >= 0.0,
            "noise_tolerance",
            "must be a non-negative number",
        )?;
        if let Some(f) = &self.fallback {
            ensure(
                f.failure_threshold >= 1,
                "fallback.failure_threshold",
                "must be at least 1",
            )?;
            ensure(
                f.replicas >= 1 && f.replicas <= self.max_replicas,
                "fallback.replicas",
                "must be between 1 and max_replicas",
            )?;
        }
        self.behavior.validate().map_err(|e| e.within("behavior"))
    }
}

/// Which forecaster the predictive policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ForecastModel {
    /// Tomorrow looks like today: the value one season ago.
    SeasonalNaive,
    /// Additive Holt-Winters (triple exponential smoothing).
    HoltWinters {
        /// Level smoothing in (0, 1].
        alpha: f64,
        /// Trend smoothing in [0, 1].
        beta: f64,
        /// Seasonal smoothing in [0, 1].
        gamma: f64,
    },
    /// Least-squares line over the last `window` samples, for ramps.
    LinearTrend {
        /// Samples in the fit (at least 2).
        window: usize,
    },
}

impl Default for ForecastModel {
    fn default() -> Self {
        ForecastModel::HoltWinters {
            alpha: 0.2,
            beta: 0.01,
            gamma: 0.3,
        }
    }
}

/// Forecast-driven scaling layered on the reactive HPA policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictiveConfig {
    /// Name of the demand metric (its total over the workload is forecast).
    pub metric: String,
    /// Demand one replica should carry.
    pub target_per_replica: f64,
    /// The forecaster.
    pub model: ForecastModel,
    /// Time between observations; one forecaster sample each.
    #[serde(with = "backstop_core::duration::human")]
    pub interval: Duration,
    /// Length of the seasonal cycle (default one day).
    #[serde(with = "backstop_core::duration::human")]
    pub season: Duration,
    /// Replica warm-up: capacity is requested this far ahead.
    #[serde(with = "backstop_core::duration::human")]
    pub lead_time: Duration,
    /// Forecasts act only while the recent weighted absolute percentage error is at most this.
    pub max_error: f64,
    /// How many recent forecasts the error is measured over.
    pub error_window: usize,
    /// The reactive policy whose proposal the forecast can only raise.
    pub reactive: HpaConfig,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        Self {
            metric: "requests_per_second".to_owned(),
            target_per_replica: 10.0,
            model: ForecastModel::default(),
            interval: Duration::from_secs(15),
            season: Duration::from_secs(86_400),
            lead_time: Duration::from_secs(300),
            max_error: 0.25,
            error_window: 40,
            reactive: HpaConfig::default(),
        }
    }
}

impl PredictiveConfig {
    /// Samples per season.
    pub fn season_samples(&self) -> usize {
        steps(self.season, self.interval)
    }

    /// Samples per lead time (at least 1).
    pub fn lead_samples(&self) -> usize {
        steps(self.lead_time, self.interval).max(1)
    }
}

fn steps(span: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        return 0;
    }
    usize::try_from(span.as_nanos() / interval.as_nanos()).unwrap_or(usize::MAX)
}

impl Validate for PredictiveConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.metric.is_empty(), "metric", "must not be empty")?;
        ensure(
            self.target_per_replica.is_finite() && self.target_per_replica > 0.0,
            "target_per_replica",
            "must be greater than 0",
        )?;
        ensure(
            !self.interval.is_zero(),
            "interval",
            "must be greater than 0",
        )?;
        let season = self.season_samples();
        match self.model {
            ForecastModel::SeasonalNaive | ForecastModel::HoltWinters { .. } => ensure(
                (2..=1_000_000).contains(&season),
                "season",
                "must span between 2 and 1,000,000 intervals",
            )?,
            ForecastModel::LinearTrend { window } => {
                ensure(window >= 2, "model.window", "must be at least 2")?;
            }
        }
        if let ForecastModel::HoltWinters { alpha, beta, gamma } = self.model {
            ensure(
                alpha > 0.0 && alpha <= 1.0,
                "model.alpha",
                "must be in (0, 1]",
            )?;
            ensure(
                (0.0..=1.0).contains(&beta),
                "model.beta",
                "must be in [0, 1]",
            )?;
            ensure(
                (0.0..=1.0).contains(&gamma),
                "model.gamma",
                "must be in [0, 1]",
            )?;
        }
        ensure(
            self.max_error.is_finite() && self.max_error > 0.0,
            "max_error",
            "must be greater than 0",
        )?;
        ensure(self.error_window >= 1, "error_window", "must be at least 1")?;
        self.reactive.validate().map_err(|e| e.within("reactive"))
    }
}
