//! Serde configuration for every policy, validated into
//! [`ConfigError`](backstop_core::config::ConfigError), one file per concept.

mod behavior;
mod burst;
mod checks;
mod envelope;
mod hpa;
mod predictive;
mod queue;
mod schedule;
mod threshold;
mod tolerance;

pub use behavior::{Behavior, RateKind, RatePolicy, ScalingRules, Select};
pub use burst::{BurstHoldConfig, MAX_GAP_SAMPLES};
pub(crate) use checks::{
    ensure_non_negative, ensure_nonzero, ensure_optional_duration, ensure_optional_name,
    ensure_positive, ensure_quantile, ensure_tolerance, validate_bounds,
};
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
