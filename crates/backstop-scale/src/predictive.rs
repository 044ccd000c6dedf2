//! Forecast-driven scaling: scale ahead of demand by the warm-up lead time, gated by accuracy.

use std::collections::VecDeque;

use backstop_core::config::{ConfigError, Validate};
use serde::Serialize;

use crate::config::PredictiveConfig;
use crate::decision::{Decision, Policy, Reason};
use crate::forecast::{Forecaster, build};
use crate::hpa::{PolicyStats, TargetTracking};
use crate::observation::Observation;
use crate::recent::push_recent;

/// Predictive scaling combined with the reactive HPA policy by taking the larger count.
///
/// Every observation feeds the demand metric's total to the forecaster. The policy forecasts
/// the peak demand over the next `lead_time` (the replicas' warm-up), so capacity is ready when
/// the load arrives, and acts only while its recent forecasts were accurate: the weighted
/// absolute percentage error of the forecasts made `lead_time` ago, over the last
/// `error_window` observations, must be at most `max_error`. The forecast can only raise the
/// reactive proposal, never lower it, so a bad forecast costs money, never availability.
///
/// ```
/// use std::time::Duration;
/// use backstop_scale::{ForecastModel, MetricSample, Observation, Policy, PredictiveConfig,
///     PredictivePolicy, Reading, Target};
///
/// let config = PredictiveConfig {
///     model: ForecastModel::SeasonalNaive,
///     season: Duration::from_secs(600),
///     ..PredictiveConfig::default()
/// };
/// let mut policy = PredictivePolicy::new(config).unwrap();
/// let obs = Observation::new(Duration::ZERO, 2, 2).metric(MetricSample::new(
///     "requests_per_second", Target::AverageValue(10.0), Reading::Total(20.0)));
/// // No history yet: the reactive policy decides alone.
/// assert_eq!(policy.decide(&obs).desired, 2);
/// ```
pub struct PredictivePolicy {
    config: PredictiveConfig,
    reactive: TargetTracking,
    forecaster: Box<dyn Forecaster>,
    lead: usize,
    /// Forecasts for the coming observations; the front one is for the next observation.
    pending: VecDeque<Option<f64>>,
    errors: VecDeque<(f64, f64)>,
    stats: PredictiveStats,
}

/// The predictive policy's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PredictiveStats {
    /// Counters of the combined decisions.
    pub policy: PolicyStats,
    /// Decisions in which the forecast raised the reactive proposal.
    pub predicted: u64,
    /// The current weighted absolute percentage error, once measured.
    pub forecast_error: Option<f64>,
    /// Whether forecasts are currently trusted.
    pub confident: bool,
}

impl std::fmt::Debug for PredictivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictivePolicy")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl PredictivePolicy {
    /// Validates the config and builds the policy.
    pub fn new(config: PredictiveConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let reactive = TargetTracking::new(config.reactive.clone())?;
        let forecaster = build(config.model, config.season_samples());
        let lead = config.lead_samples();
        Ok(Self {
            reactive,
            forecaster,
            lead,
            pending: VecDeque::new(),
            errors: VecDeque::new(),
            stats: PredictiveStats::default(),
            config,
        })
    }

    /// Counters, forecast error and confidence.
    pub fn stats(&self) -> PredictiveStats {
        self.stats.clone()
    }

    fn forecast_error(&self) -> Option<f64> {
        if self.errors.len() < self.config.error_window {
            return None;
        }
        let (abs, actual) = self
            .errors
            .iter()
            .fold((0.0, 0.0), |(a, b), (e, y)| (a + e, b + y));
        Some(if actual > 0.0 {
            abs / actual
        } else if abs > 0.0 {
            f64::INFINITY
        } else {
            0.0
        })
    }

    /// Scores the forecast made `lead` observations ago and feeds the sample.
    fn learn(&mut self, demand: f64) {
        if self.pending.len() >= self.lead
            && let Some(Some(predicted)) = self.pending.pop_front()
        {
            push_recent(
                &mut self.errors,
                self.config.error_window,
                ((predicted - demand).abs(), demand.abs()),
            );
        }
        self.forecaster.observe(demand);
        self.pending.push_back(self.forecaster.forecast(self.lead));
    }

    fn evaluate(&self, obs: &Observation) -> Decision {
        let reactive = self.reactive.recommend(obs);
        let demand = obs
            .find(&self.config.metric)
            .and_then(|m| m.total(obs.ready_replicas));
        if demand.is_none() {
            return reactive;
        }
        let error = self.forecast_error();
        let confident = error.is_some_and(|e| e <= self.config.max_error);
        // The forecaster has not seen this observation yet (recommending changes nothing), so
        // the coming lead time is steps 2..=lead+1 after its last sample.
        let peak = self
            .forecaster
            .forecast_peak(2, self.lead.saturating_add(1));
        let Some(peak) = peak.filter(|_| confident) else {
            return reactive;
        };
        let (min, max) = (
            self.config.reactive.min_replicas,
            self.config.reactive.max_replicas,
        );
        let needed = (peak.max(0.0) / self.config.target_per_replica)
            .ceil()
            .min(f64::from(max)) as u32;
        let predicted = needed.clamp(min, max);
        if predicted <= reactive.desired || reactive.reason == Reason::Cooldown {
            return reactive;
        }
        Decision {
            desired: predicted,
            reason: Reason::Predicted,
            ..reactive
        }
    }

    /// Records what every evaluation records whether or not its decision was applied.
    fn observe(&mut self, obs: &Observation) {
        let demand = obs
            .find(&self.config.metric)
            .and_then(|m| m.total(obs.ready_replicas));
        if let Some(demand) = demand {
            self.learn(demand);
            let error = self.forecast_error();
            let confident = error.is_some_and(|e| e <= self.config.max_error);
            if confident != self.stats.confident {
                tracing::info!(confident, error = ?error, "predictive confidence changed");
            }
            self.stats.forecast_error = error;
            self.stats.confident = confident;
        }
    }
}

impl Policy for PredictivePolicy {
    fn recommend(&self, obs: &Observation) -> Decision {
        self.evaluate(obs)
    }

    fn forecast_trusted(&self) -> bool {
        self.forecast_error()
            .is_some_and(|e| e <= self.config.max_error)
    }

    fn commit(&mut self, obs: &Observation, decision: &Decision) {
        self.observe(obs);
        if decision.reason == Reason::Predicted {
            self.stats.predicted += 1;
        }
        // The reactive policy records the whole change, forecast step included, so its rate
        // limits count it.
        self.reactive.commit(obs, decision);
        self.stats.policy.record(decision);
    }

    fn apply_failed(&mut self, obs: &Observation, decision: &Decision) {
        self.observe(obs);
        self.reactive.apply_failed(obs, decision);
        self.stats.policy.apply_failures += 1;
    }
}
