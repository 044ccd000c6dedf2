//! Issue 19: no configuration value or manager callback can crash, hang or kill the pool.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use backstop_core::TokioClock;
use backstop_pool::{MAX_POOL_SIZE, Manager, Metrics, Pool, PoolConfig, PoolError, RecycleResult};
use common::{config, one_idle_checked, pool};
use tokio::time::sleep;

/// Panics in whichever callback it is told to: `create` for the first `panic_creates`
/// calls, `recycle` and `detach` while `panic_checks` is set.
#[derive(Clone, Default)]
struct Panicky {
    creates: Arc<AtomicU64>,
    panic_creates: Arc<AtomicU64>,
    panic_checks: Arc<AtomicU64>,
}

impl Manager for Panicky {
    type Type = u64;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u64, std::io::Error> {
        let n = self.creates.fetch_add(1, SeqCst) + 1;
        if self
            .panic_creates
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
            .is_ok()
        {
            panic!("driver bug creating #{n}");
        }
        Ok(n)
    }

    async fn recycle(&self, _: &mut u64, _: &Metrics) -> RecycleResult<std::io::Error> {
        if self.panic_checks.load(SeqCst) > 0 {
            panic!("driver bug in ping");
        }
        Ok(())
    }

    fn detach(&self, _: &mut u64) {
        if self.panic_checks.load(SeqCst) > 0 {
            panic!("driver bug in detach");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_create_is_a_typed_error_for_the_caller() {
    let manager = Panicky::default();
    manager.panic_creates.store(1, SeqCst);
    let pool = pool(&manager, config().max_size(2));
    match pool.get().await {
        Err(PoolError::Panicked(p)) => {
            assert_eq!(p.site(), "manager.create");
            assert_eq!(p.message(), "driver bug creating #1");
        }
        Err(other) => panic!("expected a contained panic, got {other:?}"),
        Ok(_) => panic!("expected a contained panic, got a connection"),
    }
    assert_eq!(pool.stats().panicked, 1);
    // The slot the panicking create held was given back.
    assert_eq!(*pool.get().await.unwrap(), 2);
    assert_eq!(pool.stats().size, 1);
}

#[tokio::test(start_paused = true)]
async fn panicking_recycle_and_detach_close_the_connection_without_panicking() {
    let manager = Panicky::default();
    let pool = one_idle_checked(&manager).await;
    manager.panic_checks.store(1, SeqCst);
    sleep(Duration::from_millis(10)).await;
    // The idle connection's health check panics, detaching it panics too: both are
    // contained, and the caller gets a fresh connection.
    let conn = pool.get().await.unwrap();
    assert_eq!(*conn, 2);
    assert_eq!(pool.stats().panicked, 2);
}

/// One panic in `create` while housekeeping filled `min_idle` used to kill the task for
/// the life of the pool.
#[tokio::test(start_paused = true)]
async fn housekeeping_survives_a_panicking_create_and_keeps_min_idle() {
    let manager = Panicky::default();
    manager.panic_creates.store(1, SeqCst);
    let pool = pool(&manager, config().max_size(4).min_idle(2));
    sleep(Duration::from_secs(5)).await;
    let stats = pool.stats();
    assert_eq!(stats.idle, 2, "{stats:?}");
    assert_eq!(stats.panicked, 1);
    // Still alive: it refills after the idle connections are taken.
    let held = (pool.get().await.unwrap(), pool.get().await.unwrap());
    sleep(Duration::from_secs(5)).await;
    assert_eq!(pool.stats().idle, 2);
    drop(held);
}

#[test]
fn huge_values_are_refused_at_validation() {
    let huge = Duration::from_secs(150_000_000_000_000 * 86_400);
    for (config, field) in [
        (config().wait_timeout(huge).build(), "wait_timeout"),
        (
            config().keepalive_interval(huge).build(),
            "keepalive_interval",
        ),
        (config().create_timeout(huge).build(), "create_timeout"),
        (config().max_size(1 << 40).build(), "max_size"),
        (config().max_size(MAX_POOL_SIZE + 1).build(), "max_size"),
    ] {
        assert_eq!(config.unwrap_err().field(), field);
    }
    let parsed: PoolConfig = serde_json::from_str(r#"{ "max_size": 1099511627776 }"#).unwrap();
    assert!(Pool::new(Panicky::default(), parsed).is_err());
}

/// The largest accepted values work: no panic, no allocation proportional to them.
#[tokio::test(start_paused = true)]
async fn the_largest_accepted_values_work() {
    let longest = backstop_core::config::MAX_DURATION;
    let manager = Panicky::default();
    let pool = Pool::with_clock(
        manager,
        config()
            .max_size(MAX_POOL_SIZE)
            .min_idle(1)
            .wait_timeout(longest)
            .keepalive_interval(longest)
            .build()
            .unwrap(),
        TokioClock,
    )
    .unwrap();
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| pool.get())).await;
    assert!(held.iter().all(Result::is_ok));
    sleep(Duration::from_secs(2)).await;
    assert!(pool.stats().idle >= 1, "housekeeping still keeps min_idle");
}
