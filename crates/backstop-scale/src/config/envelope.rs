//! Settings of the burst-envelope headroom and the start-up-aware scale-up cap.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_duration_at_most};
use serde::{Deserialize, Serialize};

use super::{ensure_nonzero, ensure_optional_name, ensure_positive, ensure_quantile};

/// The most demand samples [`BurstEnvelope`](crate::BurstEnvelope) keeps for its quantile (a
/// day of 1.3 s evaluations); older ones are dropped first.
pub const MAX_ENVELOPE_SAMPLES: usize = 1 << 16;

/// The longest `lookback`, `startup` and `drain_time`.
const MAX_SPAN: Duration = Duration::from_secs(7 * 86_400);

/// How a rise of the demand becomes [`BurstEnvelope`](crate::BurstEnvelope)'s headroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadroomScale {
    /// In proportion to the demand: each rise is kept as a share of the demand it rose from
    /// (a demand below a tenth of one replica's `target_per_replica` counts as that much),
    /// and the headroom is that share of the demand now. Bursts of request traffic grow with
    /// the traffic, so a share learnt over a day covers a quiet night and a busy afternoon alike,
    /// without holding the afternoon's headroom all night. The default.
    #[default]
    Proportional,
    /// In demand units: the headroom is the rise itself, whatever the demand now.
    Absolute,
}

/// How [`BurstEnvelope`](crate::BurstEnvelope) sizes its headroom and caps a scale-up.
///
/// Headroom: the demand can rise by `h` within one replica start-up, where `h` comes from the
/// `quantile` of the rises seen over the last `lookback` (each rise is the demand now minus its
/// lowest value over the preceding `startup`), as a share of the demand or in demand units
/// ([`HeadroomScale`]). The policy keeps at least `ceil((demand + h) / target_per_replica)`
/// replicas, so a burst the recent past makes likely finds capacity already serving; a quiet
/// `lookback` has no rises and no headroom. While the wrapped policy scales on a forecast it
/// trusts ([`Policy::forecast_trusted`](crate::Policy::forecast_trusted)), the forecast
/// covers what is coming and no headroom is held.
///
/// Cap: replicas asked for now serve only after `startup`. A reactive scale-up is trimmed to
/// what will be needed then: the demand plus the headroom, plus the backlog (the
/// `backlog_metric`'s total, grown by the demand the ready replicas cannot take over the
/// start-up) drained over `drain_time`, all at `target_per_replica`. A backlog-per-replica
/// metric otherwise asks for one replica per few queued requests, and those replicas arrive
/// after the backlog has gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BurstEnvelopeConfig {
    /// Name of the demand metric (its total over the workload, e.g. requests per second).
    pub metric: String,
    /// Demand one replica should carry.
    pub target_per_replica: f64,
    /// Name of the backlog metric (queued plus in-service work, in the demand's units times
    /// seconds); `None` disables the cap.
    pub backlog_metric: Option<String>,
    /// Replica start-up: the span a rise is measured over and the time before new replicas
    /// serve (at most 7 days).
    #[serde(with = "backstop_core::duration::human")]
    pub startup: Duration,
    /// The backlog present when new replicas are ready is planned to drain over this long
    /// (greater than 0, at most 7 days).
    #[serde(with = "backstop_core::duration::human")]
    pub drain_time: Duration,
    /// How far back the rises are kept (at most 7 days and [`MAX_ENVELOPE_SAMPLES`] samples).
    #[serde(with = "backstop_core::duration::human")]
    pub lookback: Duration,
    /// Which quantile of the recent rises the headroom covers, in [0, 1].
    pub quantile: f64,
    /// Whether the headroom is a share of the demand or a fixed amount.
    pub scale: HeadroomScale,
    /// The headroom never raises the count above this.
    pub max_replicas: u32,
}

impl Default for BurstEnvelopeConfig {
    fn default() -> Self {
        Self {
            metric: "requests_per_second".to_owned(),
            target_per_replica: 10.0,
            backlog_metric: Some("queue_length".to_owned()),
            startup: Duration::from_secs(180),
            drain_time: Duration::from_secs(90),
            lookback: Duration::from_secs(24 * 3600),
            quantile: 0.99,
            scale: HeadroomScale::Proportional,
            max_replicas: 100,
        }
    }
}

impl BurstEnvelopeConfig {
    backstop_core::config_setters! {
        self;
        /// Sets the demand metric and the demand one replica should carry.
        with_metric(metric: impl Into<String>, target_per_replica: f64) {
            metric = metric.into(),
            target_per_replica = target_per_replica
        }
        /// Sets the backlog metric (`None` disables the start-up-aware cap).
        with_backlog_metric(metric: Option<String>) { backlog_metric = metric }
        /// Sets the replica start-up time.
        with_startup(startup: Duration) { startup = startup }
        /// Sets how a rise becomes headroom.
        with_scale(scale: HeadroomScale) { scale = scale }
        /// Sets the largest count the headroom asks for.
        with_max_replicas(max: u32) { max_replicas = max }
    }
}

impl Validate for BurstEnvelopeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.metric.is_empty(), "metric", "must not be empty")?;
        ensure_optional_name("backlog_metric", self.backlog_metric.as_deref())?;
        ensure_positive("target_per_replica", self.target_per_replica)?;
        ensure_duration_at_most("startup", self.startup, MAX_SPAN)?;
        ensure_nonzero("drain_time", self.drain_time)?;
        ensure_duration_at_most("drain_time", self.drain_time, MAX_SPAN)?;
        ensure_duration_at_most("lookback", self.lookback, MAX_SPAN)?;
        ensure_quantile("quantile", self.quantile)?;
        ensure(self.max_replicas >= 1, "max_replicas", "must be at least 1")
    }
}
