//! The adaptive concurrency limit on provider calls (in place of a fixed bulkhead):
//! critical agents and background agents are its two priority classes, so when the
//! provider slows down and the limit shrinks, background work is refused first.

use backstop::core::{Error, RejectKind};
use backstop::limit::{
    AdaptiveLimitConfig, AdaptiveLimiter, AdaptiveOutcome, AdaptivePermit, Gradient2Config,
    LimitAlgorithm, PriorityClass, PriorityClassConfig,
};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::fleet::Priority;
use crate::provider::ProviderError;

/// The limiter and its two classes.
#[derive(Clone)]
pub(crate) struct Admission {
    pub(crate) limiter: AdaptiveLimiter,
    critical: PriorityClass,
    background: PriorityClass,
    /// `(seconds into the run, limit)`, sampled once a second by the progress line.
    trajectory: std::sync::Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Admission {
    /// The configured `[limit.adaptive]`, else Gradient2 from 16 calls with critical
    /// agents holding half the limit. A configured limiter without a class named
    /// `critical` or `background` runs that agent kind as its lowest class.
    pub(crate) fn new(config: Option<&AdaptiveLimitConfig>) -> Result<Self, String> {
        let limiter = config
            .cloned()
            .unwrap_or_else(default_config)
            .build()
            .map_err(|error| error.within("limit").to_string())?;
        let class = |name| limiter.class(name).unwrap_or(limiter.default_class());
        Ok(Self {
            critical: class("critical"),
            background: class("background"),
            limiter,
            trajectory: Default::default(),
        })
    }

    pub(crate) fn class(&self, priority: Priority) -> PriorityClass {
        match priority {
            Priority::Critical => self.critical,
            Priority::Background => self.background,
        }
    }

    /// A permit for one provider call of `priority`, waiting in the class's queue.
    pub(crate) async fn acquire(
        &self,
        priority: Priority,
    ) -> Result<AdaptivePermit, Error<ProviderError>> {
        self.limiter
            .acquire_as(self.class(priority))
            .await
            .map_err(backstop::core::StackError::rejected)
    }

    pub(crate) fn sample(&self, second: u64) {
        self.trajectory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((second, self.limiter.limit()));
    }

    pub(crate) fn trajectory(&self) -> Vec<(u64, u64)> {
        self.trajectory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) fn default_config() -> AdaptiveLimitConfig {
    AdaptiveLimitConfig {
        // Streams and batches share the limit, and a batch's latency is a stream's and
        // then some: up to twice the baseline is not yet queueing.
        algorithm: LimitAlgorithm::Gradient2(Gradient2Config {
            tolerance: 2.0,
            ..Gradient2Config::default()
        }),
        initial_limit: 16,
        min_limit: 8,
        max_limit: 256,
        window: Duration::from_millis(250),
        min_window_samples: 8,
        classes: vec![
            PriorityClassConfig::new("critical", 0.5).with_queue(64, Duration::from_secs(1)),
            PriorityClassConfig::new("background", 0.0).with_queue(512, Duration::from_secs(2)),
        ],
        ..AdaptiveLimitConfig::default()
    }
}

/// How a provider call's result counts for the limit: the provider's 429 and outage are
/// overload (the limit backs off), a transient error is not about load, and a call the
/// breaker refused never reached the provider, so it is no sample at all.
pub(crate) fn outcome<T>(result: &Result<T, Error<ProviderError>>) -> AdaptiveOutcome {
    match result {
        Ok(_) => AdaptiveOutcome::Success,
        Err(error) => error_outcome(error),
    }
}

/// How a failed provider call counts (see [`outcome`]).
pub(crate) fn error_outcome(error: &Error<ProviderError>) -> AdaptiveOutcome {
    match (error.inner(), error.rejection()) {
        (Some(ProviderError::RateLimited { .. } | ProviderError::Outage), _) => {
            AdaptiveOutcome::Dropped
        }
        (Some(_), _) => AdaptiveOutcome::Failure,
        (None, Some(refused)) if refused.kind == RejectKind::CircuitOpen => {
            AdaptiveOutcome::Ignored
        }
        (None, _) => AdaptiveOutcome::Dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop::core::{Rejected, StackError};

    #[test]
    fn critical_agents_hold_a_share_background_agents_are_shed_first() {
        let admission = Admission::new(None).unwrap();
        let background = admission.class(Priority::Background);
        let held: Vec<_> = (0..8)
            .map(|_| admission.limiter.try_acquire_as(background).unwrap())
            .collect();
        // Half of the 16 permits are held for critical agents.
        assert_eq!(
            admission
                .limiter
                .try_acquire_as(background)
                .unwrap_err()
                .kind,
            RejectKind::Shed
        );
        assert!(
            admission
                .limiter
                .try_acquire_as(admission.class(Priority::Critical))
                .is_ok()
        );
        drop(held);
        admission.sample(1);
        assert_eq!(admission.trajectory(), [(1, 16)]);
    }

    #[test]
    fn a_config_without_the_classes_runs_both_as_its_lowest() {
        let config = AdaptiveLimitConfig::default();
        let admission = Admission::new(Some(&config)).unwrap();
        assert_eq!(
            admission.class(Priority::Critical),
            admission.limiter.default_class()
        );
        let bad = AdaptiveLimitConfig {
            min_limit: 0,
            ..AdaptiveLimitConfig::default()
        };
        let error = Admission::new(Some(&bad)).err().unwrap();
        assert!(error.contains("limit.adaptive.min_limit"), "{error}");
    }

    #[test]
    fn outcomes_follow_what_the_provider_said() {
        let ok: Result<(), Error<ProviderError>> = Ok(());
        assert_eq!(outcome(&ok), AdaptiveOutcome::Success);
        let inner = |e| -> Result<(), Error<ProviderError>> { Err(Error::Inner(e)) };
        let refused = |kind| -> Result<(), Error<ProviderError>> {
            Err(Error::rejected(Rejected::new(kind)))
        };
        for (result, expected) in [
            (
                inner(ProviderError::RateLimited { retry_after: None }),
                AdaptiveOutcome::Dropped,
            ),
            (inner(ProviderError::Outage), AdaptiveOutcome::Dropped),
            (inner(ProviderError::Transient), AdaptiveOutcome::Failure),
            (refused(RejectKind::CircuitOpen), AdaptiveOutcome::Ignored),
            (refused(RejectKind::QueueFull), AdaptiveOutcome::Dropped),
        ] {
            assert_eq!(outcome(&result), expected, "{result:?}");
        }
    }
}
