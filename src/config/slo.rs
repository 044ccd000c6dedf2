use backstop_core::config::{ConfigError, Validate, ensure};
use serde::Deserialize;
use std::time::Duration;

/// `[slo]`: the service levels a load run is judged against.
///
/// ```toml
/// [slo]
/// p95_latency = "800ms"
/// max_error_rate = 0.02
/// min_cache_hit_rate = 0.3
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloSection {
    /// The 95th-percentile latency must not exceed this.
    #[serde(with = "backstop_core::duration::human")]
    pub p95_latency: Duration,
    /// At most this fraction of requests may fail (rate-limited requests are not failures).
    pub max_error_rate: f64,
    /// At least this fraction of cacheable requests must be answered from a cache tier.
    pub min_cache_hit_rate: f64,
}

impl Default for SloSection {
    fn default() -> Self {
        Self {
            p95_latency: Duration::from_secs(1),
            max_error_rate: 0.05,
            min_cache_hit_rate: 0.0,
        }
    }
}

impl Validate for SloSection {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            !self.p95_latency.is_zero(),
            "p95_latency",
            "must be greater than zero",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.max_error_rate),
            "max_error_rate",
            "must be between 0 and 1",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.min_cache_hit_rate),
            "min_cache_hit_rate",
            "must be between 0 and 1",
        )
    }
}
