//! The async driver, on paused tokio time and a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_core::{LoadSignal, LoadSnapshot, ManualClock, TokioClock};
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

#[tokio::test(start_paused = true)]
async fn step_reads_decides_and_applies() {
    let fleet = Fleet::default();
    *fleet.replicas.lock().unwrap() = 2;
    let signal = Arc::new(Busy(Mutex::new(90)));
    let clock = ManualClock::new();
    let policy = TargetTracking::new(HpaConfig::default().with_bounds(1, 10)).unwrap();
    let mut scaler = Autoscaler::new(
        policy,
        fleet.clone(),
        clock.clone(),
        Duration::from_secs(15),
    )
    .source(LoadSignalMetric::utilization("pool", signal.clone(), 60.0));
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
    let policy = TargetTracking::new(HpaConfig::default().with_bounds(1, 64)).unwrap();
    let scaler = Autoscaler::new(policy, fleet.clone(), TokioClock, Duration::from_secs(15))
        .source(LoadSignalMetric::utilization("pool", signal, 50.0));
    let handle = tokio::spawn(scaler.run());
    // Ticks at 0, 15, 30 s; full load against 50 % doubles each time (default +100 %).
    tokio::time::sleep(Duration::from_secs(31)).await;
    handle.abort();
    assert_eq!(*fleet.applied.lock().unwrap(), vec![2, 4, 8]);
}
