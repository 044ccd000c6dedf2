//! Scheduled scaling: a floor during recurring windows, combined with any policy.

use backstop_core::config::{ConfigError, Validate};

use crate::config::ScheduleConfig;
use crate::decision::{Decision, Policy, Reason};
use crate::observation::Observation;

/// Any policy, with at least the scheduled count during each open window (KEDA's cron
/// scaler): the inner policy decides, and a window only raises its answer.
///
/// ```
/// use std::time::Duration;
/// use backstop_scale::{FixedPolicy, Observation, Policy, ScheduleConfig, Scheduled};
///
/// let hour = Duration::from_secs(3600);
/// // At least 8 replicas from 09:00 for 8 hours, the clock's origin being midnight.
/// let schedule = ScheduleConfig::default().with_window(9 * hour, 8 * hour, 8);
/// let mut policy = Scheduled::new(FixedPolicy { replicas: 2 }, schedule).unwrap();
/// assert_eq!(policy.decide(&Observation::new(8 * hour, 2, 2)).desired, 2);
/// assert_eq!(policy.decide(&Observation::new(10 * hour, 2, 2)).desired, 8);
/// ```
#[derive(Debug, Clone)]
pub struct Scheduled<P> {
    inner: P,
    schedule: ScheduleConfig,
}

impl<P: Policy> Scheduled<P> {
    /// Validates the schedule and wraps `inner`.
    pub fn new(inner: P, schedule: ScheduleConfig) -> Result<Self, ConfigError> {
        schedule.validate()?;
        Ok(Self { inner, schedule })
    }

    /// The wrapped policy.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: Policy> Policy for Scheduled<P> {
    fn recommend(&self, obs: &Observation) -> Decision {
        let mut decision = self.inner.recommend(obs);
        if let Some(floor) = self.schedule.floor(obs.at)
            && decision.desired < floor
        {
            decision.desired = floor;
            decision.reason = Reason::Scheduled;
        }
        decision
    }

    fn commit(&mut self, obs: &Observation, decision: &Decision) {
        self.inner.commit(obs, decision);
    }

    fn apply_failed(&mut self, obs: &Observation, decision: &Decision) {
        self.inner.apply_failed(obs, decision);
    }

    fn forecast_trusted(&self) -> bool {
        self.inner.forecast_trusted()
    }
}
