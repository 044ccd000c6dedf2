//! The async driver: read metrics on an interval, decide, apply through a [`ScaleTarget`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop_core::{Clock, LoadSignal};
use serde::Serialize;

use crate::decision::{Decision, Policy};
use crate::error::ScaleError;
use crate::observation::{MetricSample, Observation, Reading, Target};

/// Anything that yields one metric sample when asked.
pub trait MetricSource: Send + Sync {
    /// The current sample; report failures as [`Reading::Failed`].
    fn sample(&self) -> MetricSample;
}

/// Replica counts reported by a [`ScaleTarget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replicas {
    /// Requested replicas (ready or warming).
    pub current: u32,
    /// Ready replicas.
    pub ready: u32,
}

/// What the user implements to run replicas: Kubernetes, a VM group, a process pool…
pub trait ScaleTarget: Send + Sync {
    /// The current replica counts.
    fn replicas(&self) -> impl Future<Output = Result<Replicas, ScaleError>> + Send;
    /// Applies a decision that changes the count.
    fn apply(&self, decision: &Decision) -> impl Future<Output = Result<(), ScaleError>> + Send;
}

/// Turns a [`LoadSignal`] into a metric.
pub struct LoadSignalMetric<L> {
    name: String,
    signal: Arc<L>,
    kind: SignalKind,
}

enum SignalKind {
    Utilization(f64),
    Backlog(f64),
}

impl<L: LoadSignal> LoadSignalMetric<L> {
    /// Utilization (`in_flight / capacity`, percent) against `target_percent`.
    pub fn utilization(name: impl Into<String>, signal: Arc<L>, target_percent: f64) -> Self {
        Self {
            name: name.into(),
            signal,
            kind: SignalKind::Utilization(target_percent),
        }
    }

    /// Queued plus in-flight work against `target_per_replica`.
    pub fn backlog(name: impl Into<String>, signal: Arc<L>, target_per_replica: f64) -> Self {
        Self {
            name: name.into(),
            signal,
            kind: SignalKind::Backlog(target_per_replica),
        }
    }
}

impl<L: LoadSignal + Send + Sync> MetricSource for LoadSignalMetric<L> {
    fn sample(&self) -> MetricSample {
        let load = self.signal.load();
        match self.kind {
            SignalKind::Utilization(target) => {
                let reading = match load.utilization() {
                    Some(u) => Reading::Average(u * 100.0),
                    None => Reading::Failed("load signal reports no capacity".to_owned()),
                };
                MetricSample::new(&self.name, Target::Utilization(target), reading)
            }
            SignalKind::Backlog(target) => MetricSample::new(
                &self.name,
                Target::AverageValue(target),
                Reading::Total((load.queued + load.in_flight) as f64),
            ),
        }
    }
}

/// Counters of the driver.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AutoscalerStats {
    /// Evaluations run.
    pub evaluations: u64,
    /// Decisions applied to the target.
    pub applied: u64,
    /// Failures reading or changing the target.
    pub target_errors: u64,
    /// The last decision.
    pub last: Option<Decision>,
}

/// Reads metrics, asks the policy, applies changes, and logs every decision with its reason.
///
/// [`step`](Self::step) is one evaluation (what tests and simulations drive);
/// [`run`](Self::run) repeats it every interval.
///
/// ```
/// use backstop_core::{LoadSignal, LoadSnapshot, ManualClock};
/// use backstop_scale::{
///     Autoscaler, Decision, HpaConfig, LoadSignalMetric, Replicas, ScaleError, ScaleTarget,
///     TargetTracking,
/// };
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// /// The replicas being scaled: a Kubernetes Deployment, a VM group, a process pool…
/// #[derive(Clone)]
/// struct Fleet(Arc<Mutex<u32>>);
/// impl ScaleTarget for Fleet {
///     async fn replicas(&self) -> Result<Replicas, ScaleError> {
///         let n = *self.0.lock().unwrap();
///         Ok(Replicas { current: n, ready: n })
///     }
///     async fn apply(&self, decision: &Decision) -> Result<(), ScaleError> {
///         *self.0.lock().unwrap() = decision.desired;
///         Ok(())
///     }
/// }
///
/// /// 90 of 100 slots busy (in practice a `Bulkhead` or a `Pool`, which report a `LoadSignal`).
/// struct Busy;
/// impl LoadSignal for Busy {
///     fn load(&self) -> LoadSnapshot {
///         LoadSnapshot { in_flight: 90, capacity: Some(100), ..Default::default() }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet(Arc::new(Mutex::new(2)));
/// let policy = TargetTracking::new(HpaConfig::default().with_bounds(1, 10))?;
/// let mut scaler = Autoscaler::new(policy, fleet.clone(), ManualClock::new(), Duration::from_secs(15))
///     .source(LoadSignalMetric::utilization("workers", Arc::new(Busy), 60.0));
///
/// // 90 % busy against a 60 % target: ceil(2 × 90 / 60) = 3 replicas.
/// let decision = scaler.step().await?;
/// assert_eq!((decision.current, decision.desired), (2, 3));
/// assert_eq!(*fleet.0.lock().unwrap(), 3);
/// assert_eq!(scaler.stats().applied, 1);
/// # Ok(())
/// # }
/// ```
pub struct Autoscaler<P, T, C> {
    policy: P,
    target: T,
    sources: Vec<Box<dyn MetricSource>>,
    clock: C,
    origin: Instant,
    interval: Duration,
    stats: AutoscalerStats,
}

impl<P: Policy, T: ScaleTarget, C: Clock> Autoscaler<P, T, C> {
    /// A driver evaluating every `interval` (the HPA syncs every 15 s).
    pub fn new(policy: P, target: T, clock: C, interval: Duration) -> Self {
        let origin = clock.now();
        Self {
            policy,
            target,
            sources: Vec::new(),
            clock,
            origin,
            interval: interval.max(Duration::from_millis(1)),
            stats: AutoscalerStats::default(),
        }
    }

    /// Adds a metric source.
    #[must_use]
    pub fn source(mut self, source: impl MetricSource + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// Counters and the last decision.
    pub fn stats(&self) -> AutoscalerStats {
        self.stats.clone()
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Runs one evaluation: read, recommend, apply, then commit (or report the failed apply).
    pub async fn step(&mut self) -> Result<Decision, ScaleError> {
        self.stats.evaluations += 1;
        let replicas = self.target.replicas().await.inspect_err(|e| {
            self.stats.target_errors += 1;
            tracing::warn!(error = %e, "reading the scale target failed");
        })?;
        let at = self.clock.now().saturating_duration_since(self.origin);
        let mut obs = Observation::new(at, replicas.current, replicas.ready);
        obs.metrics = self.sources.iter().map(|s| s.sample()).collect();
        let decision = self.policy.recommend(&obs);
        tracing::debug!(
            current = decision.current,
            desired = decision.desired,
            reason = ?decision.reason,
            "autoscaler evaluated"
        );
        self.stats.last = Some(decision.clone());
        if decision.is_change() {
            if let Err(e) = self.target.apply(&decision).await {
                // The policy keeps the evaluation but no scale event, so the next tick retries
                // with the full rate allowance.
                self.policy.apply_failed(&obs, &decision);
                self.stats.target_errors += 1;
                tracing::warn!(error = %e, desired = decision.desired, "applying a decision failed");
                return Err(e);
            }
            self.stats.applied += 1;
        }
        self.policy.commit(&obs, &decision);
        Ok(decision)
    }

    /// Evaluates forever on the interval; target errors are logged and retried next tick.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Errors are already counted and logged in `step`; the next tick retries.
            let _ = self.step().await;
        }
    }
}
