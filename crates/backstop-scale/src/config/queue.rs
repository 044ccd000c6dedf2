//! KEDA-style queue scaling settings.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_at_most, ensure_duration};
use serde::{Deserialize, Serialize};

use super::{
    Behavior, ensure_non_negative, ensure_optional_duration, ensure_positive, ensure_tolerance,
    validate_bounds,
};

/// Which count a fallback aims for (KEDA's `fallback.behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FallbackBehavior {
    /// `replicas` (KEDA's `static`, its default).
    #[default]
    Static,
    /// Keep the current count.
    CurrentReplicas,
    /// The larger of the current count and `replicas`.
    CurrentReplicasIfHigher,
    /// The smaller of the current count and `replicas`.
    CurrentReplicasIfLower,
}

/// What the queue policy does once its metric source keeps failing (KEDA's `fallback`).
///
/// The fallback count is a recommendation like any other: from a running fleet it goes
/// through the stabilization windows and rate policies, so a metrics outage cannot cut a
/// fleet of 10 to 2 in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackConfig {
    /// The fallback applies once consecutive failures exceed this (KEDA's `>`).
    pub failure_threshold: u32,
    /// Replicas to run while the source is failing.
    pub replicas: u32,
    /// Which count the fallback aims for.
    #[serde(default)]
    pub behavior: FallbackBehavior,
}

/// One more trigger of a queue-scaled object (KEDA's `triggers`): its own metric, backlog per
/// replica and activation threshold. The largest proposal across triggers decides, and the
/// workload is active while any trigger is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTrigger {
    /// Name of the backlog metric in the observation.
    pub metric: String,
    /// Backlog each replica should carry.
    pub target_per_replica: f64,
    /// Active only while the backlog is strictly greater than this.
    #[serde(default)]
    pub activation_threshold: f64,
}

/// A trigger's settings, borrowed from the config.
pub(crate) struct TriggerRef<'a> {
    pub(crate) metric: &'a str,
    pub(crate) target_per_replica: f64,
    pub(crate) activation_threshold: f64,
}

/// The most triggers one queue policy takes.
pub const MAX_QUEUE_TRIGGERS: usize = 64;

/// KEDA-style queue scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Name of the backlog metric in the observation.
    pub metric: String,
    /// Lower bound; 0 allows scaling to zero.
    pub min_replicas: u32,
    /// Upper bound.
    pub max_replicas: u32,
    /// Backlog each replica should carry.
    pub target_per_replica: f64,
    /// The workload is active only while the backlog is strictly greater than this.
    pub activation_threshold: f64,
    /// Inactive this long before scaling to zero (KEDA default 300 s).
    #[serde(with = "backstop_core::duration::human")]
    pub cooldown: Duration,
    /// A workload that has never been active may go idle this long after the policy first
    /// saw it (KEDA's `initialCooldownPeriod`); `None` waits a full `cooldown`.
    #[serde(with = "backstop_core::duration::human_option")]
    pub initial_cooldown: Option<Duration>,
    /// Replicas to run while idle instead of zero (KEDA's `idleReplicaCount`); must be below
    /// `min_replicas`. Setting it enables idling even with `min_replicas` above 0.
    pub idle_replicas: Option<u32>,
    /// Replicas to run when the metric source keeps failing.
    pub fallback: Option<FallbackConfig>,
    /// No action while the ratio is within `1 ± tolerance`.
    pub tolerance: f64,
    /// Noise-aware band, as [`HpaConfig::noise_tolerance`](crate::HpaConfig::noise_tolerance): 0 (the default) disables it.
    pub noise_tolerance: f64,
    /// Activate from zero (or idle) to `max(min_replicas, 1)` and let scaling continue from
    /// there, as KEDA does; `false` (the default) goes straight to the count the backlog needs.
    pub activate_to_min: bool,
    /// Triggers besides `metric` (at most [`MAX_QUEUE_TRIGGERS`]).
    pub triggers: Vec<QueueTrigger>,
    /// A backlog measured longer ago than this counts as a failure (stale); `None` trusts
    /// every sample.
    #[serde(with = "backstop_core::duration::human_option")]
    pub max_metric_age: Option<Duration>,
    /// Stabilization and rate policies for scaling between 1 and max.
    pub behavior: Behavior,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            metric: "queue_length".to_owned(),
            min_replicas: 0,
            max_replicas: 10,
            target_per_replica: 5.0,
            activation_threshold: 0.0,
            cooldown: Duration::from_secs(300),
            initial_cooldown: None,
            idle_replicas: None,
            activate_to_min: false,
            triggers: Vec::new(),
            max_metric_age: None,
            fallback: None,
            tolerance: 0.1,
            noise_tolerance: 0.0,
            behavior: Behavior::default(),
        }
    }
}

impl QueueConfig {
    /// Sets the noise-aware band multiplier (0 disables it).
    #[must_use]
    pub fn with_noise_tolerance(mut self, k: f64) -> Self {
        self.noise_tolerance = k;
        self
    }

    /// Sets the metric name.
    #[must_use]
    pub fn with_metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = metric.into();
        self
    }

    /// Sets the replica bounds.
    #[must_use]
    pub fn with_bounds(mut self, min: u32, max: u32) -> Self {
        self.min_replicas = min;
        self.max_replicas = max;
        self
    }

    /// Sets the backlog target per replica.
    #[must_use]
    pub fn with_target(mut self, target_per_replica: f64) -> Self {
        self.target_per_replica = target_per_replica;
        self
    }

    /// Sets the activation threshold.
    #[must_use]
    pub fn with_activation(mut self, threshold: f64) -> Self {
        self.activation_threshold = threshold;
        self
    }

    /// Sets the fallback.
    #[must_use]
    pub fn with_fallback(mut self, failure_threshold: u32, replicas: u32) -> Self {
        self.fallback = Some(FallbackConfig {
            failure_threshold,
            replicas,
            behavior: FallbackBehavior::Static,
        });
        self
    }

    /// Sets the fallback's behaviour (after [`QueueConfig::with_fallback`]).
    #[must_use]
    pub fn with_fallback_behavior(mut self, behavior: FallbackBehavior) -> Self {
        if let Some(f) = &mut self.fallback {
            f.behavior = behavior;
        }
        self
    }

    /// Adds a trigger.
    #[must_use]
    pub fn with_trigger(mut self, trigger: QueueTrigger) -> Self {
        self.triggers.push(trigger);
        self
    }

    /// The primary trigger (`metric`), then `triggers`.
    pub(crate) fn all_triggers(&self) -> impl Iterator<Item = TriggerRef<'_>> {
        std::iter::once(TriggerRef {
            metric: &self.metric,
            target_per_replica: self.target_per_replica,
            activation_threshold: self.activation_threshold,
        })
        .chain(self.triggers.iter().map(|t| TriggerRef {
            metric: &t.metric,
            target_per_replica: t.target_per_replica,
            activation_threshold: t.activation_threshold,
        }))
    }

    /// Sets KEDA's `initialCooldownPeriod`.
    #[must_use]
    pub fn with_initial_cooldown(mut self, initial: Duration) -> Self {
        self.initial_cooldown = Some(initial);
        self
    }

    /// Sets KEDA's `idleReplicaCount`.
    #[must_use]
    pub fn with_idle_replicas(mut self, idle: u32) -> Self {
        self.idle_replicas = Some(idle);
        self
    }

    /// The count an inactive workload goes to, when idling is enabled.
    pub(crate) fn idle_count(&self) -> Option<u32> {
        match (self.idle_replicas, self.min_replicas) {
            (Some(idle), _) => Some(idle),
            (None, 0) => Some(0),
            (None, _) => None,
        }
    }

    /// Sets the behaviour.
    #[must_use]
    pub fn with_behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.metric.is_empty(), "metric", "must not be empty")?;
        ensure_duration("cooldown", self.cooldown)?;
        ensure_at_most(
            "triggers",
            self.triggers.len() as u64,
            MAX_QUEUE_TRIGGERS as u64,
        )?;
        for (i, t) in self.triggers.iter().enumerate() {
            let field = |name: &str| format!("triggers[{i}].{name}");
            ensure(!t.metric.is_empty(), &field("metric"), "must not be empty")?;
            ensure_positive(&field("target_per_replica"), t.target_per_replica)?;
            ensure_non_negative(&field("activation_threshold"), t.activation_threshold)?;
        }
        ensure_optional_duration("max_metric_age", self.max_metric_age)?;
        ensure_optional_duration("initial_cooldown", self.initial_cooldown)?;
        if let Some(idle) = self.idle_replicas {
            ensure(
                idle < self.min_replicas.max(1),
                "idle_replicas",
                "must be below min_replicas",
            )?;
        }
        validate_bounds(self.min_replicas, self.max_replicas, true)?;
        ensure_positive("target_per_replica", self.target_per_replica)?;
        ensure_non_negative("activation_threshold", self.activation_threshold)?;
        ensure_tolerance("tolerance", self.tolerance)?;
        ensure_non_negative("noise_tolerance", self.noise_tolerance)?;
        if let Some(f) = &self.fallback {
            ensure(
                f.replicas >= 1 && f.replicas <= self.max_replicas,
                "fallback.replicas",
                "must be between 1 and max_replicas",
            )?;
        }
        self.behavior.validate().map_err(|e| e.within("behavior"))
    }
}
