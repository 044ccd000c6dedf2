use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure_count, ensure_positive_duration};
use serde::{Deserialize, Serialize};

/// The most results a [`DedupWindow`](crate::DedupWindow) may be configured to remember
/// (`max_entries`): 2^24.
pub const MAX_WINDOW_ENTRIES: usize = 1 << 24;

/// Configuration of a [`DedupWindow`](crate::DedupWindow).
///
/// Durations are at most [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (a year) and `max_entries` at most
/// [`MAX_WINDOW_ENTRIES`]; larger values are a [`ConfigError`] naming the field.
///
/// Deserializes from e.g. `{ "ttl": "10m", "max_entries": 10000 }`; missing fields take
/// their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupWindowConfig {
    /// How long a completed result is remembered. Default 10 minutes, the default
    /// duplicate-detection window of Azure Service Bus.
    #[serde(with = "backstop_core::duration::human")]
    pub ttl: Duration,
    /// Most results remembered at once; the oldest is forgotten first. Default 10,000.
    pub max_entries: usize,
    /// Whether work errors are remembered too (panics never are). Default `false`: a
    /// retry after a failure runs again.
    pub cache_errors: bool,
    /// How long a caller that joins an in-flight execution waits before giving up.
    /// Default none (wait for the result).
    #[serde(with = "backstop_core::duration::human_option")]
    pub follower_timeout: Option<Duration>,
}

impl Default for DedupWindowConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            max_entries: 10_000,
            cache_errors: false,
            follower_timeout: None,
        }
    }
}

impl Validate for DedupWindowConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_positive_duration("ttl", self.ttl)?;
        ensure_count("max_entries", self.max_entries, 1, MAX_WINDOW_ENTRIES)?;
        if let Some(timeout) = self.follower_timeout {
            ensure_positive_duration("follower_timeout", timeout)?;
        }
        Ok(())
    }
}

impl DedupWindowConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> DedupWindowConfigBuilder {
        DedupWindowConfigBuilder {
            config: Self::default(),
        }
    }
}

/// Builds a validated [`DedupWindowConfig`].
#[derive(Debug, Clone)]
pub struct DedupWindowConfigBuilder {
    config: DedupWindowConfig,
}

impl DedupWindowConfigBuilder {
    backstop_core::config_setters! {
        DedupWindowConfig;
        ttl: Duration,
        max_entries: usize,
        cache_errors: bool,
        follower_timeout: Some(Duration),
    }

    /// The configuration, or the first rule it breaks.
    pub fn build(self) -> Result<DedupWindowConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
