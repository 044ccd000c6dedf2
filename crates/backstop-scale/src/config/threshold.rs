//! Threshold/step scaling settings.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_duration};
use serde::{Deserialize, Serialize};

use super::{ensure_non_negative, ensure_optional_name, validate_bounds};

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
    /// A demand metric (an `AverageValue` target with its total, e.g. requests per second)
    /// that sizes a scale-up: above `scale_up_above` the step is at least what brings the
    /// fleet to `ceil(total / target)`. Utilization stops at 100 % however large the burst,
    /// so without it a burst of ten replicas' worth is climbed one step per cooldown. `None`
    /// (the default) steps by the configured sizes only.
    pub demand_metric: Option<String>,
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
            demand_metric: None,
        }
    }
}

impl ThresholdConfig {
    backstop_core::config_setters! {
        self;
        /// Sets the replica bounds.
        with_bounds(min: u32, max: u32) { min_replicas = min, max_replicas = max }
        /// Sets the step sizes.
        with_steps(up: u32, down: u32) { up_step = up, down_step = down }
        /// Sets the proportional steps, in percent of the current replicas.
        with_step_percents(up: f64, down: f64) { up_step_percent = up, down_step_percent = down }
        /// Sets the demand metric that sizes a scale-up (see [`ThresholdConfig::demand_metric`]).
        with_demand_metric(metric: Option<String>) { demand_metric = metric }
        /// Sets the cooldown.
        with_cooldown(cooldown: Duration) { cooldown = cooldown }
    }
}

impl Validate for ThresholdConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_duration("cooldown", self.cooldown)?;
        validate_bounds(self.min_replicas, self.max_replicas, false)?;
        ensure_non_negative("scale_down_below", self.scale_down_below)?;
        ensure(
            self.scale_up_above.is_finite() && self.scale_up_above > self.scale_down_below,
            "scale_up_above",
            "must be greater than scale_down_below",
        )?;
        ensure_optional_name("demand_metric", self.demand_metric.as_deref())?;
        ensure(self.up_step >= 1, "up_step", "must be at least 1")?;
        ensure(self.down_step >= 1, "down_step", "must be at least 1")?;
        ensure_non_negative("up_step_percent", self.up_step_percent)?;
        ensure(
            self.down_step_percent.is_finite() && (0.0..=100.0).contains(&self.down_step_percent),
            "down_step_percent",
            "must be between 0 and 100",
        )
    }
}
