//! Serde configuration for every policy, validated into [`ConfigError`], one file per concept.

use backstop_core::config::{ConfigError, ensure};

mod behavior;
mod burst;
mod envelope;
mod hpa;
mod predictive;
mod queue;
mod schedule;
mod threshold;
mod tolerance;

pub use behavior::{Behavior, RateKind, RatePolicy, ScalingRules, Select};
pub use burst::{BurstHoldConfig, MAX_GAP_SAMPLES};
pub use envelope::{BurstEnvelopeConfig, HeadroomScale, MAX_ENVELOPE_SAMPLES};
pub use hpa::HpaConfig;
pub use predictive::{
    ForecastModel, MAX_ERROR_WINDOW, MAX_LEAD_SAMPLES, MAX_LEAD_TIME, PredictiveConfig,
};
pub use queue::{FallbackBehavior, FallbackConfig, MAX_QUEUE_TRIGGERS, QueueConfig, QueueTrigger};
pub use schedule::{MAX_SCHEDULE_WINDOWS, ScheduleConfig, ScheduleWindow};
pub use threshold::ThresholdConfig;
pub(crate) use tolerance::Tolerance;
pub use tolerance::ToleranceRule;

pub(crate) fn validate_bounds(min: u32, max: u32, allow_zero_min: bool) -> Result<(), ConfigError> {
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

pub(crate) fn validate_tolerance(tolerance: f64) -> Result<(), ConfigError> {
    ensure(
        tolerance.is_finite() && (0.0..1.0).contains(&tolerance),
        "tolerance",
        "must be at least 0 and below 1",
    )
}
