//! Kubernetes-HPA target tracking settings.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};
use serde::{Deserialize, Serialize};

use super::{
    Behavior, Tolerance, ToleranceRule, ensure_non_negative, ensure_optional_duration,
    ensure_tolerance, validate_bounds,
};

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
    /// Tolerance above 1 (scale-up side) instead of `tolerance`, as Kubernetes' per-direction
    /// `behavior.scaleUp.tolerance`.
    pub scale_up_tolerance: Option<f64>,
    /// Tolerance below 1 (scale-down side) instead of `tolerance`.
    pub scale_down_tolerance: Option<f64>,
    /// How the band is tested: current Kubernetes (default) or 1.28 and older.
    pub tolerance_rule: ToleranceRule,
    /// Noise-aware band: when above 0, each metric's tolerance widens to this many times its
    /// measured short-term relative noise (capped below 1), so white noise on a flat load does
    /// not make the fleet chase every sample. 0 (the default) is the exact HPA behaviour.
    pub noise_tolerance: f64,
    /// Stabilization, rate policies and cooldown.
    pub behavior: Behavior,
    /// A metric measured longer ago than this counts as failed (stale); `None` trusts every
    /// sample. Samples carry their time in [`MetricSample::measured_at`](crate::MetricSample).
    #[serde(with = "backstop_core::duration::human_option")]
    pub max_metric_age: Option<Duration>,
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 10,
            tolerance: 0.1,
            scale_up_tolerance: None,
            scale_down_tolerance: None,
            tolerance_rule: ToleranceRule::Current,
            noise_tolerance: 0.0,
            behavior: Behavior::default(),
            max_metric_age: None,
        }
    }
}

impl HpaConfig {
    backstop_core::config_setters! {
        self;
        /// Sets the noise-aware band multiplier (0 disables it).
        with_noise_tolerance(k: f64) { noise_tolerance = k }
        /// Sets the replica bounds.
        with_bounds(min: u32, max: u32) { min_replicas = min, max_replicas = max }
        /// Sets the tolerance.
        with_tolerance(tolerance: f64) { tolerance = tolerance }
        /// Sets one tolerance per direction (Kubernetes' `scaleUp.tolerance`/`scaleDown.tolerance`).
        with_direction_tolerances(up: f64, down: f64) {
            scale_up_tolerance = Some(up),
            scale_down_tolerance = Some(down)
        }
        /// Sets the tolerance rule.
        with_tolerance_rule(rule: ToleranceRule) { tolerance_rule = rule }
        /// Sets the behaviour.
        with_behavior(behavior: Behavior) { behavior = behavior }
    }

    pub(crate) fn band(&self) -> Tolerance {
        Tolerance {
            up: self.scale_up_tolerance.unwrap_or(self.tolerance),
            down: self.scale_down_tolerance.unwrap_or(self.tolerance),
            rule: self.tolerance_rule,
        }
    }
}

impl Validate for HpaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_bounds(self.min_replicas, self.max_replicas, false)?;
        ensure_tolerance("tolerance", self.tolerance)?;
        ensure_optional_duration("max_metric_age", self.max_metric_age)?;
        for (tolerance, field) in [
            (self.scale_up_tolerance, "scale_up_tolerance"),
            (self.scale_down_tolerance, "scale_down_tolerance"),
        ] {
            if let Some(t) = tolerance {
                ensure_tolerance(field, t)?;
            }
        }
        ensure_non_negative("noise_tolerance", self.noise_tolerance)?;
        self.behavior.validate().map_err(|e| e.within("behavior"))
    }
}
