//! A burst-aware scale-down hold that wraps any policy.

use std::collections::VecDeque;
use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};

use crate::config::BurstHoldConfig;
use crate::decision::{Decision, Policy, Reason};
use crate::observation::Observation;
use crate::recent::push_recent;

/// The most recommendations the hold keeps, whatever the observation rate (an hour of 1 s
/// evaluations).
const MAX_HELD: usize = 3600;

/// Keeps replicas through the lulls of on-off traffic instead of restarting them for each burst.
///
/// On bursty traffic (load switching on and off every few minutes, replicas taking minutes to
/// start), a reactive policy scales down in every lull and spends the next burst waiting for
/// replicas. The hold learns from the policy's own history how soon load comes back after a
/// scale-down and stabilizes scale-downs over that span (see [`BurstHoldConfig`]); it never
/// changes a scale-up. Give the inner policy a zero scale-down stabilization window: the hold
/// replaces it, with the inner policy's usual window as its minimum.
///
/// On the Twitter GOOG mention series (`autoscale_sim --trace`), it has about a quarter of
/// HPA's SLO-violation minutes at the same replica-hours; where bursts are rare (AAPL) or the
/// load is smooth (NYC taxi) it falls back to the HPA's window and matches it.
///
/// ```
/// use std::time::Duration;
/// use backstop_scale::{Behavior, BurstHold, BurstHoldConfig, HpaConfig, MetricSample,
///     Observation, Policy, Reading, ScalingRules, Target, TargetTracking};
///
/// let behavior = Behavior {
///     scale_down: ScalingRules::default_down().with_window(Duration::ZERO),
///     ..Behavior::default()
/// };
/// let hpa = TargetTracking::new(HpaConfig::default().with_behavior(behavior)).unwrap();
/// let mut policy = BurstHold::new(hpa, BurstHoldConfig::default()).unwrap();
/// let rps = |v: f64| MetricSample::new("rps", Target::AverageValue(10.0), Reading::Average(v));
/// assert_eq!(policy.decide(&Observation::new(Duration::ZERO, 4, 4).metric(rps(10.0))).desired, 4);
/// // The load halves, but the hold keeps 4 for its minimum window (300 s).
/// let d = policy.decide(&Observation::new(Duration::from_secs(15), 4, 4).metric(rps(5.0)));
/// assert_eq!(d.desired, 4);
/// ```
#[derive(Debug, Clone)]
pub struct BurstHold<P> {
    inner: P,
    config: BurstHoldConfig,
    held: VecDeque<(Duration, u32)>,
    gaps: VecDeque<Duration>,
    last_down: Option<Duration>,
}

impl<P: Policy> BurstHold<P> {
    /// Validates the config and wraps `inner`.
    pub fn new(inner: P, config: BurstHoldConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            inner,
            config,
            held: VecDeque::new(),
            gaps: VecDeque::new(),
            last_down: None,
        })
    }

    /// The wrapped policy.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The hold the next scale-down is stabilized over.
    pub fn window(&self) -> Duration {
        let c = &self.config;
        if self.gaps.is_empty() {
            return c.min_window;
        }
        let mut gaps: Vec<Duration> = self.gaps.iter().copied().collect();
        gaps.sort_unstable();
        let index = ((gaps.len() - 1) as f64 * c.quantile).round() as usize;
        let wanted = gaps[index.min(gaps.len() - 1)].saturating_add(c.margin);
        if wanted > c.max_window {
            // Load comes back too late for holding to pay off.
            c.min_window
        } else {
            wanted.max(c.min_window)
        }
    }
}

impl<P: Policy> Policy for BurstHold<P> {
    fn forecast_trusted(&self) -> bool {
        self.inner.forecast_trusted()
    }

    fn recommend(&self, obs: &Observation) -> Decision {
        let mut decision = self.inner.recommend(obs);
        let current = obs.current_replicas;
        if decision.desired >= current || decision.reason == Reason::AboveMax {
            return decision;
        }
        let window = self.window();
        let held = self
            .held
            .iter()
            .filter(|(at, _)| obs.at.saturating_sub(*at) < window)
            .map(|(_, replicas)| *replicas)
            .max()
            .unwrap_or(0);
        if held > decision.desired {
            decision.desired = held.min(current);
            decision.reason = Reason::ScaleDownStabilized;
        }
        decision
    }

    fn commit(&mut self, obs: &Observation, decision: &Decision) {
        if decision.desired > decision.current
            && let Some(down) = self.last_down.take()
        {
            push_recent(
                &mut self.gaps,
                self.config.gap_samples,
                obs.at.saturating_sub(down),
            );
        }
        if decision.desired < decision.current {
            self.last_down = Some(obs.at);
        }
        let recommendation = decision.recommendation.unwrap_or(decision.current);
        let horizon = self.config.max_window;
        while self.held.len() >= MAX_HELD
            || self
                .held
                .front()
                .is_some_and(|(at, _)| obs.at.saturating_sub(*at) > horizon)
        {
            self.held.pop_front();
        }
        self.held.push_back((obs.at, recommendation));
        self.inner.commit(obs, decision);
    }

    fn apply_failed(&mut self, obs: &Observation, decision: &Decision) {
        self.inner.apply_failed(obs, decision);
    }
}
