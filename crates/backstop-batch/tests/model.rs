//! Whole-batcher properties: random arrivals under paused time, and a real-thread stress.

use backstop_batch::{BatchConfig, Batcher};
use backstop_testkit::assert_fields;
use backstop_testkit::on_paused_clock;
use futures::FutureExt;
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An item: (id, key, priority).
type Item = (u32, u8, usize);
type Batches = Arc<Mutex<Vec<Vec<Item>>>>;

fn recording_batcher(
    config: BatchConfig,
    batches: &Batches,
    cost: Duration,
) -> Batcher<Item, u32, u8> {
    let log = batches.clone();
    Batcher::builder(move |batch: Vec<Item>| {
        log.lock().unwrap().push(batch.clone());
        async move {
            if !cost.is_zero() {
                tokio::time::sleep(cost).await;
            }
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(batch.iter().map(|item| item.0).collect::<Vec<_>>())
        }
    })
    .config(config)
    .key(|item: &Item| item.1)
    .priority(|item: &Item| item.2)
    .build()
    .unwrap()
}

/// No batch exceeds the max size or mixes keys, and no item is in two batches.
fn check_batches(batches: &Batches, max: usize) -> HashSet<u32> {
    let mut dispatched = HashSet::new();
    for batch in batches.lock().unwrap().iter() {
        assert!(
            !batch.is_empty() && batch.len() <= max,
            "batch of {}",
            batch.len()
        );
        assert!(
            batch.iter().all(|item| item.1 == batch[0].1),
            "mixed keys: {batch:?}"
        );
        for item in batch {
            assert!(
                dispatched.insert(item.0),
                "item {} dispatched twice",
                item.0
            );
        }
    }
    dispatched
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random arrival gaps, keys, priorities and impatient callers: each patient item gets
    /// exactly its own result; an impatient one is dispatched at most once.
    #[test]
    fn every_item_gets_exactly_its_own_result(
        arrivals in proptest::collection::vec((0u64..4, 0u8..3, 0usize..3, proptest::option::of(0u64..6)), 1..60),
        max_batch_size in 1usize..6,
        max_delay_ms in 0u64..5,
        max_concurrent_batches in 1usize..3,
        preferred in proptest::option::of(1usize..6),
    ) {
        let config = BatchConfig {
            max_batch_size,
            max_delay: Duration::from_millis(max_delay_ms),
            max_concurrent_batches,
            preferred_batch_sizes: preferred.filter(|p| *p <= max_batch_size).into_iter().collect(),
            priority_levels: 3,
            priority_aging: Some(Duration::from_millis(3)),
            queue_capacity: 16,
            ..BatchConfig::default()
        };
        let batches = Batches::default();
        let outcomes = on_paused_clock(async {
            let batcher = recording_batcher(config, &batches, Duration::from_millis(2));
            let mut callers = Vec::new();
            for (id, (gap, key, priority, patience)) in arrivals.iter().enumerate() {
                tokio::time::sleep(Duration::from_millis(*gap)).await;
                let batcher = batcher.clone();
                let item = (id as u32, *key, *priority);
                let patience = patience.map(Duration::from_millis);
                callers.push(tokio::spawn(async move {
                    let submit = batcher.submit(item);
                    match patience {
                        Some(patience) => tokio::time::timeout(patience, submit).await.ok(),
                        None => Some(submit.await),
                    }
                }));
            }
            let mut outcomes = Vec::new();
            for caller in callers {
                outcomes.push(caller.await.unwrap());
            }
            outcomes
        });
        let dispatched = check_batches(&batches, max_batch_size);
        for (id, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Some(result) => {
                    prop_assert_eq!(result.unwrap(), id as u32);
                    prop_assert!(dispatched.contains(&(id as u32)));
                }
                None => prop_assert!(arrivals[id].3.is_some()),
            }
        }
    }
}

#[test]
fn many_submitters_on_many_threads_get_their_own_results() {
    const SUBMITTERS: u32 = 16;
    const PER_SUBMITTER: u32 = 250;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let batches = Batches::default();
    let config = BatchConfig {
        max_batch_size: 8,
        max_delay: Duration::from_micros(200),
        max_concurrent_batches: 3,
        priority_levels: 3,
        queue_capacity: 32,
        ..BatchConfig::default()
    };
    let batcher = recording_batcher(config, &batches, Duration::ZERO);
    let cancelled = runtime.block_on(async {
        let mut submitters = Vec::new();
        for submitter in 0..SUBMITTERS {
            let batcher = batcher.clone();
            submitters.push(tokio::spawn(async move {
                let mut cancelled = 0;
                for n in 0..PER_SUBMITTER {
                    let id = submitter * PER_SUBMITTER + n;
                    let item = (id, (id % 4) as u8, (id % 3) as usize);
                    if n % 10 == 9 {
                        // Give up at whatever await point the first poll reached.
                        let mut gone = batcher.submit(item).boxed();
                        if (&mut gone).now_or_never().is_none() {
                            cancelled += 1;
                        }
                    } else {
                        assert_eq!(batcher.submit(item).await.unwrap(), id);
                    }
                }
                cancelled
            }));
        }
        let mut cancelled = 0;
        for submitter in submitters {
            cancelled += submitter.await.unwrap();
        }
        cancelled
    });
    check_batches(&batches, 8);
    let stats = batcher.stats();
    let patient = u64::from(SUBMITTERS * PER_SUBMITTER * 9 / 10);
    let impatient = u64::from(SUBMITTERS * PER_SUBMITTER) - patient;
    // Every queued item was either removed by its departing caller or answered (an
    // impatient caller may still have been answered, read or not); nothing else happened.
    assert_eq!(stats.submitted, stats.succeeded + stats.cancelled);
    assert!(stats.succeeded >= patient + (impatient - cancelled));
    assert!(stats.cancelled + stats.discarded <= cancelled);
    assert_fields!(stats, queued: 0, in_flight_batches: 0, failed: 0);
}
