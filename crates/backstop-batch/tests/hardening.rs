//! Issue 19: no configuration value or user callback can crash the batcher, kill its
//! dispatcher or allocate without bound.

use backstop_batch::{BatchConfig, BatchError, Batcher, MAX_BATCH_SIZE};
use backstop_core::config::Validate;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A batch key whose `Hash` panics once when armed: user code the dispatcher runs.
#[derive(Clone)]
struct Touchy(Arc<AtomicBool>);

impl Hash for Touchy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if self.0.swap(false, Ordering::Relaxed) {
            panic!("key hash bug");
        }
        0u8.hash(state);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Touchy {}

async fn times_ten(items: Vec<u32>) -> Result<Vec<u32>, std::io::Error> {
    Ok(items.into_iter().map(|n| n * 10).collect())
}

#[tokio::test(start_paused = true)]
async fn the_dispatcher_survives_a_panic_in_one_iteration() {
    let armed = Arc::new(AtomicBool::new(false));
    let key = Touchy(armed.clone());
    let batcher = Batcher::builder(times_ten)
        .max_batch_size(8)
        .max_delay(Duration::from_millis(10))
        .key(move |_: &u32| key.clone())
        .build()
        .unwrap();
    let mut first = Box::pin(batcher.submit(1));
    // Queued (its key hashed once, unarmed); the dispatcher hashes it again when the
    // delay runs out and takes the batch.
    assert!(futures::poll!(first.as_mut()).is_pending());
    armed.store(true, Ordering::Relaxed);
    assert_eq!(first.await.unwrap(), 10);
    assert_eq!(batcher.submit(2).await.unwrap(), 20);
    let stats = batcher.stats();
    assert_eq!(stats.dispatcher_panics, 1);
    assert_eq!(stats.succeeded, 2);
    assert!(!batcher.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_key_closure_fails_only_its_own_item() {
    let batcher = Batcher::builder(times_ten)
        .max_delay(Duration::from_millis(1))
        .key(|n: &u32| {
            assert!(*n != 13, "unlucky key");
            *n % 2
        })
        .build()
        .unwrap();
    match batcher.submit(13).await {
        Err(BatchError::Panicked(panicked)) => assert_eq!(panicked.message(), "unlucky key"),
        other => panic!("expected a contained panic, got {other:?}"),
    }
    assert_eq!(batcher.submit(4).await.unwrap(), 40);
    let stats = batcher.stats();
    assert_eq!(stats.callback_panics, 1);
    assert_eq!(stats.queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_priority_closure_fails_only_its_own_item() {
    let batcher = Batcher::builder(times_ten)
        .max_delay(Duration::from_millis(1))
        .priority_levels(2)
        .priority(|n: &u32| if *n == 0 { panic!("no level") } else { 1 })
        .build()
        .unwrap();
    assert!(matches!(
        batcher.submit(0).await,
        Err(BatchError::Panicked(_))
    ));
    assert_eq!(batcher.submit(3).await.unwrap(), 30);
}

#[test]
fn absurd_sizes_and_durations_are_refused_at_build() {
    let huge = Duration::from_secs(150_000_000_000_000 * 86_400);
    let batcher = |config: BatchConfig| Batcher::new(config, times_ten).map(|_| ());
    let cases = [
        (
            BatchConfig {
                max_batch_size: 1 << 40,
                ..BatchConfig::default()
            },
            "max_batch_size",
        ),
        (
            BatchConfig {
                max_batch_size: MAX_BATCH_SIZE + 1,
                ..BatchConfig::default()
            },
            "max_batch_size",
        ),
        (
            BatchConfig {
                max_delay: huge,
                ..BatchConfig::default()
            },
            "max_delay",
        ),
        (
            BatchConfig {
                queue_timeout: Some(huge),
                ..BatchConfig::default()
            },
            "queue_timeout",
        ),
    ];
    for (config, field) in cases {
        assert_eq!(config.validate().unwrap_err().field(), field);
        assert_eq!(batcher(config).unwrap_err().field(), field);
    }
    let from_file: BatchConfig =
        serde_json::from_str(r#"{"max_delay": "150000000000000d"}"#).unwrap();
    assert_eq!(from_file.validate().unwrap_err().field(), "max_delay");
}

#[tokio::test(start_paused = true)]
async fn the_largest_batch_size_builds_and_serves() {
    let batcher = Batcher::builder(times_ten)
        .max_batch_size(MAX_BATCH_SIZE)
        .max_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    assert_eq!(batcher.submit(5).await.unwrap(), 50);
    assert_eq!(batcher.stats().batch_size.max, 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_reports_a_full_queue_and_a_closed_batcher() {
    use backstop_core::{RejectKind, Service};
    let batcher = Batcher::builder(times_ten)
        .queue_capacity(1)
        .max_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    assert_eq!(batcher.readiness(), Ok(()));
    let mut queued = Box::pin(batcher.submit(1));
    assert!(futures::poll!(queued.as_mut()).is_pending());
    assert_eq!(batcher.readiness().unwrap_err().kind, RejectKind::QueueFull);
    assert_eq!(queued.await.unwrap(), 10);
    assert_eq!(batcher.readiness(), Ok(()));
    batcher.close();
    assert_eq!(batcher.readiness().unwrap_err().kind, RejectKind::Closed);
}

#[test]
fn refusals_map_to_the_shared_rejection_and_failures_do_not() {
    use backstop_core::RejectKind;
    let kind = |error: BatchError| error.rejection().map(|r| r.kind);
    assert_eq!(kind(BatchError::QueueFull), Some(RejectKind::QueueFull));
    assert_eq!(
        kind(BatchError::QueueTimeout {
            waited: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
        }),
        Some(RejectKind::Timeout)
    );
    assert_eq!(kind(BatchError::Closed), Some(RejectKind::Closed));
    assert_eq!(kind(BatchError::HandlerPanicked), None);
}
