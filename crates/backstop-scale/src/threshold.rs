//! Step scaling on utilization thresholds, the classic "above 80 % add one, below 30 % remove one".

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};

use crate::config::ThresholdConfig;
use crate::decision::{Decision, Policy, Reason};
use crate::hpa::PolicyStats;
use crate::observation::{Observation, Reading, Target};

/// Threshold/step scaling with a cooldown after every action.
///
/// Utilization is the highest average over the observation's [`Target::Utilization`] metrics.
///
/// ```
/// use std::time::Duration;
/// use backstop_scale::{MetricSample, Observation, Policy, Reading, Target, ThresholdConfig, ThresholdPolicy};
///
/// let mut policy = ThresholdPolicy::new(ThresholdConfig::default()).unwrap();
/// let obs = Observation::new(Duration::ZERO, 3, 3)
///     .metric(MetricSample::new("cpu", Target::Utilization(60.0), Reading::Average(92.0)));
/// assert_eq!(policy.decide(&obs).desired, 4);
/// ```
#[derive(Debug, Clone)]
pub struct ThresholdPolicy {
    config: ThresholdConfig,
    last_action: Option<Duration>,
    stats: PolicyStats,
}

impl ThresholdPolicy {
    /// Validates the config and builds the policy.
    pub fn new(config: ThresholdConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            last_action: None,
            stats: PolicyStats::default(),
        })
    }

    /// Counters and the last decision.
    pub fn stats(&self) -> PolicyStats {
        self.stats.clone()
    }

    fn utilization(obs: &Observation) -> Option<f64> {
        obs.metrics
            .iter()
            .filter(|m| matches!(m.target, Target::Utilization(_)))
            .filter_map(|m| match &m.reading {
                Reading::Average(v) => Some(*v),
                Reading::PerReplica(rs) => {
                    let values: Vec<f64> = rs
                        .iter()
                        .filter(|r| r.ready)
                        .filter_map(|r| r.value)
                        .collect();
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
                }
                Reading::Total(_) | Reading::Failed(_) => None,
            })
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    }

    fn up_step(c: &ThresholdConfig, current: u32) -> u32 {
        // Float-to-int `as` saturates, so an absurd percent cannot wrap.
        let percent = (f64::from(current) * c.up_step_percent / 100.0).ceil() as u32;
        c.up_step.max(percent)
    }

    /// The count the demand metric asks for, when it is configured, present and has an
    /// `AverageValue` target.
    fn demand_replicas(c: &ThresholdConfig, obs: &Observation) -> Option<u32> {
        let sample = obs.find(c.demand_metric.as_deref()?)?;
        let Target::AverageValue(target) = sample.target else {
            return None;
        };
        let total = sample.total(obs.ready_replicas)?;
        // Float-to-int `as` saturates; the result is capped at max_replicas by the caller.
        (target > 0.0 && total >= 0.0).then(|| (total / target).ceil() as u32)
    }

    fn down_step(c: &ThresholdConfig, current: u32) -> u32 {
        let percent = (f64::from(current) * c.down_step_percent / 100.0).floor() as u32;
        c.down_step.max(percent)
    }

    fn evaluate(&self, obs: &Observation) -> Decision {
        let c = &self.config;
        let current = obs.current_replicas;
        if current > c.max_replicas {
            return Decision {
                desired: c.max_replicas,
                ..Decision::hold(obs.at, current, Reason::AboveMax)
            };
        }
        if current < c.min_replicas {
            return Decision {
                desired: c.min_replicas,
                ..Decision::hold(obs.at, current, Reason::BelowMin)
            };
        }
        let Some(utilization) = Self::utilization(obs) else {
            return Decision::hold(obs.at, current, Reason::NoMetrics);
        };
        let demand = Self::demand_replicas(c, obs)
            .map(|n| n.min(c.max_replicas))
            .filter(|n| *n > current);
        let cooling = self
            .last_action
            .is_some_and(|t| obs.at.saturating_sub(t) < c.cooldown);
        let (mut desired, reason) = if utilization > c.scale_up_above {
            (
                current
                    .saturating_add(Self::up_step(c, current))
                    .max(demand.unwrap_or(0))
                    .min(c.max_replicas),
                Reason::ThresholdUp,
            )
        } else if utilization < c.scale_down_below {
            (
                current
                    .saturating_sub(Self::down_step(c, current))
                    .max(c.min_replicas),
                Reason::ThresholdDown,
            )
        } else {
            (current, Reason::Steady)
        };
        if desired == current {
            return Decision::hold(obs.at, current, Reason::Steady);
        }
        if cooling {
            // The cooldown waits for the last step to show in utilization; a demand metric
            // measures the need directly, so the count it asks for is not held back by it.
            match demand {
                Some(n) if reason == Reason::ThresholdUp => desired = n,
                _ => return Decision::hold(obs.at, current, Reason::Cooldown),
            }
        }
        Decision {
            desired,
            recommendation: Some(desired),
            ..Decision::hold(obs.at, current, reason)
        }
    }
}

impl Policy for ThresholdPolicy {
    fn recommend(&self, obs: &Observation) -> Decision {
        self.evaluate(obs)
    }

    fn commit(&mut self, obs: &Observation, decision: &Decision) {
        if decision.is_change() {
            self.last_action = Some(obs.at);
        }
        self.stats.record(decision);
    }

    fn apply_failed(&mut self, _obs: &Observation, _decision: &Decision) {
        // No cooldown starts for a change that did not happen.
        self.stats.apply_failures += 1;
    }
}
