//! The async driver, on paused tokio time and a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_core::{Clock, LoadSignal, LoadSnapshot, ManualClock, TokioClock};
use backstop_scale::{
    Autoscaler, Decision, HpaConfig, LoadSignalMetric, Replicas, ScaleError, ScaleTarget,
    TargetTracking,
};

#[derive(Clone, Default)]
struct Fleet {
    replicas: Arc<Mutex<u32>>,
    fail_reads: Arc<Mutex<bool>>,
    applied: Arc<Mutex<Vec<u32>>>,
}

impl ScaleTarget for Fleet {
    async fn replicas(&self) -> Result<Replicas, ScaleError> {
        if *self.fail_reads.lock().unwrap() {
            return Err(ScaleError::new("api down"));
        }
        let n = *self.replicas.lock().unwrap();
        Ok(Replicas {
            current: n,
            ready: n,
        })
    }

    async fn apply(&self, decision: &Decision) -> Result<(), ScaleError> {
        *self.replicas.lock().unwrap() = decision.desired;
        self.applied.lock().unwrap().push(decision.desired);
        Ok(())
    }
}

struct Busy(Mutex<u64>);

impl LoadSignal for Busy {
    fn load(&self) -> LoadSnapshot {
        LoadSnapshot {
            in_flight: *self.0.lock().unwrap(),
            queued: 0,
            capacity: Some(100),
            mean_wait: Duration::ZERO,
            p95_wait: Duration::ZERO,
        }
    }
}

/// A driver of a default HPA (1 to `max` replicas) scaling `target` every 15 s on `clock`, on
/// the utilization of `signal` against `target_percent`.
fn hpa_scaler<T: ScaleTarget, C: Clock>(
    target: T,
    clock: C,
    max: u32,
    signal: Arc<Busy>,
    target_percent: f64,
) -> Autoscaler<TargetTracking, T, C> {
    let policy = TargetTracking::new(HpaConfig::default().with_bounds(1, max)).unwrap();
    Autoscaler::new(policy, target, clock, Duration::from_secs(15)).source(
        LoadSignalMetric::utilization("pool", signal, target_percent),
    )
}

#[tokio::test(start_paused = true)]
async fn step_reads_decides_and_applies() {
    let fleet = Fleet::default();
    *fleet.replicas.lock().unwrap() = 2;
    let signal = Arc::new(Busy(Mutex::new(90)));
    let clock = ManualClock::new();
    let mut scaler = hpa_scaler(fleet.clone(), clock.clone(), 10, signal.clone(), 60.0);
    // 90 % against 60 %: ceil(2 × 1.5) = 3.
    let d = scaler.step().await.unwrap();
    assert_eq!(d.desired, 3);
    assert_eq!(*fleet.applied.lock().unwrap(), vec![3]);
    clock.advance(Duration::from_secs(15));
    *signal.0.lock().unwrap() = 60;
    let d = scaler.step().await.unwrap();
    assert_eq!((d.desired, d.at), (3, Duration::from_secs(15)));
    *fleet.fail_reads.lock().unwrap() = true;
    assert!(scaler.step().await.is_err());
    let stats = scaler.stats();
    assert_eq!(
        (stats.evaluations, stats.applied, stats.target_errors),
        (3, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn run_evaluates_on_the_interval() {
    let fleet = Fleet::default();
    *fleet.replicas.lock().unwrap() = 1;
    let signal = Arc::new(Busy(Mutex::new(100)));
    let scaler = hpa_scaler(fleet.clone(), TokioClock, 64, signal, 50.0);
    let handle = tokio::spawn(scaler.run());
    // Ticks at 0, 15, 30 s; full load against 50 % doubles each time (default +100 %).
    tokio::time::sleep(Duration::from_secs(31)).await;
    handle.abort();
    assert_eq!(*fleet.applied.lock().unwrap(), vec![2, 4, 8]);
}

/// A target whose first `apply` fails.
#[derive(Clone, Default)]
struct Flaky {
    fleet: Fleet,
    failures_left: Arc<Mutex<u32>>,
}

impl ScaleTarget for Flaky {
    async fn replicas(&self) -> Result<Replicas, ScaleError> {
        self.fleet.replicas().await
    }

    async fn apply(&self, decision: &Decision) -> Result<(), ScaleError> {
        let fail = {
            let mut left = self.failures_left.lock().unwrap();
            let fail = *left > 0;
            *left = left.saturating_sub(1);
            fail
        };
        if fail {
            return Err(ScaleError::new("conflict"));
        }
        self.fleet.apply(decision).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_apply_is_retried_at_the_full_rate() {
    let target = Flaky::default();
    *target.fleet.replicas.lock().unwrap() = 2;
    *target.failures_left.lock().unwrap() = 1;
    // 100 % busy against 50 %: 2 → 4 (the up limit is max(2 × 2, 2 + 4) = 6).
    let signal = Arc::new(Busy(Mutex::new(100)));
    let clock = ManualClock::new();
    let mut scaler = hpa_scaler(target.clone(), clock.clone(), 10, signal, 50.0);
    assert!(scaler.step().await.is_err());
    clock.advance(Duration::from_secs(5));
    // Had the failed +2 been recorded, the period would start at 0 and allow nothing.
    let d = scaler.step().await.unwrap();
    assert_eq!(d.desired, 4);
    assert_eq!(*target.fleet.applied.lock().unwrap(), vec![4]);
    assert_eq!(scaler.policy().stats().apply_failures, 1);
}
