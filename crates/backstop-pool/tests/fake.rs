//! Pool behaviour against a counting fake manager, under paused Tokio time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backstop_core::{Layer, LoadSignal, Service, ServiceExt, service_fn};
use backstop_pool::{
    AdaptivePoolConfig, Leased, Pool, PoolBuildError, PoolConfig, PoolError, PoolLayer, PoolSet,
    PoolSetConfig, Pooled,
};
use backstop_testkit::assert_fields;
use backstop_testkit::logs::capture_logs;
use common::{Fake, FakeError, config, fake_pool, one_idle_checked, pool};
use parking_lot::Mutex;
use tokio::time::sleep;

/// Lets spawned tasks (the housekeeper, waiters) run to their next timer.
async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_filled_and_refilled() {
    let (fake, pool) = fake_pool(config().max_size(5).min_idle(2));
    settle().await;
    assert_eq!(pool.stats().idle, 2);
    assert_eq!(fake.creates(), 2);

    let held = (pool.get().await.unwrap(), pool.get().await.unwrap());
    assert_eq!(pool.stats().idle, 0);
    sleep(Duration::from_millis(1100)).await;
    let stats = pool.stats();
    assert_fields!(stats, idle: 2, in_use: 2, size: 4);
    drop(held);
    assert_eq!(pool.stats().idle, 4);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_above_min_idle_are_reaped() {
    let (_, pool) = fake_pool(
        config()
            .max_size(5)
            .min_idle(1)
            .idle_timeout(Some(Duration::from_secs(60))),
    );
    let conns = [
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    ];
    drop(conns);
    assert_eq!(pool.stats().idle, 3);
    sleep(Duration::from_secs(59)).await;
    assert_eq!(pool.stats().idle, 3, "nothing idles out early");
    sleep(Duration::from_secs(3)).await;
    let stats = pool.stats();
    assert_eq!(stats.idle, 1, "min_idle is kept: {stats:?}");
    assert_eq!(stats.closed.idle, 2);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_is_enforced_by_the_reaper_with_jitter() {
    let (_, pool) = fake_pool(
        config()
            .max_size(4)
            .max_lifetime(Some(Duration::from_secs(100)))
            .lifetime_jitter(0.1),
    );
    drop(pool.get().await.unwrap());
    sleep(Duration::from_secs(89)).await;
    assert_eq!(pool.stats().closed.lifetime, 0, "jitter takes at most 10 %");
    sleep(Duration::from_secs(13)).await;
    let stats = pool.stats();
    assert_eq!(stats.closed.lifetime, 1);
    assert_eq!(stats.size, 0);
}

#[tokio::test(start_paused = true)]
async fn expired_connections_are_replaced_at_checkout() {
    let (fake, pool) = fake_pool(
        config()
            .max_size(2)
            .max_lifetime(Some(Duration::from_secs(10)))
            .lifetime_jitter(0.0)
            .housekeeping_interval(Duration::from_secs(3600)),
    );
    let first = *pool.get().await.unwrap();
    sleep(Duration::from_secs(11)).await;
    let second = *pool.get().await.unwrap();
    assert_ne!(first, second);
    assert_eq!(fake.creates(), 2);
    assert_eq!(pool.stats().closed.lifetime, 1);
}

#[tokio::test(start_paused = true)]
async fn health_check_is_bypassed_for_recently_used_connections() {
    let (fake, pool) = fake_pool(config().max_size(2));
    drop(pool.get().await.unwrap());
    drop(pool.get().await.unwrap());
    assert_eq!(fake.recycles(), 0, "used within 500 ms: no health check");
    sleep(Duration::from_secs(1)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(fake.recycles(), 1);
}

#[tokio::test(start_paused = true)]
async fn failed_health_check_discards_and_creates_a_new_connection() {
    let (fake, pool) = fake_pool(config().max_size(2));
    let first = *pool.get().await.unwrap();
    sleep(Duration::from_secs(1)).await;
    fake.fail_recycles(true);
    let second = *pool.get().await.unwrap();
    assert_ne!(first, second);
    assert_eq!(pool.stats().closed.health_check, 1);
}

#[tokio::test(start_paused = true)]
async fn keepalive_checks_idle_connections_and_refill_replaces_failures() {
    let (fake, pool) = fake_pool(
        config()
            .max_size(3)
            .min_idle(1)
            .keepalive_interval(Duration::from_secs(30)),
    );
    settle().await;
    assert_eq!(fake.creates(), 1);
    fake.fail_recycles(true);
    sleep(Duration::from_secs(32)).await;
    let stats = pool.stats();
    assert!(stats.closed.health_check >= 1, "{stats:?}");
    assert_eq!(stats.idle, 1, "min_idle refilled: {stats:?}");
}

#[tokio::test(start_paused = true)]
async fn leak_warning_names_the_label_and_the_checkout_site() {
    let (captured, _guard) = capture_logs(tracing::Level::INFO);
    let (_, pool) = fake_pool(
        config()
            .max_size(2)
            .leak_detection_threshold(Duration::from_secs(5)),
    );
    drop(pool.get_labeled("quick").await.unwrap());
    sleep(Duration::from_secs(6)).await;
    assert!(
        !captured.text().contains("leak"),
        "returned in time: no warning"
    );

    let labeled = pool.get_labeled("llm_primary call").await.unwrap();
    let sited = pool.get().await.unwrap();
    sleep(Duration::from_secs(6)).await;
    let text = captured.text();
    assert!(text.contains("possible connection leak"), "{text}");
    assert!(text.contains("llm_primary call"), "{text}");
    assert!(
        text.contains("tests/fake.rs"),
        "checkout site is named: {text}"
    );
    assert_eq!(pool.stats().leaks_suspected, 2);
    drop((labeled, sited));
}

#[tokio::test(start_paused = true)]
async fn create_errors_are_reported_not_hidden_behind_timeouts() {
    let fake = Fake::default();
    fake.fail_creates(true);
    let pool = pool(&fake, config().max_size(1));
    match pool.get().await {
        Err(PoolError::Create(FakeError(message))) => assert!(message.contains("refused")),
        other => panic!("expected the creation error, got {other:?}"),
    }

    // A waiter that times out while others' creations fail gets the real cause.
    fake.create_delay(Duration::from_millis(600));
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|_| ()) }
    });
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|_| ()) }
    });
    settle().await;
    let error = pool.get().await.unwrap_err();
    match &error {
        PoolError::Timeout {
            last_create_error: Some(cause),
            ..
        } => {
            assert!(cause.contains("refused"), "{cause}")
        }
        other => panic!("expected a timeout with its cause, got {other:?}"),
    }
    assert!(
        error.to_string().contains("last connection attempt failed"),
        "{error}"
    );
    assert!(first.await.unwrap().is_err());
    assert!(second.await.unwrap().is_err());
    assert!(pool.stats().timeouts >= 1);
}

#[tokio::test(start_paused = true)]
async fn plain_wait_timeout_when_the_pool_is_busy() {
    let (_, pool) = fake_pool(config().max_size(1));
    let held = pool.get().await.unwrap();
    match pool.get().await {
        Err(PoolError::Timeout {
            rejected,
            waited,
            last_create_error: None,
            ..
        }) => {
            assert_eq!(waited, Duration::from_secs(1));
            assert_eq!(rejected.kind, backstop_core::RejectKind::PoolExhausted);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(held);
    assert!(pool.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn failing_creation_backs_off_instead_of_spinning() {
    let fake = Fake::default();
    fake.fail_creates(true);
    let pool = pool(&fake, config().max_size(4).min_idle(2));
    sleep(Duration::from_secs(60)).await;
    let attempts = fake.creates();
    // One attempt round per second would be 120 creates; backoff doubles to 30 s.
    assert!((4..=20).contains(&attempts), "attempts = {attempts}");
    assert_eq!(pool.stats().create_failures, attempts);

    fake.fail_creates(false);
    sleep(Duration::from_secs(40)).await;
    assert_eq!(pool.stats().idle, 2, "recovers after the backoff");
}

#[tokio::test(start_paused = true)]
async fn cancelled_gets_never_lose_capacity() {
    let (_, pool) = fake_pool(config().max_size(1));

    // Dropped while waiting for a slot.
    let held = pool.get().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(10), pool.get())
            .await
            .is_err()
    );
    drop(held);

    // Dropped during a slow creation.
    let fresh = Fake::default();
    fresh.create_delay(Duration::from_secs(1));
    let slow = common::pool(&fresh, config().max_size(1));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), slow.get())
            .await
            .is_err()
    );
    assert_eq!(slow.stats().size, 0);
    fresh.create_delay(Duration::ZERO);
    assert!(slow.get().await.is_ok());

    // Dropped right after checkout, and dropped at every poll in between.
    for polls in 0..4 {
        let mut get = Box::pin(pool.get());
        for _ in 0..polls {
            if futures::poll!(get.as_mut()).is_ready() {
                break;
            }
        }
        drop(get);
        let stats = pool.stats();
        assert_eq!(stats.in_use, 0, "after {polls} polls: {stats:?}");
    }
    let conn = pool.get().await.unwrap();
    assert_eq!(pool.stats().in_use, 1);
    drop(conn);
    assert_eq!(pool.stats().size, 1);
}

#[tokio::test(start_paused = true)]
async fn a_get_cancelled_mid_health_check_closes_that_connection_and_keeps_capacity() {
    let fake = Fake::default();
    let pool = one_idle_checked(&fake).await;
    fake.recycle_delay(Duration::from_secs(5));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), pool.get())
            .await
            .is_err()
    );
    let stats = pool.stats();
    assert_eq!(stats.closed.health_check, 1, "state unknown: closed");
    assert_fields!(stats, size: 0, in_use: 0; "{stats:?}");
    fake.recycle_delay(Duration::ZERO);
    assert_eq!(
        *pool.get().await.unwrap(),
        2,
        "a fresh connection took its place"
    );
}

/// Many tasks on a small pool, each checkout returned, abandoned at a random poll,
/// discarded or marked broken, with health checks failing now and then: no connection is
/// ever handed to two callers at once, and at the end no capacity is lost or invented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_never_share_a_connection_or_lose_capacity() {
    const TASKS: usize = 16;
    const ROUNDS: usize = 300;
    let fake = Fake::default();
    let pool = Pool::new(
        fake.clone(),
        config()
            .max_size(4)
            .health_check_bypass(Duration::ZERO)
            .wait_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .unwrap();
    let in_use = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (pool, fake, in_use) = (pool.clone(), fake.clone(), Arc::clone(&in_use));
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(task as u64);
                for _ in 0..ROUNDS {
                    if task == 0 {
                        fake.fail_recycles(rng.u8(..10) == 0);
                    }
                    let mut get = Box::pin(pool.get());
                    let abandon_after = (rng.u8(..4) == 0).then(|| rng.usize(..4));
                    let conn = match abandon_after {
                        Some(polls) => {
                            // Yielding between polls lets other tasks return connections
                            // to this waiter before it gives up.
                            for _ in 0..polls {
                                if futures::poll!(get.as_mut()).is_ready() {
                                    break;
                                }
                                tokio::task::yield_now().await;
                            }
                            continue;
                        }
                        None => get.await.expect("a checkout within the wait timeout"),
                    };
                    assert!(
                        in_use.lock().insert(*conn),
                        "connection {} handed out twice",
                        *conn
                    );
                    tokio::task::yield_now().await;
                    in_use.lock().remove(&*conn);
                    match rng.u8(..10) {
                        0 => Pooled::discard(conn),
                        1 => {
                            Pooled::broken_flag(&conn).set();
                            drop(conn);
                        }
                        _ => drop(conn),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = pool.stats();
    assert_fields!(stats, in_use: 0, waiters: 0; "{stats:?}");
    assert!(stats.size <= 4, "{stats:?}");
    assert_eq!(
        stats.created - stats.closed.total(),
        stats.size as u64,
        "{stats:?}"
    );
    assert!(
        stats.closed.health_check > 0 && stats.closed.broken > 0,
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn adaptive_sizing_grows_under_waits_and_shrinks_when_idle() {
    let (captured, _guard) = capture_logs(tracing::Level::INFO);
    let fake = Fake::default();
    let adaptive = AdaptivePoolConfig {
        min_size: 1,
        max_size: 8,
        target_wait: Duration::from_millis(10),
        evaluate_every: Duration::from_secs(2),
        step: 2,
        shrink_below: 0.5,
    };
    let pool = pool(&fake, config().max_size(2).adaptive(adaptive));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    let conn = pool.get().await.unwrap();
                    sleep(Duration::from_millis(100)).await;
                    drop(conn);
                }
            })
        })
        .collect();
    sleep(Duration::from_secs(5)).await;
    let grown = pool.stats().max_size;
    assert!(grown > 2, "grew under waits: {:?}", pool.stats());
    for worker in workers {
        worker.await.unwrap();
    }
    sleep(Duration::from_secs(10)).await;
    let stats = pool.stats();
    assert!(stats.max_size < grown, "shrank when idle: {stats:?}");
    assert!(stats.resizes >= 2);
    let text = captured.text();
    assert!(
        text.contains("pool resized") && text.contains("p95 wait"),
        "{text}"
    );
    assert!(text.contains("peak in use"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn discard_and_layer_close_broken_connections() {
    let (_, pool) = fake_pool(config().max_size(2));
    Pooled::discard(pool.get().await.unwrap());
    assert_eq!(pool.stats().closed.broken, 1);
    assert_eq!(pool.stats().size, 0);

    let layer = PoolLayer::new(pool.clone()).classify(|e: &backstop_core::Error<FakeError>| {
        e.inner().is_some_and(|e| e.0 == "broken pipe")
    });
    let svc = layer.layer(
        service_fn(|leased: Leased<Fake, &'static str>| async move {
            match leased.request {
                "ok" => Ok(*leased.conn),
                other => Err(FakeError(other.to_string())),
            }
        })
        .lift(),
    );
    let id = svc.call("ok").await.unwrap();
    assert!(matches!(
        svc.call("bad request").await,
        Err(backstop_core::Error::Inner(_))
    ));
    assert_eq!(
        svc.call("ok").await.unwrap(),
        id,
        "a plain error keeps the connection"
    );
    assert!(svc.call("broken pipe").await.is_err());
    assert_ne!(
        svc.call("ok").await.unwrap(),
        id,
        "a broken connection is replaced"
    );
    assert_eq!(pool.stats().closed.broken, 2);
}

#[tokio::test(start_paused = true)]
async fn stats_and_load_signal_reflect_use() {
    let (_, pool) = fake_pool(config().max_size(3));
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    sleep(Duration::from_millis(40)).await;
    drop(b);
    let load = pool.load();
    assert_fields!(load, in_flight: 1, queued: 0, capacity: Some(3));
    let stats = pool.stats();
    assert_fields!(stats, created: 2, checkouts: 2, in_use: 1, idle: 1);
    assert_eq!(stats.usage.count, 1);
    assert!(stats.usage.max >= Duration::from_millis(40));
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["closed"]["idle"], 0);
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn closing_the_pool_fails_waiters_and_counts_every_connection_it_closes() {
    let (fake, pool) = fake_pool(config().max_size(2));
    let held = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    let held_too = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|_| ()) }
    });
    settle().await;
    assert_eq!(pool.stats().waiters, 1);

    pool.close();
    assert!(matches!(waiter.await.unwrap(), Err(PoolError::Closed)));
    assert!(matches!(pool.get().await, Err(PoolError::Closed)));
    assert_eq!(
        pool.stats().closed.pool_closed,
        0,
        "both are still checked out"
    );
    drop((held, held_too));
    let stats = pool.stats();
    assert_eq!(stats.closed.pool_closed, 2, "{stats:?}");
    assert_eq!(stats.closed.total(), 2);
    assert_eq!(stats.size, 0);

    let with_idle = common::pool(&fake, config().max_size(1));
    drop(with_idle.get().await.unwrap());
    assert_eq!(with_idle.stats().idle, 1);
    with_idle.close();
    let stats = with_idle.stats();
    assert_eq!((stats.idle, stats.closed.pool_closed), (0, 1), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_stops_background_work() {
    let (fake, pool) = fake_pool(config().max_size(3).min_idle(2));
    settle().await;
    let tasks_with_pool = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert!(tasks_with_pool >= 1);
    drop(pool);
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
    assert_eq!(
        Arc::strong_count(&fake.0),
        1,
        "the manager was dropped with the pool"
    );
}

#[tokio::test]
async fn pool_set_builds_named_pools_from_serde() {
    let config: PoolSetConfig = serde_json::from_str(
        r#"{"llm_primary": {"max_size": 8, "wait_timeout": "2s"},
            "vector_db": {"max_size": 2, "min_idle": 1}}"#,
    )
    .unwrap();
    let set = PoolSet::new(config, |_| Fake::default()).unwrap();
    assert_eq!(
        set.names().collect::<Vec<_>>(),
        ["llm_primary", "vector_db"]
    );
    assert_eq!(
        set.get("llm_primary").unwrap().config().wait_timeout,
        Duration::from_secs(2)
    );
    assert!(set.get("cache").is_none());
    assert_eq!(set.stats()["vector_db"].max_size, 2);

    let bad: PoolSetConfig =
        serde_json::from_str(r#"{"vector_db": {"max_size": 2, "min_idle": 3}}"#).unwrap();
    match PoolSet::new(bad, |_| Fake::default()) {
        Err(PoolBuildError::Config(error)) => assert_eq!(error.field(), "pools.vector_db.min_idle"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn building_without_a_runtime_is_a_typed_error() {
    let result = Pool::new(Fake::default(), PoolConfig::default());
    assert!(matches!(result, Err(PoolBuildError::NoRuntime)));
}

#[tokio::test(start_paused = true)]
async fn layer_refuses_with_pool_exhausted_and_reports_not_ready_when_full() {
    let (_, pool) = fake_pool(config().max_size(1));
    let svc = PoolLayer::new(pool.clone()).layer(
        service_fn(|leased: Leased<Fake, ()>| async move { Ok::<_, FakeError>(*leased.conn) })
            .lift(),
    );
    assert!(svc.readiness().is_ok(), "room to create");
    assert!(svc.call(()).await.is_ok());
    assert!(svc.readiness().is_ok(), "an idle connection");
    let held = pool.get().await.unwrap();
    assert_eq!(
        svc.readiness().unwrap_err().kind,
        backstop_core::RejectKind::PoolExhausted
    );
    let error = svc.call(()).await.unwrap_err();
    assert_eq!(
        error.rejection().map(|r| r.kind),
        Some(backstop_core::RejectKind::PoolExhausted)
    );
    drop(held);
    assert!(svc.readiness().is_ok());
}
