//! Kubernetes-HPA target tracking: the replica calculator and the behaviour rules.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};
use serde::Serialize;

use crate::behavior::Normalizer;
use crate::config::HpaConfig;
use crate::decision::{Decision, MetricProposal, Policy, Reason};
use crate::noise::NoiseBand;
use crate::observation::{MetricSample, Observation, Reading, Target};

/// Target tracking exactly as the Kubernetes HPA documents and implements it.
///
/// Per metric, `desired = ceil(current × value / target)` unless the ratio is within the
/// tolerance; replicas with missing readings count as 100 % of target when scaling down and 0 %
/// when scaling up, not-ready replicas as 0 % when scaling up, and if that reverses the
/// direction or lands within tolerance nothing changes. The largest proposal wins; if any metric
/// failed and the rest say scale down, nothing changes. The result then goes through the
/// stabilization windows and rate policies of [`Behavior`](crate::Behavior).
///
/// ```
/// use std::time::Duration;
/// use backstop_scale::{HpaConfig, MetricSample, Observation, Policy, Reading, Target, TargetTracking};
///
/// let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 20)).unwrap();
/// // 4 replicas at 90 % CPU against a 50 % target: ceil(4 × 90 / 50) = 8.
/// let obs = Observation::new(Duration::from_secs(0), 4, 4)
///     .metric(MetricSample::new("cpu", Target::Utilization(50.0), Reading::Average(90.0)));
/// assert_eq!(hpa.decide(&obs).desired, 8);
/// ```
#[derive(Debug, Clone)]
pub struct TargetTracking {
    config: HpaConfig,
    normalizer: Normalizer,
    noise: NoiseBand,
    stats: PolicyStats,
}

/// Counters every policy keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyStats {
    /// Decisions taken.
    pub decisions: u64,
    /// Decisions that raised the count.
    pub scale_ups: u64,
    /// Decisions that lowered the count.
    pub scale_downs: u64,
    /// The last decision.
    pub last: Option<Decision>,
}

impl PolicyStats {
    pub(crate) fn record(&mut self, decision: &Decision) {
        self.decisions += 1;
        if decision.desired > decision.current {
            self.scale_ups += 1;
        } else if decision.desired < decision.current {
            self.scale_downs += 1;
        }
        if decision.is_change() {
            tracing::info!(
                current = decision.current,
                desired = decision.desired,
                reason = ?decision.reason,
                "scale decision"
            );
        }
        self.last = Some(decision.clone());
    }
}

/// The proposal for one metric, or why it is invalid.
pub(crate) fn metric_proposal(
    sample: &MetricSample,
    current: u32,
    ready: u32,
    tolerance: f64,
) -> MetricProposal {
    let result = compute(sample, current, ready, tolerance);
    match result {
        Ok((ratio, replicas)) => MetricProposal {
            metric: sample.name.clone(),
            ratio: Some(ratio),
            replicas: Some(replicas),
            error: None,
        },
        Err(error) => MetricProposal {
            metric: sample.name.clone(),
            ratio: None,
            replicas: None,
            error: Some(error),
        },
    }
}

fn ceil_u32(v: f64) -> u32 {
    // Saturating: a huge ratio is clamped to max_replicas later anyway.
    let c = v.ceil();
    if c >= f64::from(u32::MAX) {
        u32::MAX
    } else if c <= 0.0 {
        0
    } else {
        c as u32
    }
}

fn compute(
    sample: &MetricSample,
    current: u32,
    ready: u32,
    tolerance: f64,
) -> Result<(f64, u32), String> {
    let target = sample.target.value();
    if !(target.is_finite() && target > 0.0) {
        return Err("target must be a positive number".to_owned());
    }
    let within = |ratio: f64| (ratio - 1.0).abs() <= tolerance;
    match (&sample.reading, sample.target) {
        (Reading::Failed(why), _) => Err(why.clone()),
        (Reading::Total(total), Target::Value(_)) => {
            let ratio = total / target;
            check(ratio)?;
            if within(ratio) {
                return Ok((ratio, current));
            }
            if ready == 0 {
                return Err("no ready replicas to scale an object metric from".to_owned());
            }
            Ok((ratio, ceil_u32(ratio * f64::from(ready))))
        }
        (Reading::Total(total), Target::AverageValue(_)) => {
            // External metric with an average target: the HPA divides the total by the target.
            check(*total)?;
            if current > 0 {
                let ratio = total / (target * f64::from(current));
                if within(ratio) {
                    return Ok((ratio, current));
                }
            }
            let ratio = if current > 0 {
                total / (target * f64::from(current))
            } else {
                f64::INFINITY
            };
            Ok((ratio, ceil_u32(total / target)))
        }
        (Reading::Total(_), Target::Utilization(_)) => {
            Err("a utilization target needs per-replica readings or an average".to_owned())
        }
        (Reading::Average(avg), _) => {
            check(*avg)?;
            let unready = current.saturating_sub(ready);
            per_replica(
                avg * f64::from(ready),
                ready,
                0,
                unready,
                target,
                current,
                tolerance,
            )
        }
        (Reading::PerReplica(replicas), Target::Value(_)) => {
            let total: f64 = replicas.iter().filter_map(|r| r.value).sum();
            let sample = MetricSample::new(&sample.name, sample.target, Reading::Total(total));
            compute(&sample, current, ready, tolerance)
        }
        (Reading::PerReplica(replicas), _) => {
            let mut sum = 0.0;
            let (mut with_metrics, mut missing, mut unready) = (0u32, 0u32, 0u32);
            for r in replicas {
                match r.value {
                    None => missing += 1,
                    Some(_) if !r.ready => unready += 1,
                    Some(v) => {
                        check(v)?;
                        sum += v;
                        with_metrics += 1;
                    }
                }
            }
            per_replica(
                sum,
                with_metrics,
                missing,
                unready,
                target,
                current,
                tolerance,
            )
        }
    }
}

fn check(v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("reading {v} is not a non-negative number"))
    }
}

/// `GetResourceReplicas` from the HPA's replica calculator.
fn per_replica(
    sum: f64,
    with_metrics: u32,
    missing: u32,
    unready: u32,
    target: f64,
    current: u32,
    tolerance: f64,
) -> Result<(f64, u32), String> {
    if with_metrics == 0 {
        return Err("no ready replica reported the metric".to_owned());
    }
    let ratio = sum / (target * f64::from(with_metrics));
    let rebalance_unready = unready > 0 && ratio > 1.0;
    if !rebalance_unready && missing == 0 {
        if (ratio - 1.0).abs() <= tolerance {
            return Ok((ratio, current));
        }
        return Ok((ratio, ceil_u32(ratio * f64::from(with_metrics))));
    }
    let mut total_sum = sum;
    let mut count = with_metrics + missing;
    if ratio < 1.0 {
        // Scaling down: replicas without readings are assumed to be exactly at target.
        total_sum += target * f64::from(missing);
    }
    if rebalance_unready {
        // Scaling up: not-ready replicas count as idle, and so do missing ones.
        count += unready;
    }
    let new_ratio = total_sum / (target * f64::from(count));
    if (new_ratio - 1.0).abs() <= tolerance
        || (ratio > 1.0 && new_ratio < 1.0)
        || (ratio < 1.0 && new_ratio > 1.0)
    {
        return Ok((new_ratio, current));
    }
    let replicas = ceil_u32(new_ratio * f64::from(count));
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok((new_ratio, current));
    }
    Ok((new_ratio, replicas))
}

/// The largest valid proposal, or the reason to hold.
pub(crate) fn combine(proposals: &[MetricProposal], current: u32) -> Result<(u32, String), Reason> {
    let invalid = proposals.iter().filter(|p| p.replicas.is_none()).count();
    let best = proposals
        .iter()
        .filter_map(|p| p.replicas.map(|r| (r, &p.metric)))
        .max_by_key(|(r, _)| *r);
    match best {
        None => Err(Reason::NoMetrics),
        Some((r, _)) if invalid > 0 && r < current => Err(Reason::MissingMetricsNoScaleDown),
        Some((r, metric)) => Ok((r, metric.clone())),
    }
}

impl TargetTracking {
    /// Validates the config and builds the policy.
    pub fn new(config: HpaConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            normalizer: Normalizer::new(config.behavior.clone()),
            noise: NoiseBand::default(),
            config,
            stats: PolicyStats::default(),
        })
    }

    /// The config.
    pub fn config(&self) -> &HpaConfig {
        &self.config
    }

    /// Counters and the last decision.
    pub fn stats(&self) -> PolicyStats {
        self.stats.clone()
    }

    /// Recommendations held for the stabilization windows.
    pub fn history_len(&self) -> usize {
        self.normalizer.history_len()
    }

    pub(crate) fn record_external(&mut self, at: Duration, from: u32, to: u32) {
        self.normalizer.record_scale(at, from, to);
    }

    fn evaluate(&mut self, obs: &Observation) -> Decision {
        let current = obs.current_replicas;
        let (min, max) = (self.config.min_replicas, self.config.max_replicas);
        if current == 0 {
            return Decision::hold(obs.at, 0, Reason::ScalingDisabled);
        }
        if current > max || current < min {
            let (desired, reason) = if current > max {
                (max, Reason::AboveMax)
            } else {
                (min, Reason::BelowMin)
            };
            return Decision {
                desired,
                reason,
                ..Decision::hold(obs.at, current, Reason::Steady)
            };
        }
        let base = self.config.tolerance;
        let mut proposals: Vec<MetricProposal> = obs
            .metrics
            .iter()
            .map(|m| metric_proposal(m, current, obs.ready_replicas, base))
            .collect();
        let k = self.config.noise_tolerance;
        if k > 0.0 {
            // The ratio does not depend on the tolerance, so the first pass measures the noise
            // and a second pass re-decides the metrics whose band it widens.
            for (sample, proposal) in obs.metrics.iter().zip(proposals.iter_mut()) {
                let Some(ratio) = proposal.ratio else {
                    continue;
                };
                let sigma = self.noise.observe(&sample.name, ratio * f64::from(current));
                let tolerance = NoiseBand::tolerance(base, k, sigma);
                if tolerance > base {
                    *proposal = metric_proposal(sample, current, obs.ready_replicas, tolerance);
                }
            }
        }
        let (raw, metric) = match combine(&proposals, current) {
            Ok(found) => found,
            Err(reason) => {
                return Decision {
                    proposals,
                    ..Decision::hold(obs.at, current, reason)
                };
            }
        };
        if self.normalizer.in_cooldown(obs.at) {
            return Decision {
                recommendation: Some(raw),
                proposals,
                ..Decision::hold(obs.at, current, Reason::Cooldown)
            };
        }
        let (desired, why) = self.normalizer.normalize(obs.at, current, raw, min, max);
        let reason = why.unwrap_or(if desired == current {
            Reason::Steady
        } else {
            Reason::Metric { metric }
        });
        Decision {
            at: obs.at,
            current,
            desired,
            recommendation: Some(raw),
            reason,
            proposals,
        }
    }
}

impl Policy for TargetTracking {
    fn decide(&mut self, obs: &Observation) -> Decision {
        let decision = self.evaluate(obs);
        self.normalizer
            .record_scale(obs.at, decision.current, decision.desired);
        self.stats.record(&decision);
        decision
    }
}
