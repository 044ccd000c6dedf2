//! What a policy answers, with the reason, so every scale action can be explained.

use std::time::Duration;

use serde::Serialize;

/// Why a decision came out the way it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
#[non_exhaustive]
pub enum Reason {
    /// The metrics asked for the current count, or every ratio was within tolerance.
    Steady,
    /// The named metric gave the largest proposal and it was applied as is.
    Metric {
        /// The deciding metric.
        metric: String,
    },
    /// The current count was above `max_replicas`.
    AboveMax,
    /// The current count was below `min_replicas`.
    BelowMin,
    /// The target is at zero and the policy does not scale from zero (HPA semantics).
    ScalingDisabled,
    /// No metric could be read; nothing changes.
    NoMetrics,
    /// Some metric failed and the others asked to scale down; the HPA skips the scale-down.
    MissingMetricsNoScaleDown,
    /// The scale-up stabilization window held the count to the lowest recent recommendation.
    ScaleUpStabilized,
    /// The scale-down stabilization window held the count to the highest recent recommendation.
    ScaleDownStabilized,
    /// A scale-up rate policy limited the change.
    ScaleUpLimit,
    /// A scale-down rate policy limited the change.
    ScaleDownLimit,
    /// Clamped to `max_replicas`.
    TooManyReplicas,
    /// Clamped to `min_replicas`.
    TooFewReplicas,
    /// A cooldown after the last action held the count.
    Cooldown,
    /// The threshold policy saw utilization above its scale-up threshold.
    ThresholdUp,
    /// The threshold policy saw utilization below its scale-down threshold.
    ThresholdDown,
    /// The queue crossed the activation threshold; scaling from zero.
    Activated,
    /// The queue stayed inactive for the cooldown; scaling to zero (or `idle_replicas`).
    ScaleToZero,
    /// The metric source kept failing; the configured fallback count applies.
    Fallback,
    /// The metric source failed; the count is held (never dropped to zero on failure).
    MetricUnavailable,
    /// The forecast asked for more replicas than the reactive policy.
    Predicted,
    /// A scheduled window's floor raised the count.
    Scheduled,
    /// The burst-envelope headroom raised the count ([`BurstEnvelope`](crate::BurstEnvelope)).
    BurstHeadroom,
    /// A scale-up was trimmed to what will be needed once the new replicas serve
    /// ([`BurstEnvelope`](crate::BurstEnvelope)).
    StartupCapped,
}

/// One metric's proposal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricProposal {
    /// The metric's name.
    pub metric: String,
    /// Measured value divided by target after the HPA's missing/not-ready adjustments.
    pub ratio: Option<f64>,
    /// Proposed replicas, or `None` when the metric was invalid.
    pub replicas: Option<u32>,
    /// Why the metric was invalid.
    pub error: Option<String>,
}

/// A policy's answer for one observation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The observation's time.
    #[serde(with = "backstop_core::duration::human")]
    pub at: Duration,
    /// Replicas when the decision was taken.
    pub current: u32,
    /// Replicas the target should run.
    pub desired: u32,
    /// The recommendation before stabilization and rate policies, when there was one.
    pub recommendation: Option<u32>,
    /// The rule that decided.
    pub reason: Reason,
    /// Each metric's proposal.
    pub proposals: Vec<MetricProposal>,
}

impl Decision {
    pub(crate) fn hold(at: Duration, current: u32, reason: Reason) -> Self {
        Self {
            at,
            current,
            desired: current,
            recommendation: None,
            reason,
            proposals: Vec::new(),
        }
    }

    /// Whether the decision changes the replica count.
    pub fn is_change(&self) -> bool {
        self.desired != self.current
    }
}

/// Anything that turns observations into decisions.
///
/// A decision is taken in two steps, as the Kubernetes controller takes it:
/// [`recommend`](Policy::recommend) computes it without changing anything (a dry run), and
/// once the caller knows whether the change was applied it reports
/// [`commit`](Policy::commit) or [`apply_failed`](Policy::apply_failed), so the history the
/// rate limits and cooldowns read holds only changes that happened. [`decide`](Policy::decide)
/// is both steps for a caller that cannot fail to apply (the simulator).
///
/// Policies are synchronous: they keep only the history they need (recent recommendations and
/// scale events, forecaster state) and read time from the observation.
pub trait Policy {
    /// The decision for this observation, changing no state.
    fn recommend(&self, observation: &crate::Observation) -> Decision;

    /// Records that `decision` (from [`recommend`](Policy::recommend) on `observation`) was
    /// applied, or needed no change.
    fn commit(&mut self, observation: &crate::Observation, decision: &Decision);

    /// Records that applying `decision` failed: the evaluation is remembered (stabilization,
    /// forecasts, failure counts) but no scale event is, so the retry is not rate-limited by
    /// a change that never happened.
    fn apply_failed(&mut self, observation: &crate::Observation, decision: &Decision);

    /// Whether the policy is scaling on a forecast it currently trusts (the predictive
    /// policy while its measured error is within its gate): a wrapper that holds headroom
    /// for bursts nobody foresaw stands down meanwhile. `false` unless a policy forecasts.
    fn forecast_trusted(&self) -> bool {
        false
    }

    /// Recommends and commits in one step.
    fn decide(&mut self, observation: &crate::Observation) -> Decision {
        let decision = self.recommend(observation);
        self.commit(observation, &decision);
        decision
    }
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn recommend(&self, observation: &crate::Observation) -> Decision {
        (**self).recommend(observation)
    }

    fn commit(&mut self, observation: &crate::Observation, decision: &Decision) {
        (**self).commit(observation, decision);
    }

    fn apply_failed(&mut self, observation: &crate::Observation, decision: &Decision) {
        (**self).apply_failed(observation, decision);
    }

    fn forecast_trusted(&self) -> bool {
        (**self).forecast_trusted()
    }

    fn decide(&mut self, observation: &crate::Observation) -> Decision {
        (**self).decide(observation)
    }
}
