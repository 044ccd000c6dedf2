//! Predictive scaling settings and the forecaster choice.

use std::time::Duration;

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_count, ensure_duration, ensure_duration_at_most,
};

use crate::forecast::MAX_TREND_WINDOW;
use serde::{Deserialize, Serialize};

use super::{HpaConfig, ensure_nonzero, ensure_positive};

/// The longest `lead_time`: an hour, as AWS predictive scaling's largest buffer.
pub const MAX_LEAD_TIME: Duration = Duration::from_secs(3600);

/// The most forecast steps one decision looks ahead, whatever `lead_time / interval` is.
pub const MAX_LEAD_SAMPLES: usize = 4096;

/// The most forecasts the error is measured over.
pub const MAX_ERROR_WINDOW: usize = 1 << 16;

/// Which forecaster the predictive policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ForecastModel {
    /// Tomorrow looks like today: the value one season ago.
    SeasonalNaive,
    /// Additive Holt-Winters (triple exponential smoothing).
    HoltWinters {
        /// Level smoothing in (0, 1].
        alpha: f64,
        /// Trend smoothing in [0, 1].
        beta: f64,
        /// Seasonal smoothing in [0, 1].
        gamma: f64,
    },
    /// Least-squares line over the last `window` samples, for ramps.
    LinearTrend {
        /// Samples in the fit (2 to [`MAX_TREND_WINDOW`](crate::forecast::MAX_TREND_WINDOW)).
        window: usize,
    },
}

impl Default for ForecastModel {
    fn default() -> Self {
        ForecastModel::HoltWinters {
            alpha: 0.2,
            beta: 0.01,
            gamma: 0.3,
        }
    }
}

/// Forecast-driven scaling layered on the reactive HPA policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictiveConfig {
    /// Name of the demand metric (its total over the workload is forecast).
    pub metric: String,
    /// Demand one replica should carry.
    pub target_per_replica: f64,
    /// The forecaster.
    pub model: ForecastModel,
    /// Time between observations; one forecaster sample each.
    #[serde(with = "backstop_core::duration::human")]
    pub interval: Duration,
    /// Length of the seasonal cycle (default one day).
    #[serde(with = "backstop_core::duration::human")]
    pub season: Duration,
    /// Replica warm-up: capacity is requested this far ahead (at most [`MAX_LEAD_TIME`] and
    /// [`MAX_LEAD_SAMPLES`] intervals).
    #[serde(with = "backstop_core::duration::human")]
    pub lead_time: Duration,
    /// Forecasts act only while the recent weighted absolute percentage error is at most this.
    pub max_error: f64,
    /// How many recent forecasts the error is measured over (at most [`MAX_ERROR_WINDOW`]).
    pub error_window: usize,
    /// The reactive policy whose proposal the forecast can only raise.
    pub reactive: HpaConfig,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        Self {
            metric: "requests_per_second".to_owned(),
            target_per_replica: 10.0,
            model: ForecastModel::default(),
            interval: Duration::from_secs(15),
            season: Duration::from_secs(86_400),
            lead_time: Duration::from_secs(300),
            max_error: 0.25,
            error_window: 40,
            reactive: HpaConfig::default(),
        }
    }
}

impl PredictiveConfig {
    /// Samples per season.
    pub fn season_samples(&self) -> usize {
        steps(self.season, self.interval)
    }

    /// Samples per lead time, from 1 to [`MAX_LEAD_SAMPLES`] (clamped even when the config
    /// was not validated, so no decision loops over an unbounded lead).
    pub fn lead_samples(&self) -> usize {
        steps(self.lead_time, self.interval).clamp(1, MAX_LEAD_SAMPLES)
    }
}

fn steps(span: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        return 0;
    }
    usize::try_from(span.as_nanos() / interval.as_nanos()).unwrap_or(usize::MAX)
}

impl Validate for PredictiveConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.metric.is_empty(), "metric", "must not be empty")?;
        ensure_positive("target_per_replica", self.target_per_replica)?;
        ensure_nonzero("interval", self.interval)?;
        let season = self.season_samples();
        match self.model {
            ForecastModel::SeasonalNaive | ForecastModel::HoltWinters { .. } => ensure(
                (2..=1_000_000).contains(&season),
                "season",
                "must span between 2 and 1,000,000 intervals",
            )?,
            ForecastModel::LinearTrend { window } => {
                ensure_count("model.window", window, 2, MAX_TREND_WINDOW)?;
            }
        }
        if let ForecastModel::HoltWinters { alpha, beta, gamma } = self.model {
            ensure(
                alpha > 0.0 && alpha <= 1.0,
                "model.alpha",
                "must be in (0, 1]",
            )?;
            ensure(
                (0.0..=1.0).contains(&beta),
                "model.beta",
                "must be in [0, 1]",
            )?;
            ensure(
                (0.0..=1.0).contains(&gamma),
                "model.gamma",
                "must be in [0, 1]",
            )?;
        }
        ensure_positive("max_error", self.max_error)?;
        ensure_count("error_window", self.error_window, 1, MAX_ERROR_WINDOW)?;
        ensure_duration("interval", self.interval)?;
        ensure_duration("season", self.season)?;
        ensure_duration_at_most("lead_time", self.lead_time, MAX_LEAD_TIME)?;
        ensure(
            steps(self.lead_time, self.interval) <= MAX_LEAD_SAMPLES,
            "lead_time",
            format!("must span at most {MAX_LEAD_SAMPLES} intervals"),
        )?;
        self.reactive.validate().map_err(|e| e.within("reactive"))
    }
}
