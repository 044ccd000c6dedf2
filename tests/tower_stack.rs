//! Backstop layers inside `tower::ServiceBuilder`, over a tower service, and a tower
//! service inside a Backstop stack: the path axum, tonic and hyper users take.

#![cfg(feature = "full")]

use backstop::breaker::{Breaker, BreakerError, BreakerLayer};
use backstop::core::tower::{FromTower, TowerLayer};
use backstop::core::{Service as _, Stack};
use backstop::dedup::{DedupLayer, Group};
use backstop::limit::{
    Bulkhead, BulkheadConfig, BulkheadLayer, BulkheadServiceError, KeyedRateLimiter, Quota,
    RateLimitError, RateLimitLayer,
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
        .layer(TowerLayer::new(RateLimitLayer::keyed(
            per_user,
            |ask: &Ask| ask.user,
            |_| 1,
        )))
        .layer(TowerLayer::new(BreakerLayer::new(breaker.clone())))
        .service(provider(calls.clone()));

    for _ in 0..3 {
        let reply = service.clone().oneshot(ask("ann", "hi")).await;
        assert_eq!(reply.unwrap(), "answer to hi");
    }
    let limited = service.clone().oneshot(ask("ann", "hi")).await.unwrap_err();
    assert!(matches!(limited, RateLimitError::Limited(_)), "{limited:?}");
    assert!(limited.retry_after().is_some());

    for user in ["bob", "cy"] {
        let failing = Ask {
            fail: true,
            ..ask(user, "x")
        };
        let error = service.clone().oneshot(failing).await.unwrap_err();
        assert!(matches!(
            error,
            RateLimitError::Inner(BreakerError::Inner(ProviderFailed))
        ));
    }
    let before = calls.load(Ordering::SeqCst);
    let shed = service.clone().oneshot(ask("dee", "y")).await.unwrap_err();
    assert!(
        matches!(shed, RateLimitError::Inner(BreakerError::Rejected(_))),
        "{shed:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "an open circuit never calls"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dedup_layer_above_a_bulkhead_coalesces_identical_calls_to_a_tower_service() {
    let calls = Arc::new(AtomicU64::new(0));
    let group: Group<&'static str, String, BulkheadServiceError<ProviderFailed>> = Group::new();
    let bulkhead = Bulkhead::new(BulkheadConfig {
        max_concurrent: 1,
        max_queued: 8,
        ..BulkheadConfig::default()
    })
    .unwrap();
    let service = ServiceBuilder::new()
        .layer(TowerLayer::new(
            DedupLayer::new(group.clone()).key(|ask: &Ask| ask.prompt),
        ))
        .layer(TowerLayer::new(BulkheadLayer::new(bulkhead.clone())))
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
async fn a_bulkhead_layer_caps_concurrent_calls_across_clones() {
    let calls = Arc::new(AtomicU64::new(0));
    let bulkhead = Bulkhead::new(BulkheadConfig {
        max_concurrent: 2,
        max_queued: 0,
        ..BulkheadConfig::default()
    })
    .unwrap();
    let service = ServiceBuilder::new()
        .layer(TowerLayer::new(BulkheadLayer::new(bulkhead.clone())))
        .service(provider(calls.clone()));

    let replies = join_all((0..3).map(|_| service.clone().oneshot(ask("ann", "q")))).await;
    let full = replies
        .iter()
        .filter(|reply| matches!(reply, Err(BulkheadServiceError::Bulkhead(_))))
        .count();
    assert_eq!((calls.load(Ordering::SeqCst), full), (2, 1));
    assert_eq!(bulkhead.stats().in_flight, 0, "permits released");
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
        .service(FromTower::new(tower_provider));

    let replies = join_all((0..4).map(|_| stack.call(ask("ann", "q")))).await;
    assert!(replies.iter().all(Result::is_ok), "{replies:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(breaker.stats().buffered_calls, 4);
}
