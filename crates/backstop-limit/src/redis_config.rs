//! The Redis-backed limiter as written in configuration.

use crate::distributed::{FailurePolicy, RedisRateLimiter, TimeSource};
use crate::quota::{Quota, QuotaConfig};
use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_count, ensure_duration_at_most,
};
use serde::Deserialize;
use std::time::Duration;

/// What the limiter does when Redis fails, as written in configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Admit: availability over strictness.
    #[default]
    Open,
    /// Refuse: strictness over availability.
    Closed,
    /// Enforce the same quotas per process until Redis returns.
    Local,
}

/// Where the script reads the time, as written in configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSourceConfig {
    /// Redis `TIME`.
    #[default]
    Server,
    /// The client's wall clock.
    Client,
}

/// A [`RedisRateLimiter`] as configuration:
/// `{ prefix = "tpm", quotas = [{ rate = 100000, period = "1m" }], timeout = "50ms", on_failure = "local" }`.
///
/// ```
/// use backstop_limit::RedisLimitConfig;
///
/// let config: RedisLimitConfig = serde_json::from_str(
///     r#"{"prefix":"rpm","quotas":[{"rate":60,"period":"1m"},{"rate":1000,"period":"1h"}],
///         "timeout":"20ms","on_failure":"local"}"#,
/// )
/// .unwrap();
/// let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
/// let limiter = config.build(client).unwrap();
/// assert_eq!(limiter.redis_key("ann", 1), "rpm:{ann}:1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisLimitConfig {
    /// The prefix of every Redis key the limiter writes.
    pub prefix: String,
    /// Every quota a key is held to, all or none; at least one.
    pub quotas: Vec<QuotaConfig>,
    /// The bound on one decision, connection included, before `on_failure` applies.
    #[serde(with = "backstop_core::duration::human")]
    pub timeout: Duration,
    /// What to do when Redis fails or times out.
    pub on_failure: FailureMode,
    /// With `on_failure = "local"`: the most keys the in-process fallback holds during an
    /// outage (at most [`RedisLimitConfig::MAX_LOCAL_KEYS`]).
    pub local_max_keys: usize,
    /// Where the script reads the time.
    pub time_source: TimeSourceConfig,
}

impl Default for RedisLimitConfig {
    fn default() -> Self {
        Self {
            prefix: "backstop:limit".to_string(),
            quotas: vec![QuotaConfig::default()],
            timeout: Duration::from_millis(50),
            on_failure: FailureMode::Open,
            local_max_keys: FailurePolicy::DEFAULT_LOCAL_MAX_KEYS,
            time_source: TimeSourceConfig::Server,
        }
    }
}

impl RedisLimitConfig {
    /// The longest per-decision `timeout`: a rate-limit decision slower than this is an
    /// outage, and the failure policy should decide.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
    /// The most keys `local_max_keys` accepts: 2^24.
    pub const MAX_LOCAL_KEYS: usize = 1 << 24;
    /// The longest `prefix`, in bytes.
    pub const MAX_PREFIX_LEN: usize = 256;

    backstop_core::config_setters! {
        self;
        /// Sets the key prefix.
        prefix(prefix: impl Into<String>) { prefix = prefix.into() }
        /// Replaces the quotas.
        quotas: Vec<QuotaConfig>,
        /// Sets the per-decision timeout.
        timeout: Duration,
        /// Sets the failure policy.
        on_failure: FailureMode,
        /// Sets the time source.
        time_source: TimeSourceConfig,
    }

    fn build_quotas(&self) -> Result<Vec<Quota>, ConfigError> {
        ensure(
            !self.quotas.is_empty(),
            "quotas",
            "must hold at least one quota",
        )?;
        self.quotas
            .iter()
            .enumerate()
            .map(|(i, q)| q.build().map_err(|e| e.within(&format!("quotas[{i}]"))))
            .collect()
    }

    /// Validates and builds the limiter on `redis` (a
    /// [`RedisConnection`](backstop_redis::RedisConnection) for any topology, or a
    /// `redis::Client` for one server); it connects on the first check.
    pub fn build(
        &self,
        redis: impl Into<backstop_redis::RedisConnection>,
    ) -> Result<RedisRateLimiter, ConfigError> {
        self.validate()?;
        let quotas = self.build_quotas()?;
        let failure = match self.on_failure {
            FailureMode::Open => FailurePolicy::FailOpen,
            FailureMode::Closed => FailurePolicy::FailClosed,
            FailureMode::Local => FailurePolicy::local_with_max_keys(&quotas, self.local_max_keys)?,
        };
        let time = match self.time_source {
            TimeSourceConfig::Server => TimeSource::Server,
            TimeSourceConfig::Client => TimeSource::Client,
        };
        Ok(RedisRateLimiter::new(redis, &self.prefix, &quotas)?
            .with_timeout(self.timeout)
            .with_failure_policy(failure)
            .with_time_source(time))
    }
}

impl Validate for RedisLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.prefix.is_empty(), "prefix", "must not be empty")?;
        ensure_at_most(
            "prefix",
            self.prefix.len() as u64,
            Self::MAX_PREFIX_LEN as u64,
        )?;
        // Glob characters would make the prefix match other applications' keys, and
        // braces would move the hash tag off the user key.
        ensure(
            !self.prefix.contains(['*', '?', '[', ']', '{', '}']),
            "prefix",
            "must not contain glob characters or braces",
        )?;
        ensure(
            !self.timeout.is_zero(),
            "timeout",
            "must be greater than zero",
        )?;
        ensure_duration_at_most("timeout", self.timeout, Self::MAX_TIMEOUT)?;
        ensure_count(
            "local_max_keys",
            self.local_max_keys,
            1,
            Self::MAX_LOCAL_KEYS,
        )?;
        self.build_quotas().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> redis::Client {
        redis::Client::open("redis://127.0.0.1:1").unwrap()
    }

    #[test]
    fn reads_human_durations_and_builds() {
        let config: RedisLimitConfig = serde_json::from_str(
            r#"{"prefix":"tpm","quotas":[{"rate":100000,"period":"1m","burst":20000}],
                "timeout":"20ms","on_failure":"closed","time_source":"client"}"#,
        )
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(20));
        assert_eq!(config.on_failure, FailureMode::Closed);
        let limiter = config.build(client()).unwrap();
        assert_eq!(limiter.redis_key("ann", 0), "tpm:{ann}:0");
        assert!(RedisLimitConfig::default().build(client()).is_ok());
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |c: RedisLimitConfig| c.validate().unwrap_err().field().to_string();
        assert_eq!(field(RedisLimitConfig::default().prefix("")), "prefix");
        assert_eq!(
            field(RedisLimitConfig::default().timeout(Duration::ZERO)),
            "timeout"
        );
        assert_eq!(field(RedisLimitConfig::default().quotas(vec![])), "quotas");
        assert_eq!(field(RedisLimitConfig::default().prefix("app*")), "prefix");
        assert_eq!(field(RedisLimitConfig::default().prefix("a{b}")), "prefix");
        assert_eq!(
            field(RedisLimitConfig::default().timeout(Duration::from_secs(86_400 * 365 * 100))),
            "timeout"
        );
        let huge_cap = RedisLimitConfig {
            local_max_keys: 1 << 40,
            ..RedisLimitConfig::default()
        };
        assert_eq!(field(huge_cap), "local_max_keys");
        let zero_rate = QuotaConfig {
            rate: 0,
            ..QuotaConfig::default()
        };
        assert_eq!(
            field(RedisLimitConfig::default().quotas(vec![QuotaConfig::default(), zero_rate])),
            "quotas[1].rate"
        );
        assert!(
            serde_json::from_str::<RedisLimitConfig>(r#"{"timeout":"soon"}"#).is_err(),
            "a malformed duration is a deserialization error"
        );
    }
}
