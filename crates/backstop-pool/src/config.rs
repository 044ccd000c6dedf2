//! Pool configuration: plain serde structs with HikariCP's defaults, validated at build time.

use std::time::Duration;

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_duration, ensure_positive_duration,
};
use serde::{Deserialize, Serialize};

/// Which idle connection a checkout takes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    /// Most recently returned first: keeps a hot core and lets the rest idle out.
    #[default]
    Lifo,
    /// Least recently returned first: spreads use over every connection.
    Fifo,
}

/// Configuration of one [`Pool`](crate::Pool).
///
/// Defaults follow HikariCP: 30 s to wait for a connection, 10 min idle timeout,
/// 30 min maximum lifetime minus up to 2.5 % jitter, a 500 ms health-check bypass window,
/// leak detection off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most connections open at once (in use plus idle).
    pub max_size: usize,
    /// Idle connections a background task keeps warm.
    pub min_idle: usize,
    /// How long a whole `get()` (waiting, health check and creation) may take before
    /// [`PoolError::Timeout`](crate::PoolError::Timeout), like HikariCP's connectionTimeout.
    #[serde(with = "backstop_core::duration::human")]
    pub wait_timeout: Duration,
    /// How long creating one connection may take.
    #[serde(with = "backstop_core::duration::human")]
    pub create_timeout: Duration,
    /// How long a health check on checkout may take before the connection is discarded.
    #[serde(with = "backstop_core::duration::human")]
    pub recycle_timeout: Duration,
    /// Idle connections above `min_idle` unused this long are closed.
    #[serde(with = "backstop_core::duration::human_option")]
    pub idle_timeout: Option<Duration>,
    /// Connections older than this are closed (at checkout or by the reaper).
    #[serde(with = "backstop_core::duration::human_option")]
    pub max_lifetime: Option<Duration>,
    /// Fraction of `max_lifetime` subtracted at random per connection so a fleet does
    /// not reconnect at once (0.025 = up to 2.5 %).
    pub lifetime_jitter: f64,
    /// A connection used within this window is handed out without a health check.
    #[serde(with = "backstop_core::duration::human")]
    pub health_check_bypass: Duration,
    /// Health-check idle connections this often (off when unset).
    #[serde(with = "backstop_core::duration::human_option")]
    pub keepalive_interval: Option<Duration>,
    /// Warn when a connection is held longer than this (off when unset).
    #[serde(with = "backstop_core::duration::human_option")]
    pub leak_detection_threshold: Option<Duration>,
    /// How often the background task refills, reaps and evaluates resizing.
    #[serde(with = "backstop_core::duration::human")]
    pub housekeeping_interval: Duration,
    /// Most connections the background filler creates at once.
    pub fill_concurrency: usize,
    /// Order in which idle connections are handed out.
    pub queue_mode: QueueMode,
    /// Optional policy that resizes `max_size` from observed waits and concurrency.
    pub adaptive: Option<AdaptivePoolConfig>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 10,
            min_idle: 0,
            wait_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(30),
            recycle_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            lifetime_jitter: 0.025,
            health_check_bypass: Duration::from_millis(500),
            keepalive_interval: None,
            leak_detection_threshold: None,
            housekeeping_interval: Duration::from_secs(1),
            fill_concurrency: 2,
            queue_mode: QueueMode::Lifo,
            adaptive: None,
        }
    }
}

impl PoolConfig {
    /// Starts a builder from the defaults.
    pub fn builder() -> PoolConfigBuilder {
        PoolConfigBuilder {
            config: Self::default(),
        }
    }

    /// Whether anything needs the background housekeeping task.
    pub(crate) fn needs_housekeeping(&self) -> bool {
        self.min_idle > 0
            || self.idle_timeout.is_some()
            || self.max_lifetime.is_some()
            || self.keepalive_interval.is_some()
            || self.adaptive.is_some()
    }
}

impl Validate for PoolConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_size >= 1, "max_size", "must be at least 1")?;
        ensure_at_most("max_size", self.max_size as u64, MAX_POOL_SIZE as u64)?;
        for (field, value) in [
            ("wait_timeout", self.wait_timeout),
            ("create_timeout", self.create_timeout),
            ("recycle_timeout", self.recycle_timeout),
            ("housekeeping_interval", self.housekeeping_interval),
        ] {
            ensure_positive_duration(field, value)?;
        }
        for (field, value) in [
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("keepalive_interval", self.keepalive_interval),
            ("leak_detection_threshold", self.leak_detection_threshold),
        ] {
            if let Some(value) = value {
                ensure_positive_duration(field, value)?;
            }
        }
        ensure_duration("health_check_bypass", self.health_check_bypass)?;
        ensure(
            self.min_idle <= self.max_size,
            "min_idle",
            "must not exceed max_size",
        )?;
        ensure(
            (0.0..=0.5).contains(&self.lifetime_jitter),
            "lifetime_jitter",
            "must be between 0 and 0.5",
        )?;
        ensure(
            self.fill_concurrency >= 1,
            "fill_concurrency",
            "must be at least 1",
        )?;
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate().map_err(|e| e.within("adaptive"))?;
            ensure(
                (adaptive.min_size..=adaptive.max_size).contains(&self.max_size),
                "max_size",
                "must lie within adaptive.min_size..=adaptive.max_size",
            )?;
            ensure(
                self.min_idle <= adaptive.min_size,
                "min_idle",
                "must not exceed adaptive.min_size",
            )?;
        }
        Ok(())
    }
}

/// The largest `max_size` a pool (or its adaptive policy) may be configured with: 2^16.
/// Larger values are a [`ConfigError`] naming the field; every duration is at most
/// [`MAX_DURATION`](backstop_core::config::MAX_DURATION).
pub const MAX_POOL_SIZE: usize = 1 << 16;

/// Bounds and thresholds for adaptive sizing of `max_size`.
///
/// Every `evaluate_every` the policy looks at the window just ended: when the p95 wait for
/// a connection exceeded `target_wait` it grows by `step`; when peak concurrency stayed
/// below `shrink_below` of the current size and nobody waited long, it shrinks toward
/// the peak. Sizes stay within `min_size..=max_size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptivePoolConfig {
    /// Smallest `max_size` the policy may set.
    pub min_size: usize,
    /// Largest `max_size` the policy may set.
    pub max_size: usize,
    /// p95 wait above which the pool grows.
    #[serde(with = "backstop_core::duration::human")]
    pub target_wait: Duration,
    /// Length of one evaluation window.
    #[serde(with = "backstop_core::duration::human")]
    pub evaluate_every: Duration,
    /// Connections added per grow decision.
    pub step: usize,
    /// Peak utilisation below which the pool shrinks (0.5 = half the size was never used).
    pub shrink_below: f64,
}

impl Default for AdaptivePoolConfig {
    fn default() -> Self {
        Self {
            min_size: 2,
            max_size: 50,
            target_wait: Duration::from_millis(20),
            evaluate_every: Duration::from_secs(10),
            step: 2,
            shrink_below: 0.5,
        }
    }
}

impl Validate for AdaptivePoolConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.min_size >= 1, "min_size", "must be at least 1")?;
        ensure_at_most("max_size", self.max_size as u64, MAX_POOL_SIZE as u64)?;
        ensure_positive_duration("target_wait", self.target_wait)?;
        ensure_positive_duration("evaluate_every", self.evaluate_every)?;
        ensure(
            self.min_size <= self.max_size,
            "min_size",
            "must not exceed max_size",
        )?;
        ensure(self.step >= 1, "step", "must be at least 1")?;
        ensure(
            self.shrink_below > 0.0 && self.shrink_below < 1.0,
            "shrink_below",
            "must be between 0 and 1 (exclusive)",
        )
    }
}

/// Builder for [`PoolConfig`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct PoolConfigBuilder {
    config: PoolConfig,
}

impl PoolConfigBuilder {
    backstop_core::config_setters! {
        PoolConfig;
        max_size: usize,
        min_idle: usize,
        wait_timeout: Duration,
        create_timeout: Duration,
        recycle_timeout: Duration,
        /// See [`PoolConfig::idle_timeout`] (`None` disables).
        idle_timeout: Option<Duration>,
        /// See [`PoolConfig::max_lifetime`] (`None` disables).
        max_lifetime: Option<Duration>,
        lifetime_jitter: f64,
        health_check_bypass: Duration,
        keepalive_interval: Some(Duration),
        leak_detection_threshold: Some(Duration),
        housekeeping_interval: Duration,
        fill_concurrency: usize,
        queue_mode: QueueMode,
        /// Enables adaptive sizing; see [`PoolConfig::adaptive`].
        adaptive: Some(AdaptivePoolConfig),
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<PoolConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_hikari() {
        let config = PoolConfig::default();
        config.validate().unwrap();
        assert_eq!(config.wait_timeout, Duration::from_secs(30));
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(config.max_lifetime, Some(Duration::from_secs(1800)));
        assert_eq!(config.leak_detection_threshold, None);
    }

    /// The field named by the error that refuses `builder`'s config.
    fn refused_field(builder: PoolConfigBuilder) -> String {
        builder.build().unwrap_err().field().to_owned()
    }

    #[test]
    fn rejects_min_idle_above_max_size() {
        let builder = PoolConfig::builder().max_size(2).min_idle(3);
        assert_eq!(refused_field(builder), "min_idle");
    }

    #[test]
    fn rejects_zero_timeouts_and_bad_adaptive_bounds() {
        let builder = PoolConfig::builder().wait_timeout(Duration::ZERO);
        assert_eq!(refused_field(builder), "wait_timeout");
        let builder = PoolConfig::builder().adaptive(AdaptivePoolConfig {
            min_size: 5,
            max_size: 4,
            ..Default::default()
        });
        assert_eq!(refused_field(builder), "adaptive.min_size");
        let builder = PoolConfig::builder()
            .max_size(100)
            .adaptive(AdaptivePoolConfig::default());
        assert_eq!(refused_field(builder), "max_size");
    }

    #[test]
    fn deserializes_human_durations() {
        let config: PoolConfig = serde_json::from_str(
            r#"{"max_size": 4, "min_idle": 1, "wait_timeout": "250ms", "idle_timeout": null,
                "leak_detection_threshold": "2s", "queue_mode": "fifo"}"#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.wait_timeout, Duration::from_millis(250));
        assert_eq!(config.idle_timeout, None);
        assert_eq!(
            config.leak_detection_threshold,
            Some(Duration::from_secs(2))
        );
        assert_eq!(config.queue_mode, QueueMode::Fifo);
        assert!(serde_json::from_str::<PoolConfig>(r#"{"max_sise": 4}"#).is_err());
    }
}
