//! Serde configuration, validated once into a [`Retry`].

use crate::Retry;
use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_duration, ensure_positive_duration,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most attempts (first attempt included) a policy may make.
pub const MAX_ATTEMPTS: u32 = 100;
/// The largest retry budget cap, floor and hedge window a config accepts.
pub const MAX_BUDGET_COUNT: u32 = 1_000_000;

/// A retry policy: attempts, backoff, budget, the one deadline and hedging.
///
/// ```
/// use backstop_retry::RetryConfig;
///
/// let config: RetryConfig = serde_json::from_str(r#"{
///     "max_attempts": 4,
///     "timeout": "20s",
///     "backoff": { "initial": "200ms", "max": "5s", "multiplier": 2.0, "jitter": "decorrelated" },
///     "budget": { "ratio": 0.1, "min_per_sec": 5, "max_banked": 50 },
///     "hedge": { "percentile": 0.95, "window": 500, "max_ratio": 0.05 }
/// }"#).unwrap();
/// let retry = config.build().unwrap();
/// assert_eq!(retry.stats().attempts, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included (1 disables retries). Default 3, at most
    /// [`MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Waits between attempts.
    pub backoff: RetryBackoffConfig,
    /// Retries' share of the load, shared by every clone of the handle.
    pub budget: RetryBudgetConfig,
    /// One deadline for the whole call, every attempt and backoff included; inner layers
    /// read what remains through `backstop_core::deadline`. Default `None` (the caller's
    /// enclosing deadline, if any, still applies).
    #[serde(with = "backstop_core::duration::human_option")]
    pub timeout: Option<Duration>,
    /// A timeout for each attempt (shortened to what remains of the deadline); an attempt
    /// that outlives it fails with a `Timeout` refusal, which is retried. Default `None`.
    #[serde(with = "backstop_core::duration::human_option")]
    pub attempt_timeout: Option<Duration>,
    /// No attempt starts with less than this left before the deadline. Default 1 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub min_attempt_time: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned instead.
    /// Default 60 s.
    #[serde(with = "backstop_core::duration::human")]
    pub max_retry_after: Duration,
    /// Hedged requests; `None` (the default) never hedges.
    pub hedge: Option<HedgeConfig>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: RetryBackoffConfig::default(),
            budget: RetryBudgetConfig::default(),
            timeout: None,
            attempt_timeout: None,
            min_attempt_time: Duration::from_millis(1),
            max_retry_after: Duration::from_secs(60),
            hedge: None,
        }
    }
}

/// How the waits between attempts grow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBackoffConfig {
    /// The first wait (before jitter). Default 100 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub initial: Duration,
    /// The longest wait. Default 10 s.
    #[serde(with = "backstop_core::duration::human")]
    pub max: Duration,
    /// Growth per retry, from 1 to 16. Default 2.
    pub multiplier: f64,
    /// Randomisation of each wait. Default [`Jitter::Full`].
    pub jitter: Jitter,
}

impl Default for RetryBackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

/// Randomisation of backoff waits, so clients that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// The exact exponential wait.
    None,
    /// Uniform between zero and the exponential wait.
    #[default]
    Full,
    /// Uniform between `initial` and three times the previous wait, capped at `max`.
    Decorrelated,
}

/// The retry budget's share, floor and cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries per call, from 0 to 1000 (0.2: retries add at most 20 % load). Default 0.2.
    pub ratio: f64,
    /// Retries per second granted whatever the traffic, so a quiet service still retries.
    /// Default 1, at most [`MAX_BUDGET_COUNT`].
    pub min_per_sec: u32,
    /// Most retries banked by a quiet period. Default 100, at most [`MAX_BUDGET_COUNT`].
    pub max_banked: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 1,
            max_banked: 100,
        }
    }
}

/// Hedged requests ("The Tail at Scale"): when an attempt has run longer than the observed
/// `percentile` latency, one more attempt starts and the first success wins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// The latency percentile after which a hedge starts, in (0, 1). Default 0.95.
    pub percentile: f64,
    /// Successful attempts per latency window: the percentile is recomputed over each new
    /// window, and no hedge fires before the first is full. From 10 to
    /// [`MAX_BUDGET_COUNT`]. Default 1000.
    pub window: u32,
    /// Hedges per call, at most (the hedge budget's share, with no floor). Default 0.05.
    pub max_ratio: f64,
    /// Never hedge sooner than this. Default 1 ms.
    #[serde(with = "backstop_core::duration::human")]
    pub min_delay: Duration,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            percentile: 0.95,
            window: 1_000,
            max_ratio: 0.05,
            min_delay: Duration::from_millis(1),
        }
    }
}

impl Validate for RetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_attempts >= 1, "max_attempts", "must be at least 1")?;
        ensure_at_most(
            "max_attempts",
            self.max_attempts.into(),
            MAX_ATTEMPTS.into(),
        )?;
        let b = &self.backoff;
        ensure_duration("backoff.initial", b.initial)?;
        ensure_duration("backoff.max", b.max)?;
        ensure(
            b.initial <= b.max,
            "backoff.initial",
            "must not exceed backoff.max",
        )?;
        ensure(
            b.multiplier.is_finite() && (1.0..=16.0).contains(&b.multiplier),
            "backoff.multiplier",
            "must be between 1 and 16",
        )?;
        let r = &self.budget;
        ensure(
            r.ratio.is_finite() && (0.0..=1_000.0).contains(&r.ratio),
            "budget.ratio",
            "must be between 0 and 1000",
        )?;
        ensure_at_most(
            "budget.min_per_sec",
            r.min_per_sec.into(),
            MAX_BUDGET_COUNT.into(),
        )?;
        ensure_at_most(
            "budget.max_banked",
            r.max_banked.into(),
            MAX_BUDGET_COUNT.into(),
        )?;
        if let Some(t) = self.timeout {
            ensure_duration("timeout", t)?;
        }
        if let Some(t) = self.attempt_timeout {
            ensure_positive_duration("attempt_timeout", t)?;
        }
        ensure_duration("min_attempt_time", self.min_attempt_time)?;
        ensure_duration("max_retry_after", self.max_retry_after)?;
        if let Some(h) = &self.hedge {
            ensure(
                h.percentile > 0.0 && h.percentile < 1.0,
                "hedge.percentile",
                "must be between 0 and 1 (exclusive)",
            )?;
            ensure(h.window >= 10, "hedge.window", "must be at least 10")?;
            ensure_at_most("hedge.window", h.window.into(), MAX_BUDGET_COUNT.into())?;
            ensure(
                h.max_ratio.is_finite() && (0.0..=1.0).contains(&h.max_ratio),
                "hedge.max_ratio",
                "must be between 0 and 1",
            )?;
            ensure_duration("hedge.min_delay", h.min_delay)?;
        }
        Ok(())
    }
}

impl RetryConfig {
    /// Validates the config and builds the shared [`Retry`] handle.
    pub fn build(self) -> Result<Retry, ConfigError> {
        self.validate()?;
        Ok(Retry::from_valid(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_names_its_field() {
        type Breaks = fn(&mut RetryConfig);
        let cases: [(Breaks, &str); 7] = [
            (|c| c.max_attempts = 0, "max_attempts"),
            (|c| c.max_attempts = MAX_ATTEMPTS + 1, "max_attempts"),
            (|c| c.backoff.multiplier = f64::NAN, "backoff.multiplier"),
            (
                |c| c.backoff.initial = Duration::from_secs(60),
                "backoff.initial",
            ),
            (|c| c.budget.ratio = -1.0, "budget.ratio"),
            (
                |c| c.timeout = Some(backstop_core::config::MAX_DURATION * 2),
                "timeout",
            ),
            (
                |c| {
                    c.hedge = Some(HedgeConfig {
                        percentile: 1.0,
                        ..HedgeConfig::default()
                    })
                },
                "hedge.percentile",
            ),
        ];
        for (breaks, field) in cases {
            let mut config = RetryConfig::default();
            breaks(&mut config);
            assert_eq!(config.build().unwrap_err().field(), field);
        }
    }

    #[test]
    fn unknown_fields_are_refused_and_defaults_fill_the_rest() {
        assert!(serde_json::from_str::<RetryConfig>(r#"{"max_atempts": 2}"#).is_err());
        let config: RetryConfig = serde_json::from_str(r#"{"attempt_timeout": "2s"}"#).unwrap();
        assert_eq!(config.attempt_timeout, Some(Duration::from_secs(2)));
        assert_eq!(config.max_attempts, 3);
    }
}
