use backstop_core::config::{ConfigError, Validate};
use backstop_scale::{
    BurstHold, BurstHoldConfig, HpaConfig, Policy, PredictiveConfig, PredictivePolicy, QueueConfig,
    QueuePolicy, ScheduleConfig, Scheduled, TargetTracking, ThresholdConfig, ThresholdPolicy,
};
use serde::Deserialize;

/// `[scale]`: which autoscaling policy recommends replicas, and its settings.
///
/// `policy` picks one; the sub-table of the same name configures it (defaults when absent).
/// Other sub-tables may stay in the file, so switching policy is a one-word change.
///
/// ```toml
/// [scale]
/// policy = "queue"          # or "hpa", "threshold", "predictive"
///
/// [scale.queue]
/// metric = "queue_depth"
/// target_per_replica = 20.0
/// max_replicas = 20
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleSection {
    /// The policy in charge.
    pub policy: PolicyKind,
    /// `[scale.hpa]`: Kubernetes-HPA target tracking.
    pub hpa: Option<HpaConfig>,
    /// `[scale.threshold]`: step up above one utilization, down below another.
    pub threshold: Option<ThresholdConfig>,
    /// `[scale.queue]`: KEDA-style scaling on backlog per replica.
    pub queue: Option<QueueConfig>,
    /// `[scale.predictive]`: forecast-driven capacity layered on target tracking.
    pub predictive: Option<PredictiveConfig>,
    /// `[scale.burst_hold]`: a burst-aware scale-down hold around the policy (give the
    /// policy a zero scale-down stabilization window; the hold replaces it).
    pub burst_hold: Option<BurstHoldConfig>,
    /// `[scale.schedule]`: recurring windows with a minimum, on top of everything else.
    pub schedule: Option<ScheduleConfig>,
}

/// The autoscaling policies `[scale] policy = "…"` can name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Kubernetes-HPA target tracking.
    #[default]
    Hpa,
    /// Threshold steps with a cooldown.
    Threshold,
    /// Backlog per replica.
    Queue,
    /// Forecast-driven.
    Predictive,
}

impl Validate for ScaleSection {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_table(&self.hpa, "hpa")?;
        validate_table(&self.threshold, "threshold")?;
        validate_table(&self.queue, "queue")?;
        validate_table(&self.predictive, "predictive")?;
        validate_table(&self.burst_hold, "burst_hold")?;
        validate_table(&self.schedule, "schedule")
    }
}

fn validate_table<T: Validate>(table: &Option<T>, name: &str) -> Result<(), ConfigError> {
    match table {
        Some(table) => table.validate().map_err(|e| e.within(name)),
        None => Ok(()),
    }
}

impl ScaleSection {
    /// The selected policy, built from its sub-table (or its defaults), wrapped in the burst
    /// hold and the schedule when their tables are present, ready to `decide`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backstop::config::BackstopConfig;
    /// use backstop::scale::Observation;
    ///
    /// let config = BackstopConfig::from_toml_str(r#"
    ///     [scale]
    ///     policy = "hpa"
    ///     [scale.hpa]
    ///     max_replicas = 20
    ///     [scale.schedule]
    ///     windows = [{ start = "9h", length = "8h", min_replicas = 6 }]
    /// "#).unwrap();
    /// let mut policy = config.scale.unwrap().policy().unwrap();
    /// // No metrics at 10:00: the HPA holds 2, the schedule raises it to 6.
    /// let d = policy.decide(&Observation::new(Duration::from_secs(10 * 3600), 2, 2));
    /// assert_eq!(d.desired, 6);
    /// ```
    pub fn policy(&self) -> Result<Box<dyn Policy + Send>, ConfigError> {
        let mut policy = self.base_policy()?;
        if let Some(hold) = &self.burst_hold {
            policy = Box::new(
                BurstHold::new(policy, hold.clone()).map_err(|e| e.within("scale.burst_hold"))?,
            );
        }
        if let Some(schedule) = &self.schedule {
            policy = Box::new(
                Scheduled::new(policy, schedule.clone()).map_err(|e| e.within("scale.schedule"))?,
            );
        }
        Ok(policy)
    }

    fn base_policy(&self) -> Result<Box<dyn Policy + Send>, ConfigError> {
        match self.policy {
            PolicyKind::Hpa => boxed(&self.hpa, "scale.hpa", TargetTracking::new),
            PolicyKind::Threshold => {
                boxed(&self.threshold, "scale.threshold", ThresholdPolicy::new)
            }
            PolicyKind::Queue => boxed(&self.queue, "scale.queue", QueuePolicy::new),
            PolicyKind::Predictive => {
                boxed(&self.predictive, "scale.predictive", PredictivePolicy::new)
            }
        }
    }
}

/// The policy `new` builds from `config` (its defaults when the sub-table is absent), its
/// errors placed under `field`.
fn boxed<C, P>(
    config: &Option<C>,
    field: &str,
    new: impl FnOnce(C) -> Result<P, ConfigError>,
) -> Result<Box<dyn Policy + Send>, ConfigError>
where
    C: Clone + Default,
    P: Policy + Send + 'static,
{
    let policy = new(config.clone().unwrap_or_default()).map_err(|e| e.within(field))?;
    Ok(Box::new(policy))
}
