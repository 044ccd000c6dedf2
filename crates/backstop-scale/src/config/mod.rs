//! Serde configuration for every policy, validated into
//! [`ConfigError`](backstop_core::config::ConfigError), one file per concept.

/// Builder methods that only store their arguments: each `with_x(args) { field = value, … }`
/// becomes a `#[must_use]` method taking and returning `self`. Defined before the modules so
/// that every config file can use it.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),+) { $($field:ident = $value:expr),+ })*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, $($arg: $ty),+) -> Self {
                $(self.$field = $value;)+
                self
            }
        )*
    };
}

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
    ensure_count, ensure_non_negative, ensure_nonzero, ensure_optional_duration,
    ensure_optional_name, ensure_positive, ensure_quantile, ensure_tolerance, validate_bounds,
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
