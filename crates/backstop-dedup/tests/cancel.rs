//! Model test: callers arrive at random times and are dropped at random points
//! (leaders included). Every surviving caller must get a value produced by an execution
//! for its key, executions for one key must never overlap, and no entry may leak.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use backstop_dedup::Group;
use backstop_testkit::on_paused_clock;
use proptest::prelude::*;

const KEYS: usize = 3;

#[derive(Debug, Clone)]
struct Caller {
    key: usize,
    arrive_ms: u64,
    cancel_after_ms: Option<u64>,
}

fn caller() -> impl Strategy<Value = Caller> {
    (0..KEYS, 0..60u64, prop::option::of(0..40u64)).prop_map(|(key, arrive_ms, cancel)| Caller {
        key,
        arrive_ms,
        cancel_after_ms: cancel,
    })
}

#[derive(Default)]
struct KeyProbe {
    running: AtomicUsize,
    overlapped: AtomicBool,
    /// Execution ids that ran to completion for this key.
    completed: parking_lot::Mutex<Vec<u64>>,
}

struct Running(Arc<KeyProbe>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

fn run(callers: Vec<Caller>, work_ms: [u64; KEYS]) -> Result<(), TestCaseError> {
    on_paused_clock(async move {
        let group: Group<usize, u64, ()> = Group::new();
        let probes: Arc<Vec<Arc<KeyProbe>>> =
            Arc::new((0..KEYS).map(|_| Arc::new(KeyProbe::default())).collect());
        let ids = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for caller in callers.clone() {
            let group = group.clone();
            let probes = probes.clone();
            let ids = ids.clone();
            let duration = Duration::from_millis(work_ms[caller.key]);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(caller.arrive_ms)).await;
                let key = caller.key;
                let work = group.work(key, move || async move {
                    let probe = Arc::clone(&probes[key]);
                    if probe.running.fetch_add(1, SeqCst) > 0 {
                        probe.overlapped.store(true, SeqCst);
                    }
                    let _running = Running(Arc::clone(&probe));
                    let id = ids.fetch_add(1, SeqCst);
                    // Several await points, so cancellation can land between them.
                    for _ in 0..4 {
                        tokio::time::sleep(duration / 4).await;
                    }
                    probe.completed.lock().push(id);
                    Ok(id)
                });
                match caller.cancel_after_ms {
                    Some(ms) => tokio::time::timeout(Duration::from_millis(ms), work)
                        .await
                        .ok(),
                    None => Some(work.await),
                }
            }));
        }
        let results =
            tokio::time::timeout(Duration::from_secs(3600), futures::future::join_all(tasks))
                .await
                .map_err(|_| TestCaseError::fail("a caller hung"))?;
        for (caller, result) in callers.iter().zip(results) {
            let result = result.map_err(|e| TestCaseError::fail(format!("task failed: {e}")))?;
            match result {
                Some(value) => {
                    let id = value
                        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                        .value;
                    prop_assert!(
                        probes[caller.key].completed.lock().contains(&id),
                        "caller {caller:?} got {id}, not a completed execution of its key"
                    );
                }
                None => prop_assert!(
                    caller.cancel_after_ms.is_some(),
                    "only cancelled callers lack a result"
                ),
            }
        }
        for (key, probe) in probes.iter().enumerate() {
            prop_assert!(
                !probe.overlapped.load(SeqCst),
                "executions for key {key} overlapped"
            );
            prop_assert_eq!(probe.running.load(SeqCst), 0, "work for key {} leaked", key);
        }
        prop_assert_eq!(group.in_flight(), 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_cancellations_never_strand_or_overlap(
        callers in prop::collection::vec(caller(), 1..24),
        work_ms in [4..40u64, 4..40u64, 4..40u64],
    ) {
        run(callers, work_ms)?;
    }
}
