//! Backstop layers inside `tower::ServiceBuilder`, over a tower service, and a tower
//! service inside a Backstop stack: the path axum, tonic and hyper users take.

#![cfg(feature = "full")]

use backstop::breaker::{Breaker, BreakerLayer};
use backstop::core::tower::{FromTower, IntoTower, TowerLayer};
use backstop::core::{Error, Layer as _, RejectKind, Service as _, ServiceExt as _, Stack};
use backstop::dedup::{DedupLayer, Group};
use backstop::limit::{
    Bulkhead, BulkheadConfig, BulkheadLayer, KeyedRateLimiter, Quota, RateLimitLayer,
};
use futures::future::join_all;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt as _};

#[derive(Debug, Clone)]
struct Ask {
    user: &'static str,
    prompt: &'static str,
    fail: bool,
}

fn ask(user: &'static str, prompt: &'static str) -> Ask {
    Ask {
        user,
        prompt,
        fail: false,
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("provider failed")]
struct ProviderFailed;

/// A tower service standing in for the provider; counts the calls that reach it.
fn provider(
    calls: Arc<AtomicU64>,
) -> impl tower::Service<Ask, Response = String, Error = ProviderFailed, Future: Send> + Clone {
    tower::service_fn(move |ask: Ask| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if ask.fail {
                Err(ProviderFailed)
            } else {
                Ok(format!("answer to {}", ask.prompt))
            }
        }
    })
}

/// A bulkhead of `max_concurrent` slots and `max_queued` places in its queue.
fn bulkhead(max_concurrent: usize, max_queued: usize) -> Bulkhead {
    Bulkhead::new(BulkheadConfig {
        max_concurrent,
        max_queued,
        ..BulkheadConfig::default()
    })
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn clones_of_a_service_builder_stack_share_one_limit_and_one_circuit() {
    let calls = Arc::new(AtomicU64::new(0));
    let per_user = Arc::new(KeyedRateLimiter::new(
        Quota::per_minute(60).unwrap().with_burst(3).unwrap(),
    ));
    let breaker = Breaker::builder()
        .name("provider")
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(60))
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(TowerLayer::new(
            RateLimitLayer::new(per_user).key(|ask: &Ask| ask.user),
        ))
        .layer(TowerLayer::new(BreakerLayer::new(breaker.clone())))
        .map_err(Error::Inner)
        .service(provider(calls.clone()));

    for _ in 0..3 {
        let reply = service.clone().oneshot(ask("ann", "hi")).await;
        assert_eq!(reply.unwrap(), "answer to hi");
    }
    let limited = service.clone().oneshot(ask("ann", "hi")).await.unwrap_err();
    assert!(
        matches!(limited, Error::Rejected(r) if r.kind == RejectKind::RateLimited { quota: 0 }),
        "{limited:?}"
    );
    assert!(limited.retry_after().is_some());

    for user in ["bob", "cy"] {
        let failing = Ask {
            fail: true,
            ..ask(user, "x")
        };
        let error = service.clone().oneshot(failing).await.unwrap_err();
        assert!(matches!(error, Error::Inner(ProviderFailed)));
    }
    let before = calls.load(Ordering::SeqCst);
    // Through tower an open circuit is "not ready": the caller waits in `poll_ready` (tower's
    // backpressure; `LoadShed` in front turns it into an immediate error, see below).
    let waited = tokio::time::timeout(
        Duration::from_secs(1),
        service.clone().oneshot(ask("dee", "y")),
    )
    .await;
    assert!(waited.is_err(), "not ready while open: {waited:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "an open circuit never calls"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dedup_layer_above_a_bulkhead_coalesces_identical_calls_to_a_tower_service() {
    let calls = Arc::new(AtomicU64::new(0));
    let group: Group<&'static str, String, Arc<Error<ProviderFailed>>> = Group::new();
    let bulkhead = bulkhead(1, 8);
    let service = ServiceBuilder::new()
        .layer(TowerLayer::new(
            DedupLayer::new(group.clone()).key(|ask: &Ask| ask.prompt),
        ))
        .layer(TowerLayer::new(BulkheadLayer::new(bulkhead.clone())))
        .map_err(Error::Inner)
        .service(provider(calls.clone()));

    let same = (0..10).map(|_| service.clone().oneshot(ask("ann", "plan")));
    for reply in join_all(same).await {
        assert_eq!(reply.unwrap(), "answer to plan");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "ten identical prompts, one call"
    );
    assert_eq!(group.stats().coalesced, 9);

    let distinct = ["a", "b", "c"].map(|prompt| service.clone().oneshot(ask("ann", prompt)));
    for reply in join_all(distinct).await {
        assert!(reply.is_ok());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        bulkhead.stats().admitted,
        4,
        "one slot: the distinct calls queued, all served"
    );
}

#[tokio::test(start_paused = true)]
async fn through_tower_a_full_bulkhead_is_backpressure_shared_by_every_clone() {
    let calls = Arc::new(AtomicU64::new(0));
    let bulkhead = bulkhead(2, 0);
    let service = ServiceBuilder::new()
        .layer(TowerLayer::new(BulkheadLayer::new(bulkhead.clone())))
        .map_err(Error::Inner)
        .service(provider(calls.clone()));

    let started = tokio::time::Instant::now();
    let replies = join_all((0..3).map(|_| service.clone().oneshot(ask("ann", "q")))).await;
    assert!(replies.iter().all(Result::is_ok), "{replies:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "two slots across all clones: the third call waited for one"
    );
    assert_eq!(bulkhead.stats().in_flight, 0, "permits released");
    assert_eq!(
        bulkhead.stats().rejected_full,
        0,
        "waited in poll_ready, never refused"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tower_service_runs_inside_a_backstop_stack() {
    let calls = Arc::new(AtomicU64::new(0));
    let tower_provider = ServiceBuilder::new()
        .concurrency_limit(2)
        .service(provider(calls.clone()));
    let breaker = Breaker::builder().name("inner").build().unwrap();
    let stack = Stack::new()
        .layer(BreakerLayer::new(breaker.clone()))
        .service(FromTower::new(tower_provider).lift());

    let replies = join_all((0..4).map(|_| stack.call(ask("ann", "q")))).await;
    assert!(replies.iter().all(Result::is_ok), "{replies:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(breaker.stats().buffered_calls, 4);
}

#[tokio::test(start_paused = true)]
async fn tower_load_shed_in_front_of_a_full_bulkhead_sheds_instead_of_queueing() {
    let calls = Arc::new(AtomicU64::new(0));
    let bulkhead = bulkhead(1, 0);
    let guarded =
        BulkheadLayer::new(bulkhead.clone()).layer(FromTower::new(provider(calls.clone())).lift());
    let service = ServiceBuilder::new()
        .load_shed()
        .service(IntoTower::new(guarded));

    // One call holds the only slot; the next five find the bulkhead full.
    let held = bulkhead.acquire().await.unwrap();
    let mut shed = 0;
    for _ in 0..5 {
        let error = service.clone().oneshot(ask("ann", "q")).await.unwrap_err();
        if error.is::<tower::load_shed::error::Overloaded>() {
            shed += 1;
        }
    }
    assert_eq!(shed, 5, "LoadShed saw the full bulkhead through poll_ready");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    drop(held);
    assert_eq!(
        service.clone().oneshot(ask("ann", "q")).await.unwrap(),
        "answer to q"
    );
}
