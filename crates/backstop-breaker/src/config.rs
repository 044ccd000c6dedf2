//! The breaker's configuration: plain data with serde, defaults and validation.

use std::time::Duration;

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_duration, ensure_positive_duration,
};
use serde::{Deserialize, Serialize};

/// The largest count window: 2^20 calls (one byte each, so at most 1 MiB per breaker).
pub const MAX_COUNT_WINDOW: u32 = 1 << 20;

/// The longest time window: one hour of one-second buckets (about 84 KiB per breaker).
pub const MAX_TIME_WINDOW_SECONDS: u32 = 3_600;

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BreakerWindow {
    /// The last `size` recorded calls (lock-free ring of outcomes).
    Count {
        /// How many of the most recent calls are kept, from 1 to [`MAX_COUNT_WINDOW`].
        size: u32,
    },
    /// The calls of the last `seconds` seconds, in one-second buckets.
    Time {
        /// How many one-second buckets are kept, from 1 to [`MAX_TIME_WINDOW_SECONDS`].
        seconds: u32,
    },
}

impl Default for BreakerWindow {
    fn default() -> Self {
        Self::Count { size: 100 }
    }
}

/// Exponential growth of the open period after each failed probe round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Factor applied to the previous open period after a failed probe round (≥ 1).
    pub multiplier: f64,
    /// The open period never exceeds this.
    #[serde(with = "backstop_core::duration::human")]
    pub max: Duration,
}

/// What a call whose future was dropped before completing counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledCalls {
    /// Neither success nor failure: the call is forgotten and its half-open permit returned.
    #[default]
    Ignore,
    /// A cancelled call counts as a failure (the caller gave up, e.g. on a timeout).
    Failure,
    /// A cancelled call counts as a success.
    Success,
}

/// Configuration of one circuit breaker. Defaults follow resilience4j's.
///
/// Bounds checked by validation: the window holds at most [`MAX_COUNT_WINDOW`] calls or
/// [`MAX_TIME_WINDOW_SECONDS`] seconds, and every duration is at most
/// [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (one year).
///
/// ```
/// use backstop_breaker::BreakerConfig;
///
/// let config: BreakerConfig = serde_json::from_str(r#"{
///     "window": { "kind": "count", "size": 20 },
///     "minimum_calls": 10,
///     "failure_rate_threshold": 50.0,
///     "slow_call_duration": "2s",
///     "wait_in_open": "30s",
///     "backoff": { "multiplier": 2.0, "max": "5m" }
/// }"#).unwrap();
/// assert_eq!(config.permitted_calls_in_half_open, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Which calls the rates are computed over. Default: the last 100 calls.
    pub window: BreakerWindow,
    /// No rate decision is taken before the window holds this many calls. Default 100.
    pub minimum_calls: u32,
    /// Percentage of failed calls, in (0, 100], at or above which the circuit opens. Default 50.
    pub failure_rate_threshold: f64,
    /// Percentage of slow calls, in (0, 100], at or above which the circuit opens. Default 100.
    pub slow_call_rate_threshold: f64,
    /// Calls at least this long count as slow. `None` (the default) turns slow-call
    /// tracking off, which also spares the closed path its two clock reads.
    #[serde(with = "backstop_core::duration::human_option")]
    pub slow_call_duration: Option<Duration>,
    /// Also open after this many consecutive failures, whatever the rate (the simple mode
    /// of other breakers, e.g. `Some(5)`). Default `None`.
    pub consecutive_failures: Option<u32>,
    /// How long the circuit stays open before probing. Default 60 s.
    #[serde(with = "backstop_core::duration::human")]
    pub wait_in_open: Duration,
    /// Growth of the open period after each failed probe round. Default `None` (constant).
    pub backoff: Option<Backoff>,
    /// Exactly this many probe calls are admitted in half-open. Default 10.
    pub permitted_calls_in_half_open: u32,
    /// Reopen if the probe round has not finished within this time, so a stuck probe
    /// cannot wedge the breaker in half-open. Default `None` (wait for the probes).
    #[serde(with = "backstop_core::duration::human_option")]
    pub max_wait_in_half_open: Option<Duration>,
    /// When true, reading the state (`state()`, `stats()`) also performs a due
    /// open → half-open transition, so observers see it on time without a call arriving.
    /// When false the transition happens lazily on the next call. Default false.
    pub automatic_transition: bool,
    /// What a dropped (cancelled) call counts as. Default: ignored.
    pub cancelled_calls: CancelledCalls,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: BreakerWindow::default(),
            minimum_calls: 100,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: None,
            consecutive_failures: None,
            wait_in_open: Duration::from_secs(60),
            backoff: None,
            permitted_calls_in_half_open: 10,
            max_wait_in_half_open: None,
            automatic_transition: false,
            cancelled_calls: CancelledCalls::Ignore,
        }
    }
}

fn is_rate(value: f64) -> bool {
    value > 0.0 && value <= 100.0
}

impl Validate for BreakerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.window {
            BreakerWindow::Count { size } => {
                ensure(size >= 1, "window.size", "must be at least 1")?;
                ensure_at_most("window.size", u64::from(size), u64::from(MAX_COUNT_WINDOW))?;
            }
            BreakerWindow::Time { seconds } => {
                ensure(seconds >= 1, "window.seconds", "must be at least 1")?;
                ensure_at_most(
                    "window.seconds",
                    u64::from(seconds),
                    u64::from(MAX_TIME_WINDOW_SECONDS),
                )?;
            }
        }
        ensure(
            self.minimum_calls >= 1,
            "minimum_calls",
            "must be at least 1",
        )?;
        ensure(
            is_rate(self.failure_rate_threshold),
            "failure_rate_threshold",
            "must be a percentage in (0, 100]",
        )?;
        ensure(
            is_rate(self.slow_call_rate_threshold),
            "slow_call_rate_threshold",
            "must be a percentage in (0, 100]",
        )?;
        if let Some(slow) = self.slow_call_duration {
            ensure_positive_duration("slow_call_duration", slow)?;
        }
        if let Some(n) = self.consecutive_failures {
            ensure(n >= 1, "consecutive_failures", "must be at least 1")?;
        }
        ensure_positive_duration("wait_in_open", self.wait_in_open)?;
        if let Some(backoff) = self.backoff {
            ensure(
                backoff.multiplier.is_finite() && backoff.multiplier >= 1.0,
                "backoff.multiplier",
                "must be a finite number of at least 1",
            )?;
            ensure_duration("backoff.max", backoff.max)?;
            ensure(
                backoff.max >= self.wait_in_open,
                "backoff.max",
                "must be at least `wait_in_open`",
            )?;
        }
        ensure(
            self.permitted_calls_in_half_open >= 1,
            "permitted_calls_in_half_open",
            "must be at least 1",
        )?;
        if let Some(wait) = self.max_wait_in_half_open {
            ensure_positive_duration("max_wait_in_half_open", wait)?;
        }
        Ok(())
    }
}

impl BreakerConfig {
    /// The open period after `failed_rounds` consecutive failed probe rounds.
    pub(crate) fn open_period(&self, failed_rounds: u32) -> Duration {
        match self.backoff {
            None => self.wait_in_open,
            Some(backoff) => {
                let factor = backoff.multiplier.powi(failed_rounds.min(1024) as i32);
                let secs = self.wait_in_open.as_secs_f64() * factor;
                if !secs.is_finite() || secs >= backoff.max.as_secs_f64() {
                    backoff.max
                } else {
                    Duration::from_secs_f64(secs)
                }
            }
        }
    }
}
