//! Kubernetes-HPA target tracking: the replica calculator and the behaviour rules.

use backstop_core::config::{ConfigError, Validate};
use serde::Serialize;

use crate::behavior::{Normalizer, normalized_policy};
use crate::config::{HpaConfig, Tolerance};
use crate::decision::{Decision, MetricProposal, Reason};
use crate::noise::NoiseBand;
use crate::observation::{MetricSample, Observation, Reading, Target};
use crate::state::ScaleState;

/// Target tracking exactly as the Kubernetes HPA documents and implements it.
///
/// Per metric, `desired = ceil(current × value / target)` unless the ratio is within the
/// tolerance; replicas with missing readings count as busy when scaling down (at the target,
/// or at max(100 %, target) of their request under a utilization target) and idle when scaling
/// up (at a ratio of exactly 1 they count on neither side), not-ready replicas as 0 % when scaling up, and if that reverses the
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
    /// Decisions reported as failed to apply ([`Policy::apply_failed`](crate::Policy::apply_failed)).
    pub apply_failures: u64,
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
    tolerance: Tolerance,
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
    tolerance: Tolerance,
) -> Result<(f64, u32), String> {
    if !sample.kind.accepts(&sample.target) {
        return Err(format!(
            "a {:?} metric does not take a {:?} target",
            sample.kind, sample.target
        ));
    }
    let target = sample.target.value();
    if !(target.is_finite() && target > 0.0) {
        return Err("target must be a positive number".to_owned());
    }
    let within = |ratio: f64| tolerance.within(ratio);
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
                Counts {
                    sum: avg * f64::from(ready),
                    with_metrics: ready,
                    missing: 0,
                    unready,
                },
                sample.target,
                current,
                tolerance,
            )
        }
        (Reading::PerReplica(replicas), Target::Value(_)) => {
            let total: f64 = replicas.iter().filter_map(|r| r.value).sum();
            let sample = MetricSample::new(&sample.name, sample.target, Reading::Total(total));
            compute(&sample, current, ready, tolerance)
        }
        (Reading::PerReplica(replicas), Target::Utilization(percent))
            if replicas.iter().any(|r| r.request.is_some()) =>
        {
            from_requests(replicas, percent, current, tolerance)
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
                Counts {
                    sum,
                    with_metrics,
                    missing,
                    unready,
                },
                sample.target,
                current,
                tolerance,
            )
        }
    }
}

/// `GetResourceReplicas` with pod requests: readings are raw usage, utilization is
/// `sum(usage) / sum(requests)` over the pods counted, and a missing pod on a scale-down uses
/// max(100 %, target) of its own request.
fn from_requests(
    replicas: &[crate::observation::ReplicaReading],
    target: f64,
    current: u32,
    tolerance: Tolerance,
) -> Result<(f64, u32), String> {
    let (mut usage, mut requested) = (0.0, 0.0);
    let (mut missing_requests, mut unready_requests) = (0.0, 0.0);
    let (mut with_metrics, mut missing, mut unready) = (0u32, 0u32, 0u32);
    for r in replicas {
        let request = r
            .request
            .ok_or("every replica needs a request when one has it")?;
        if !(request.is_finite() && request > 0.0) {
            return Err(format!("request {request} is not a positive number"));
        }
        match r.value {
            None => {
                missing += 1;
                missing_requests += request;
            }
            Some(_) if !r.ready => {
                unready += 1;
                unready_requests += request;
            }
            Some(v) => {
                check(v)?;
                usage += v;
                requested += request;
                with_metrics += 1;
            }
        }
    }
    if with_metrics == 0 {
        return Err("no ready replica reported the metric".to_owned());
    }
    let ratio = usage * 100.0 / requested / target;
    let rebalance_unready = unready > 0 && ratio > 1.0;
    if !rebalance_unready && missing == 0 {
        return Ok(unadjusted(ratio, with_metrics, current, tolerance));
    }
    let mut count = with_metrics;
    if ratio < 1.0 {
        usage += missing_requests * target.max(100.0) / 100.0;
        requested += missing_requests;
        count += missing;
    } else if ratio > 1.0 {
        requested += missing_requests;
        count += missing;
    }
    if rebalance_unready {
        requested += unready_requests;
        count += unready;
    }
    let new_ratio = usage * 100.0 / requested / target;
    Ok(adjusted(ratio, new_ratio, count, current, tolerance))
}

/// The replica calculator's answer when no replica is missing a reading and no not-ready one
/// is to be counted (there are none, or the ratio does not point up): within tolerance the
/// count holds, otherwise the replicas that reported are scaled by the ratio.
fn unadjusted(ratio: f64, with_metrics: u32, current: u32, tolerance: Tolerance) -> (f64, u32) {
    if tolerance.within(ratio) {
        return (ratio, current);
    }
    (ratio, ceil_u32(ratio * f64::from(with_metrics)))
}

/// The replica calculator's answer once missing and not-ready replicas are counted in
/// (`new_ratio` over `count` replicas): the count holds when the new ratio is within
/// tolerance, reverses the direction the reported `ratio` pointed to, or would move the count
/// against that direction, so counting them can shrink or grow a change but never turn it
/// around.
fn adjusted(
    ratio: f64,
    new_ratio: f64,
    count: u32,
    current: u32,
    tolerance: Tolerance,
) -> (f64, u32) {
    if tolerance.within(new_ratio)
        || (ratio > 1.0 && new_ratio < 1.0)
        || (ratio < 1.0 && new_ratio > 1.0)
    {
        return (new_ratio, current);
    }
    let replicas = ceil_u32(new_ratio * f64::from(count));
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return (new_ratio, current);
    }
    (new_ratio, replicas)
}

fn check(v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("reading {v} is not a non-negative number"))
    }
}

/// What the replicas reported for one per-replica metric.
struct Counts {
    /// Sum over the ready replicas that reported.
    sum: f64,
    with_metrics: u32,
    missing: u32,
    unready: u32,
}

/// `GetResourceReplicas` / `calcPlainMetricReplicas` from the HPA's replica calculator.
fn per_replica(
    counts: Counts,
    kind: Target,
    current: u32,
    tolerance: Tolerance,
) -> Result<(f64, u32), String> {
    let Counts {
        sum,
        with_metrics,
        missing,
        unready,
    } = counts;
    let target = kind.value();
    if with_metrics == 0 {
        return Err("no ready replica reported the metric".to_owned());
    }
    let ratio = sum / (target * f64::from(with_metrics));
    let rebalance_unready = unready > 0 && ratio > 1.0;
    if !rebalance_unready && missing == 0 {
        return Ok(unadjusted(ratio, with_metrics, current, tolerance));
    }
    let mut total_sum = sum;
    let mut count = with_metrics;
    if ratio < 1.0 {
        // Scaling down: a replica without a reading is assumed busy. Under a utilization
        // target the HPA assumes max(100 %, target) of its request, otherwise the target.
        let assumed = match kind {
            Target::Utilization(t) => t.max(100.0),
            _ => target,
        };
        total_sum += assumed * f64::from(missing);
        count += missing;
    } else if ratio > 1.0 {
        // Scaling up: a replica without a reading counts as idle. At exactly 1.0 the HPA
        // adds missing replicas to neither side, so nothing changes.
        count += missing;
    }
    if rebalance_unready {
        // Scaling up: not-ready replicas count as idle.
        count += unready;
    }
    let new_ratio = total_sum / (target * f64::from(count));
    Ok(adjusted(ratio, new_ratio, count, current, tolerance))
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

    /// The stabilization window's contents, the committed scale events, and the conditions.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backstop_scale::{HpaConfig, MetricSample, Observation, Policy, Reading, Target, TargetTracking};
    ///
    /// let mut hpa = TargetTracking::new(HpaConfig::default()).unwrap();
    /// let obs = Observation::new(Duration::ZERO, 2, 2)
    ///     .metric(MetricSample::new("rps", Target::AverageValue(10.0), Reading::Average(20.0)));
    /// hpa.decide(&obs);
    /// let state = hpa.state();
    /// assert_eq!(state.events[0].change, 2);
    /// println!("{}", serde_json::to_string(&state).unwrap());
    /// ```
    pub fn state(&self) -> ScaleState {
        self.normalizer.state(self.stats.last.clone())
    }

    /// Recommendations held for the stabilization windows.
    pub fn history_len(&self) -> usize {
        self.normalizer.history_len()
    }

    /// Every metric's proposal, with the noise band as it stands (`observe` records nothing).
    fn proposals(&self, obs: &Observation, current: u32) -> Vec<MetricProposal> {
        let base = self.config.band();
        let max_age = self.config.max_metric_age;
        let mut proposals: Vec<MetricProposal> = obs
            .metrics
            .iter()
            .map(|m| {
                if m.is_stale(obs.at, max_age) {
                    // A stale sample is a failed one: it can block a scale-down, never drive one.
                    MetricProposal {
                        metric: m.name.clone(),
                        ratio: None,
                        replicas: None,
                        error: Some("stale: older than max_metric_age".to_owned()),
                    }
                } else {
                    metric_proposal(m, current, obs.ready_replicas, base)
                }
            })
            .collect();
        let k = self.config.noise_tolerance;
        if k > 0.0 {
            // The ratio does not depend on the tolerance, so the first pass measures the noise
            // and a second pass re-decides the metrics whose band it widens.
            for (sample, proposal) in obs.metrics.iter().zip(proposals.iter_mut()) {
                if let Some(ratio) = proposal.ratio
                    && let Some(band) = self.noise.widened(&sample.name, ratio, current, base, k)
                {
                    *proposal = metric_proposal(sample, current, obs.ready_replicas, band);
                }
            }
        }
        proposals
    }

    /// Records what every evaluation records whether or not its decision was applied: the
    /// noise estimate and the recommendation for the stabilization windows.
    fn observe(&mut self, obs: &Observation, decision: &Decision) {
        if self.config.noise_tolerance > 0.0 {
            for (sample, proposal) in obs.metrics.iter().zip(&decision.proposals) {
                if let Some(ratio) = proposal.ratio {
                    self.noise
                        .observe(&sample.name, ratio * f64::from(decision.current));
                }
            }
        }
        if decision.reason != Reason::Cooldown
            && let Some(raw) = decision.recommendation
        {
            self.normalizer
                .record_recommendation(obs.at, decision.current, raw);
        }
    }

    fn evaluate(&self, obs: &Observation) -> Decision {
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
        let proposals = self.proposals(obs, current);
        let (raw, metric) = match combine(&proposals, current) {
            Ok(found) => found,
            Err(reason) => {
                return Decision {
                    proposals,
                    ..Decision::hold(obs.at, current, reason)
                };
            }
        };
        self.normalizer
            .decide(obs, raw, (min, max), metric, proposals)
    }
}

normalized_policy!(TargetTracking);
