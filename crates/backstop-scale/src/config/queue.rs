//! KEDA-style queue scaling settings.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_count, ensure_duration};
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
    backstop_core::config_setters! {
        self;
        /// Sets the noise-aware band multiplier (0 disables it).
        with_noise_tolerance(k: f64) { noise_tolerance = k }
        /// Sets the metric name.
        with_metric(metric: impl Into<String>) { metric = metric.into() }
        /// Sets the replica bounds.
        with_bounds(min: u32, max: u32) { min_replicas = min, max_replicas = max }
        /// Sets the backlog target per replica.
        with_target(target_per_replica: f64) { target_per_replica = target_per_replica }
        /// Sets the activation threshold.
        with_activation(threshold: f64) { activation_threshold = threshold }
        /// Sets the fallback.
        with_fallback(failure_threshold: u32, replicas: u32) {
            fallback = Some(FallbackConfig {
                failure_threshold,
                replicas,
                behavior: FallbackBehavior::Static,
            })
        }
        /// Sets KEDA's `initialCooldownPeriod`.
        with_initial_cooldown(initial: Duration) { initial_cooldown = Some(initial) }
        /// Sets KEDA's `idleReplicaCount`.
        with_idle_replicas(idle: u32) { idle_replicas = Some(idle) }
        /// Sets the behaviour.
        with_behavior(behavior: Behavior) { behavior = behavior }
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

    /// The count an inactive workload goes to, when idling is enabled.
    pub(crate) fn idle_count(&self) -> Option<u32> {
        match (self.idle_replicas, self.min_replicas) {
            (Some(idle), _) => Some(idle),
            (None, 0) => Some(0),
            (None, _) => None,
        }
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.metric.is_empty(), "metric", "must not be empty")?;
        ensure_duration("cooldown", self.cooldown)?;
        ensure_count("triggers", self.triggers.len(), 0, MAX_QUEUE_TRIGGERS)?;
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
