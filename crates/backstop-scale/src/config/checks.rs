//! The rules several configs check alike, each in one place so that a setting means the same
//! thing, and fails with the same message, in every config that has it.

use std::time::Duration;

use backstop_core::config::{ConfigError, ensure, ensure_duration};

/// The replica bounds: `max` at least 1, `min` at most `max`, and `min` at least 1 unless the
/// policy can scale to zero.
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

/// A tolerance band's half-width: a band of 1 or more would hold a ratio of 0 or 2.
pub(crate) fn ensure_tolerance(field: &str, tolerance: f64) -> Result<(), ConfigError> {
    ensure(
        tolerance.is_finite() && (0.0..1.0).contains(&tolerance),
        field,
        "must be at least 0 and below 1",
    )
}

/// A number something is divided by or scaled with (a target per replica, a capacity, an
/// error bound): finite and above 0.
pub(crate) fn ensure_positive(field: &str, value: f64) -> Result<(), ConfigError> {
    ensure(
        value.is_finite() && value > 0.0,
        field,
        "must be greater than 0",
    )
}

/// A threshold, percent or multiplier where 0 means "none": finite and at least 0.
pub(crate) fn ensure_non_negative(field: &str, value: f64) -> Result<(), ConfigError> {
    ensure(
        value.is_finite() && value >= 0.0,
        field,
        "must be a non-negative number",
    )
}

/// A span that time is divided by or recurs over (an interval, a period): longer than zero.
pub(crate) fn ensure_nonzero(field: &str, span: Duration) -> Result<(), ConfigError> {
    ensure(!span.is_zero(), field, "must be greater than 0")
}

/// An optional span, when set, is within [`ensure_duration`]'s bound.
pub(crate) fn ensure_optional_duration(
    field: &str,
    span: Option<Duration>,
) -> Result<(), ConfigError> {
    span.map_or(Ok(()), |span| ensure_duration(field, span))
}

/// An optional metric name, when set, is not empty: an empty name matches no sample.
pub(crate) fn ensure_optional_name(field: &str, name: Option<&str>) -> Result<(), ConfigError> {
    ensure(
        name.is_none_or(|n| !n.is_empty()),
        field,
        "must not be empty",
    )
}

/// A quantile, in [0, 1].
pub(crate) fn ensure_quantile(field: &str, quantile: f64) -> Result<(), ConfigError> {
    ensure(
        (0.0..=1.0).contains(&quantile),
        field,
        "must be between 0 and 1",
    )
}
