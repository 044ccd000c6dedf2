//! KEDA-style queue scaling: backlog per replica, activation, scale to and from zero, fallback.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};

use crate::behavior::{Normalizer, normalized_policy};
use crate::config::{FallbackBehavior, QueueConfig, Tolerance};
use crate::decision::{Decision, MetricProposal, Reason};
use crate::hpa::{PolicyStats, metric_proposal};
use crate::noise::NoiseBand;
use crate::observation::{MetricSample, Observation, Reading, Target};
use crate::state::ScaleState;

/// Queue-driven scaling in the manner of KEDA, with its known failure modes fixed:
///
/// - a failing metric source never scales the workload to zero (KEDA #1850); once consecutive
///   failures exceed `fallback.failure_threshold` (KEDA's `>`) the fallback count applies, at
///   once from zero (KEDA #7239) and through the stabilization windows and rate policies from a
///   running fleet;
/// - going to zero is the last step of an ordinary, rate-limited scale-down: the count first
///   follows the [`Behavior`](crate::Behavior) down to one, and only then, after `cooldown`
///   without activity, drops to zero (KEDA #7770 dropped N → 0 at once).
///
/// ```
/// use std::time::Duration;
/// use backstop_scale::{MetricSample, Observation, Policy, QueueConfig, QueuePolicy, Reading, Target};
///
/// let mut policy = QueuePolicy::new(QueueConfig::default().with_target(10.0)).unwrap();
/// let backlog = |n: f64| MetricSample::new("queue_length", Target::AverageValue(10.0), Reading::Total(n));
/// // From zero: 35 queued messages at 10 per replica → 4 replicas.
/// let d = policy.decide(&Observation::new(Duration::ZERO, 0, 0).metric(backlog(35.0)));
/// assert_eq!(d.desired, 4);
/// ```
#[derive(Debug, Clone)]
pub struct QueuePolicy {
    config: QueueConfig,
    normalizer: Normalizer,
    noise: NoiseBand,
    failures: u32,
    first_seen: Option<Duration>,
    last_active: Option<Duration>,
    stats: PolicyStats,
}

impl QueuePolicy {
    /// Validates the config and builds the policy.
    pub fn new(config: QueueConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            normalizer: Normalizer::new(config.behavior.clone()),
            noise: NoiseBand::default(),
            config,
            failures: 0,
            first_seen: None,
            last_active: None,
            stats: PolicyStats::default(),
        })
    }

    /// Counters and the last decision.
    pub fn stats(&self) -> PolicyStats {
        self.stats.clone()
    }

    /// The stabilization window's contents, the committed scale events, the conditions and
    /// the consecutive metric failures.
    pub fn state(&self) -> ScaleState {
        ScaleState {
            metric_failures: self.failures,
            ..self.normalizer.state(self.stats.last.clone())
        }
    }

    /// Consecutive metric failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn backlog(obs: &Observation, metric: &str, max_age: Option<Duration>) -> Result<f64, String> {
        let sample = obs
            .find(metric)
            .ok_or_else(|| format!("metric `{metric}` missing"))?;
        if sample.is_stale(obs.at, max_age) {
            return Err(format!("metric `{metric}` is stale"));
        }
        if let Reading::Failed(why) = &sample.reading {
            return Err(why.clone());
        }
        sample
            .total(obs.ready_replicas)
            .filter(|v| *v >= 0.0)
            .ok_or_else(|| "backlog is not a non-negative number".to_owned())
    }

    /// Reads every trigger (KEDA's several triggers per object): whether any is active, the
    /// most replicas any backlog needs, and each trigger's proposal. Any failed trigger fails
    /// the whole reading, so an outage of one source never lets the others scale down.
    fn read(&self, obs: &Observation) -> Result<TriggerRead, String> {
        let c = &self.config;
        let current = obs.current_replicas;
        let base = Tolerance::symmetric(c.tolerance);
        let mut read = TriggerRead {
            active: false,
            needed: 0.0,
            proposals: Vec::with_capacity(1 + c.triggers.len()),
        };
        for trigger in c.all_triggers() {
            let backlog = Self::backlog(obs, trigger.metric, c.max_metric_age)?;
            read.active |= backlog > trigger.activation_threshold;
            read.needed = read.needed.max(backlog / trigger.target_per_replica);
            if current == 0 {
                continue;
            }
            let sample = MetricSample::new(
                trigger.metric,
                Target::AverageValue(trigger.target_per_replica),
                Reading::Total(backlog),
            );
            let mut proposal = metric_proposal(&sample, current, obs.ready_replicas, base);
            if c.noise_tolerance > 0.0
                && let Some(ratio) = proposal.ratio
                && let Some(band) =
                    self.noise
                        .widened(trigger.metric, ratio, current, base, c.noise_tolerance)
            {
                proposal = metric_proposal(&sample, current, obs.ready_replicas, band);
            }
            read.proposals.push(proposal);
        }
        Ok(read)
    }

    fn fallback(&self, obs: &Observation, error: &str) -> Decision {
        let c = &self.config;
        let current = obs.current_replicas;
        let failures = self.failures.saturating_add(1);
        tracing::warn!(failures, %error, "queue metric unavailable");
        // KEDA applies the fallback once failures exceed the threshold, not when they reach it.
        let Some(f) = c.fallback.filter(|f| failures > f.failure_threshold) else {
            return Decision::hold(obs.at, current, Reason::MetricUnavailable);
        };
        let aim = match f.behavior {
            FallbackBehavior::Static => f.replicas,
            FallbackBehavior::CurrentReplicas => current,
            FallbackBehavior::CurrentReplicasIfHigher => current.max(f.replicas),
            FallbackBehavior::CurrentReplicasIfLower => current.min(f.replicas),
        };
        // From zero the fallback applies at once (KEDA #7239); from a running fleet it is an
        // ordinary recommendation, stabilized and rate-limited.
        let desired = if current == 0 || aim == 0 {
            aim
        } else {
            self.normalizer
                .normalize(obs.at, current, aim, (1, c.max_replicas))
                .0
        };
        Decision {
            desired,
            recommendation: Some(aim),
            ..Decision::hold(obs.at, current, Reason::Fallback)
        }
    }

    fn evaluate(&self, obs: &Observation) -> Decision {
        let c = &self.config;
        let current = obs.current_replicas;
        let TriggerRead {
            active,
            needed,
            proposals,
        } = match self.read(obs) {
            Ok(read) => read,
            Err(error) => return self.fallback(obs, &error),
        };
        // Idle for long enough: a cooldown after the last activity, or, for a workload never
        // active, the initial cooldown after it was first seen (KEDA's initialCooldownPeriod).
        let idle_long_enough = !active
            && match self.last_active {
                Some(t) => obs.at.saturating_sub(t) >= c.cooldown,
                None => {
                    let since = obs.at.saturating_sub(self.first_seen.unwrap_or(obs.at));
                    since >= c.initial_cooldown.unwrap_or(c.cooldown)
                }
            };
        let floor = c.min_replicas.max(1);
        let needed = needed.ceil().min(f64::from(c.max_replicas));
        let needed = (needed as u32).clamp(floor, c.max_replicas);
        let idle = c.idle_count();
        if current == 0 || idle.is_some_and(|idle| current == idle) {
            if !active {
                return Decision::hold(obs.at, current, Reason::Steady);
            }
            let desired = if c.activate_to_min { floor } else { needed };
            return Decision {
                desired,
                recommendation: Some(needed),
                ..Decision::hold(obs.at, current, Reason::Activated)
            };
        }
        // The largest proposal decides, as the HPA does across a ScaledObject's triggers.
        let (raw, deciding) = proposals
            .iter()
            .filter_map(|p| p.replicas.map(|r| (r, p.metric.as_str())))
            .max_by_key(|(r, _)| *r)
            .unwrap_or((current, c.metric.as_str()));
        let raw = raw.clamp(floor, c.max_replicas);
        let deciding = deciding.to_owned();
        let mut decision =
            self.normalizer
                .decide(obs, raw, (floor, c.max_replicas), deciding, proposals);
        // Going idle is the last step of an ordinary scale-down, taken once it has reached the
        // floor; a cooldown holds it like any other change.
        if let Some(idle) = idle
            && idle_long_enough
            && decision.reason != Reason::Cooldown
            && current == floor
            && decision.desired == floor
        {
            decision.desired = idle;
            decision.reason = Reason::ScaleToZero;
        }
        decision
    }

    /// Records what every evaluation records whether or not its decision was applied.
    fn observe(&mut self, obs: &Observation, decision: &Decision) {
        let mut failed = false;
        let mut active = false;
        for trigger in self.config.all_triggers() {
            match Self::backlog(obs, trigger.metric, self.config.max_metric_age) {
                Err(_) => failed = true,
                Ok(backlog) => active |= backlog > trigger.activation_threshold,
            }
        }
        if failed {
            self.failures = self.failures.saturating_add(1);
        } else {
            self.failures = 0;
            self.first_seen.get_or_insert(obs.at);
            if active {
                self.last_active = Some(obs.at);
            }
            if self.config.noise_tolerance > 0.0 {
                for p in &decision.proposals {
                    if let Some(ratio) = p.ratio {
                        self.noise
                            .observe(&p.metric, ratio * f64::from(decision.current));
                    }
                }
            }
        }
        if decision.current > 0
            && decision.reason != Reason::Cooldown
            && let Some(raw) = decision.recommendation
        {
            self.normalizer
                .record_recommendation(obs.at, decision.current, raw);
        }
    }
}

/// What one evaluation read from the triggers.
struct TriggerRead {
    active: bool,
    /// Replicas the largest backlog needs, before rounding and bounds.
    needed: f64,
    proposals: Vec<MetricProposal>,
}

normalized_policy!(QueuePolicy);
