//! KEDA-style queue scaling: backlog per replica, activation, scale to and from zero, fallback.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};

use crate::behavior::Normalizer;
use crate::config::QueueConfig;
use crate::decision::{Decision, Policy, Reason};
use crate::hpa::{PolicyStats, metric_proposal};
use crate::noise::NoiseBand;
use crate::observation::{MetricSample, Observation, Reading, Target};

/// Queue-driven scaling in the manner of KEDA, with its known failure modes fixed:
///
/// - a failing metric source never scales the workload to zero (KEDA #1850); after
///   `fallback.failure_threshold` consecutive failures the fallback count applies, also from
///   zero (KEDA #7239);
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
            last_active: None,
            stats: PolicyStats::default(),
        })
    }

    /// Counters and the last decision.
    pub fn stats(&self) -> PolicyStats {
        self.stats.clone()
    }

    /// Consecutive metric failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn backlog(&self, obs: &Observation) -> Result<f64, String> {
        let sample = obs
            .find(&self.config.metric)
            .ok_or_else(|| format!("metric `{}` missing", self.config.metric))?;
        if let Reading::Failed(why) = &sample.reading {
            return Err(why.clone());
        }
        sample
            .total(obs.ready_replicas)
            .filter(|v| *v >= 0.0)
            .ok_or_else(|| "backlog is not a non-negative number".to_owned())
    }

    fn evaluate(&mut self, obs: &Observation) -> Decision {
        let c = &self.config;
        let current = obs.current_replicas;
        let backlog = match self.backlog(obs) {
            Ok(b) => b,
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(failures = self.failures, %error, "queue metric unavailable");
                return match c.fallback {
                    Some(f) if self.failures >= f.failure_threshold => Decision {
                        desired: f.replicas,
                        ..Decision::hold(obs.at, current, Reason::Fallback)
                    },
                    _ => Decision::hold(obs.at, current, Reason::MetricUnavailable),
                };
            }
        };
        self.failures = 0;
        let active = backlog > c.activation_threshold;
        let last_active = *self.last_active.get_or_insert(obs.at);
        if active {
            self.last_active = Some(obs.at);
        }
        let floor = c.min_replicas.max(1);
        let needed = (backlog / c.target_per_replica)
            .ceil()
            .min(f64::from(c.max_replicas));
        let needed = (needed as u32).clamp(floor, c.max_replicas);
        if current == 0 {
            if !active {
                return Decision::hold(obs.at, 0, Reason::Steady);
            }
            return Decision {
                desired: needed,
                recommendation: Some(needed),
                ..Decision::hold(obs.at, 0, Reason::Activated)
            };
        }
        let sample = MetricSample::new(
            c.metric.clone(),
            Target::AverageValue(c.target_per_replica),
            Reading::Total(backlog),
        );
        let mut proposal = metric_proposal(&sample, current, obs.ready_replicas, c.tolerance);
        if c.noise_tolerance > 0.0
            && let Some(ratio) = proposal.ratio
        {
            let sigma = self.noise.observe(&c.metric, ratio * f64::from(current));
            let tolerance = NoiseBand::tolerance(c.tolerance, c.noise_tolerance, sigma);
            if tolerance > c.tolerance {
                proposal = metric_proposal(&sample, current, obs.ready_replicas, tolerance);
            }
        }
        let raw = proposal
            .replicas
            .unwrap_or(current)
            .clamp(floor, c.max_replicas);
        let proposals = vec![proposal];
        if self.normalizer.in_cooldown(obs.at) {
            return Decision {
                recommendation: Some(raw),
                proposals,
                ..Decision::hold(obs.at, current, Reason::Cooldown)
            };
        }
        let (mut desired, why) =
            self.normalizer
                .normalize(obs.at, current, raw, floor, c.max_replicas);
        let mut reason = why.unwrap_or(if desired == current {
            Reason::Steady
        } else {
            Reason::Metric {
                metric: c.metric.clone(),
            }
        });
        let idle_for = obs.at.saturating_sub(last_active);
        if c.min_replicas == 0 && !active && current == 1 && desired == 1 && idle_for >= c.cooldown
        {
            desired = 0;
            reason = Reason::ScaleToZero;
        }
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

impl Policy for QueuePolicy {
    fn decide(&mut self, obs: &Observation) -> Decision {
        let decision = self.evaluate(obs);
        self.normalizer
            .record_scale(obs.at, decision.current, decision.desired);
        self.stats.record(&decision);
        decision
    }
}
