//! The autoscaler: backstop-scale's driver reads the gateway's queue depth and queue wait
//! from the batcher's and the pool's `LoadSignal`s and recommends a replica count.

use backstop::config::ScaleSection;
use backstop::core::{LoadSignal, LoadSnapshot, SystemClock};
use backstop::scale::{
    Autoscaler, Decision, HpaConfig, LoadSignalMetric, MetricSample, MetricSource, Policy, Reading,
    Replicas, ScaleError, ScaleTarget, ScalingRules, Target, TargetTracking,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Requests queued or in progress in front of the provider, per replica.
pub(crate) const QUEUE_METRIC: &str = "queue_depth";
pub(crate) const QUEUE_PER_REPLICA: f64 = 2.0;
/// p95 time a request waits for a batch slot or a connection, in milliseconds.
pub(crate) const WAIT_METRIC: &str = "queue_wait_p95_ms";
pub(crate) const WAIT_TARGET_MS: f64 = 60.0;
const INTERVAL: Duration = Duration::from_secs(1);

/// The path in front of the provider as one signal: the batcher's queue, then the pool.
pub(crate) struct PathLoad {
    pub(crate) stages: Vec<Arc<dyn LoadSignal + Send + Sync>>,
}

impl LoadSignal for PathLoad {
    fn load(&self) -> LoadSnapshot {
        self.stages.iter().map(|stage| stage.load()).fold(
            LoadSnapshot::default(),
            |total, stage| LoadSnapshot {
                in_flight: total.in_flight.max(stage.in_flight),
                queued: total.queued + stage.queued,
                capacity: None,
                // A request waits at every stage in turn.
                mean_wait: total.mean_wait + stage.mean_wait,
                p95_wait: total.p95_wait + stage.p95_wait,
            },
        )
    }
}

/// The wait a request sees in front of the provider, against a target for the workload.
struct QueueWait(Arc<PathLoad>);

impl MetricSource for QueueWait {
    fn sample(&self) -> MetricSample {
        let wait_ms = self.0.load().p95_wait.as_secs_f64() * 1e3;
        MetricSample::new(
            WAIT_METRIC,
            Target::Value(WAIT_TARGET_MS),
            Reading::Total(wait_ms),
        )
    }
}

/// Simulated replicas: the recommendation is recorded, as a real target would apply it.
pub(crate) struct Deployment {
    started: Instant,
    replicas: AtomicU32,
    decisions: Mutex<Vec<String>>,
}

impl Deployment {
    pub(crate) fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed)
    }

    pub(crate) fn decisions(&self) -> Vec<String> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The driver's handle on the shared deployment.
struct Applier(Arc<Deployment>);

impl ScaleTarget for Applier {
    async fn replicas(&self) -> Result<Replicas, ScaleError> {
        let current = self.0.replicas.load(Ordering::Relaxed);
        Ok(Replicas {
            current,
            ready: current,
        })
    }

    async fn apply(&self, decision: &Decision) -> Result<(), ScaleError> {
        self.0.replicas.store(decision.desired, Ordering::Relaxed);
        self.0
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!(
                "{:>5.1}s  {} → {} replicas: {}",
                self.0.started.elapsed().as_secs_f64(),
                decision.current,
                decision.desired,
                describe(decision)
            ));
        Ok(())
    }
}

/// The deciding rule and each metric's proposal, e.g.
/// `scale_up_limit; queue_depth 8.0× target → 9, queue_wait_p95_ms 0.5× target → 1`.
fn describe(decision: &Decision) -> String {
    let rule = serde_json::to_value(&decision.reason)
        .ok()
        .and_then(|value| value.get("rule")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    let proposals: Vec<String> = decision
        .proposals
        .iter()
        .map(|proposal| match (proposal.ratio, proposal.replicas) {
            (Some(ratio), Some(replicas)) => {
                format!("{} {ratio:.1}× target → {replicas}", proposal.metric)
            }
            _ => format!(
                "{} unavailable ({})",
                proposal.metric,
                proposal.error.as_deref().unwrap_or("no reading")
            ),
        })
        .collect();
    if proposals.is_empty() {
        rule
    } else {
        format!("{rule}; {}", proposals.join(", "))
    }
}

/// The `[scale]` policy when configured (it reads `queue_depth` or `queue_wait_p95_ms`),
/// else HPA target tracking over both metrics, the larger proposal winning, with a
/// scale-down window short enough to show within a run.
pub(crate) fn policy(scale: Option<&ScaleSection>) -> Result<Box<dyn Policy + Send>, String> {
    if let Some(scale) = scale {
        return scale.policy().map_err(|error| error.to_string());
    }
    let mut config = HpaConfig::default().with_bounds(1, 20);
    config.behavior.scale_down = ScalingRules::default_down().with_window(Duration::from_secs(5));
    TargetTracking::new(config)
        .map(|policy| Box::new(policy) as Box<dyn Policy + Send>)
        .map_err(|error| error.to_string())
}

/// Starts the driver on a one-second interval; abort the handle to stop it.
pub(crate) fn start(
    policy: Box<dyn Policy + Send>,
    load: Arc<PathLoad>,
) -> (Arc<Deployment>, JoinHandle<()>) {
    let deployment = Arc::new(Deployment {
        started: Instant::now(),
        replicas: AtomicU32::new(1),
        decisions: Mutex::new(Vec::new()),
    });
    let autoscaler = Autoscaler::new(policy, Applier(deployment.clone()), SystemClock, INTERVAL)
        .source(LoadSignalMetric::backlog(
            QUEUE_METRIC,
            load.clone(),
            QUEUE_PER_REPLICA,
        ))
        .source(QueueWait(load));
    (deployment, tokio::spawn(autoscaler.run()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(LoadSnapshot);

    impl LoadSignal for Fixed {
        fn load(&self) -> LoadSnapshot {
            self.0
        }
    }

    fn stage(in_flight: u64, queued: u64, p95_ms: u64) -> Arc<dyn LoadSignal + Send + Sync> {
        Arc::new(Fixed(LoadSnapshot {
            in_flight,
            queued,
            capacity: Some(16),
            mean_wait: Duration::from_millis(p95_ms / 2),
            p95_wait: Duration::from_millis(p95_ms),
        }))
    }

    #[test]
    fn the_path_adds_queues_and_waits() {
        let path = PathLoad {
            stages: vec![stage(3, 10, 30), stage(5, 2, 20)],
        };
        let load = path.load();
        assert_eq!(load.queued, 12);
        assert_eq!(load.in_flight, 5);
        assert_eq!(load.p95_wait, Duration::from_millis(50));
    }

    /// The deployment after the autoscaler has watched one stage for a second and a half.
    async fn scaled_over(stage: Arc<dyn LoadSignal + Send + Sync>) -> Arc<Deployment> {
        let load = Arc::new(PathLoad {
            stages: vec![stage],
        });
        let (deployment, driver) = start(policy(None).unwrap(), load);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        driver.abort();
        deployment
    }

    #[tokio::test(start_paused = true)]
    async fn a_deep_queue_scales_up_and_the_decision_is_recorded() {
        let deployment = scaled_over(stage(0, 16, 10)).await;
        // 16 waiting at 2 per replica; the HPA's scale-up rate allows 1 → 5 at once.
        assert!(deployment.replicas() > 1, "{:?}", deployment.decisions());
        let decisions = deployment.decisions();
        assert!(
            decisions[0].contains("queue_depth 8.0× target → 8"),
            "{decisions:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_alone_scales_up() {
        let deployment = scaled_over(stage(0, 0, 200)).await;
        assert!(deployment.replicas() > 1);
        let decisions = deployment.decisions();
        assert!(
            decisions[0].contains("queue_wait_p95_ms 3.3× target → 4"),
            "{decisions:?}"
        );
    }
}
