//! Quotas: a sustained rate plus a burst, and their serde configuration.

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_positive_duration,
};
use serde::Deserialize;
use std::time::Duration;

/// A rate and a burst: `rate` cells per `period` sustained, at most `burst` at once.
///
/// Internally a quota is the GCRA pair (emission interval `T = period / rate`,
/// tolerance `tau = T * burst`), both in whole nanoseconds.
///
/// ```
/// use backstop_limit::Quota;
/// use std::time::Duration;
///
/// let q = Quota::per_minute(60).unwrap().with_burst(10).unwrap();
/// assert_eq!(q.burst(), 10);
/// assert_eq!(q.replenish_interval(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    emission_nanos: u64,
    burst: u64,
}

impl Quota {
    /// The most cells a quota grants per period or at once (`rate` and `burst`): 2^48,
    /// far above any request or token budget, and far from overflow in the nanosecond
    /// arithmetic of a decision.
    pub const MAX_CELLS: u64 = 1 << 48;

    /// `rate` cells per `period`, with a burst equal to `rate`.
    ///
    /// `rate` is at most [`MAX_CELLS`](Self::MAX_CELLS) and `period` at most
    /// [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (a year).
    pub fn new(rate: u64, period: Duration) -> Result<Self, ConfigError> {
        ensure(rate > 0, "rate", "must be at least 1")?;
        ensure_at_most("rate", rate, Self::MAX_CELLS)?;
        ensure_positive_duration("period", period)?;
        let period_nanos = backstop_core::time::nanos(period);
        let emission_nanos = period_nanos / rate;
        ensure(
            emission_nanos > 0,
            "rate",
            "must be at most one cell per nanosecond of the period",
        )?;
        Self::from_parts(emission_nanos, rate)
    }

    /// `rate` cells per second.
    pub fn per_second(rate: u64) -> Result<Self, ConfigError> {
        Self::new(rate, Duration::from_secs(1))
    }

    /// `rate` cells per minute.
    pub fn per_minute(rate: u64) -> Result<Self, ConfigError> {
        Self::new(rate, Duration::from_secs(60))
    }

    /// `rate` cells per hour.
    pub fn per_hour(rate: u64) -> Result<Self, ConfigError> {
        Self::new(rate, Duration::from_secs(3600))
    }

    /// The same sustained rate with a different burst (at most
    /// [`MAX_CELLS`](Self::MAX_CELLS)).
    pub fn with_burst(self, burst: u64) -> Result<Self, ConfigError> {
        Self::from_parts(self.emission_nanos, burst)
    }

    fn from_parts(emission_nanos: u64, burst: u64) -> Result<Self, ConfigError> {
        ensure(burst > 0, "burst", "must be at least 1")?;
        ensure_at_most("burst", burst, Self::MAX_CELLS)?;
        ensure(
            emission_nanos.checked_mul(burst).is_some(),
            "burst",
            "times the replenish interval must fit in 584 years",
        )?;
        Ok(Self {
            emission_nanos,
            burst,
        })
    }

    /// The most cells admitted at once.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// How long it takes to earn back one cell.
    pub fn replenish_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_nanos)
    }

    pub(crate) fn emission_nanos(&self) -> u64 {
        self.emission_nanos
    }

    /// GCRA tolerance: how far ahead of now the theoretical arrival time may run.
    pub(crate) fn tolerance_nanos(&self) -> u64 {
        self.emission_nanos * self.burst
    }
}

/// A quota as written in configuration: `{ rate = 600, period = "1m", burst = 50 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Cells per period.
    pub rate: u64,
    /// The period the rate is stated over.
    #[serde(with = "backstop_core::duration::human")]
    pub period: Duration,
    /// Cells admitted at once; defaults to `rate`.
    #[serde(default)]
    pub burst: Option<u64>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            rate: 60,
            period: Duration::from_secs(60),
            burst: None,
        }
    }
}

impl QuotaConfig {
    /// Validates and converts into a [`Quota`].
    pub fn build(&self) -> Result<Quota, ConfigError> {
        let quota = Quota::new(self.rate, self.period)?;
        match self.burst {
            Some(burst) => quota.with_burst(burst),
            None => Ok(quota),
        }
    }
}

impl Validate for QuotaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.build().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_period_and_burst_name_their_field() {
        assert_eq!(Quota::per_second(0).unwrap_err().field(), "rate");
        assert_eq!(Quota::new(1, Duration::ZERO).unwrap_err().field(), "period");
        let q = Quota::per_second(5).unwrap();
        assert_eq!(q.with_burst(0).unwrap_err().field(), "burst");
        assert_eq!(
            Quota::new(10, Duration::from_nanos(5)).unwrap_err().field(),
            "rate"
        );
    }

    #[test]
    fn absurd_sizes_and_durations_name_their_field() {
        let field = |json: &str| {
            serde_json::from_str::<QuotaConfig>(json)
                .unwrap()
                .validate()
                .unwrap_err()
                .field()
                .to_string()
        };
        assert_eq!(field(r#"{"rate":1,"period":"150000000000000d"}"#), "period");
        assert_eq!(field(r#"{"rate":1,"period":"366d"}"#), "period");
        assert_eq!(field(r#"{"rate":1099511627776000,"period":"1d"}"#), "rate");
        assert_eq!(
            field(r#"{"rate":1,"period":"1s","burst":18446744073709551615}"#),
            "burst"
        );
        assert!(Quota::new(Quota::MAX_CELLS, backstop_core::config::MAX_DURATION).is_ok());
    }

    #[test]
    fn config_reads_human_durations_and_defaults_burst_to_rate() {
        let cfg: QuotaConfig = serde_json::from_str(r#"{"rate":600,"period":"1m"}"#).unwrap();
        let q = cfg.build().unwrap();
        assert_eq!(q.burst(), 600);
        assert_eq!(q.replenish_interval(), Duration::from_millis(100));
        let bad: QuotaConfig =
            serde_json::from_str(r#"{"rate":1,"period":"1s","burst":0}"#).unwrap();
        let err = bad.validate().unwrap_err();
        assert_eq!(err.field(), "burst");
        assert!(err.to_string().contains("`burst`"));
    }
}
