//! Settings of the burst-aware scale-down hold.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_count};
use serde::{Deserialize, Serialize};

use super::ensure_quantile;

/// The most re-burst gaps the hold remembers.
pub const MAX_GAP_SAMPLES: usize = 1024;

/// How long [`BurstHold`](crate::BurstHold) keeps replicas after load drops.
///
/// The hold learns how soon load comes back after a scale-down (the gap from a scale-down to
/// the next scale-up) and keeps the highest recent recommendation for the `quantile` of those
/// gaps plus `margin`: when bursts come back sooner than a replica starts and pays off, keeping
/// it is cheaper than stopping and restarting it. When the gaps are longer than `max_window`,
/// holding would cost more than restarting, and the hold falls back to `min_window` (the HPA's
/// 300 s default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BurstHoldConfig {
    /// The shortest hold (the HPA's scale-down stabilization window by default).
    #[serde(with = "backstop_core::duration::human")]
    pub min_window: Duration,
    /// The longest hold; gaps beyond it are not worth holding for (at most 1 h).
    #[serde(with = "backstop_core::duration::human")]
    pub max_window: Duration,
    /// Which quantile of the recent gaps the hold covers, in [0, 1].
    pub quantile: f64,
    /// Added to the quantile (about a replica's start-up and some slack).
    #[serde(with = "backstop_core::duration::human")]
    pub margin: Duration,
    /// How many recent gaps are kept (1 to [`MAX_GAP_SAMPLES`]).
    pub gap_samples: usize,
}

impl Default for BurstHoldConfig {
    fn default() -> Self {
        Self {
            min_window: Duration::from_secs(300),
            max_window: Duration::from_secs(1800),
            quantile: 0.5,
            margin: Duration::from_secs(600),
            gap_samples: 32,
        }
    }
}

impl Validate for BurstHoldConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.max_window <= Duration::from_secs(3600),
            "max_window",
            "must be at most 1h",
        )?;
        ensure(
            self.min_window <= self.max_window,
            "min_window",
            "must not be greater than max_window",
        )?;
        ensure_quantile("quantile", self.quantile)?;
        ensure(
            self.margin <= Duration::from_secs(3600),
            "margin",
            "must be at most 1h",
        )?;
        ensure_count("gap_samples", self.gap_samples, 1, MAX_GAP_SAMPLES)
    }
}
