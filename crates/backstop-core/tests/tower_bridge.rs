//! Backstop layers inside `tower::ServiceBuilder`, and tower services inside Backstop
//! stacks, in both directions.
#![cfg(feature = "tower")]

use backstop_core::tower::{FromTower, IntoTower, TowerLayer};
use backstop_core::{Layer, Service, Stack, service_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::{ServiceBuilder, ServiceExt as _};

/// A Backstop layer that refuses once it has admitted `limit` calls, shared by clones.
#[derive(Clone)]
struct Budget {
    admitted: Arc<AtomicUsize>,
    limit: usize,
}

struct Budgeted<S> {
    inner: S,
    budget: Budget,
}

impl<S> Layer<S> for Budget {
    type Service = Budgeted<S>;
    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted {
            inner,
            budget: self.clone(),
        }
    }
}

impl<S> Service<u32> for Budgeted<S>
where
    S: Service<u32, Response = u32, Error = String>,
{
    type Response = u32;
    type Error = String;

    async fn call(&self, req: u32) -> Result<u32, String> {
        if self.budget.admitted.fetch_add(1, Ordering::SeqCst) >= self.budget.limit {
            return Err("over budget".to_string());
        }
        self.inner.call(req).await
    }
}

fn budget(limit: usize) -> Budget {
    Budget {
        admitted: Arc::new(AtomicUsize::new(0)),
        limit,
    }
}

#[tokio::test]
async fn backstop_layer_works_inside_tower_service_builder() {
    let svc = ServiceBuilder::new()
        .layer(TowerLayer::new(budget(2)))
        .map_response(|n: u32| n * 10)
        .service_fn(|n: u32| async move { Ok::<_, String>(n + 1) });
    assert_eq!(svc.clone().oneshot(1).await, Ok(20));
    assert_eq!(svc.clone().oneshot(2).await, Ok(30));
    assert_eq!(svc.oneshot(3).await, Err("over budget".to_string()));
}

#[tokio::test]
async fn clones_of_a_bridged_service_share_one_budget() {
    let svc = ServiceBuilder::new()
        .layer(TowerLayer::new(budget(3)))
        .service_fn(|n: u32| async move { Ok::<_, String>(n) });
    let results = futures::future::join_all((0..5).map(|n| svc.clone().oneshot(n))).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
}

#[tokio::test]
async fn tower_layers_wrap_a_backstop_service() {
    let backstop_svc = service_fn(|n: u32| async move { Ok::<_, String>(n * 2) });
    let svc = ServiceBuilder::new()
        .concurrency_limit(1)
        .map_err(|e: String| format!("wrapped: {e}"))
        .service(IntoTower::new(backstop_svc));
    assert_eq!(svc.oneshot(21).await, Ok(42));
}

#[tokio::test]
async fn tower_service_runs_inside_a_backstop_stack_and_back() {
    let tower_svc = ServiceBuilder::new()
        .buffer(8)
        .service_fn(|n: u32| async move { Ok::<_, String>(n + 100) });
    let tower_svc = tower_svc.map_err(|e| e.to_string());
    let stack = Arc::new(
        Stack::new()
            .layer(budget(1))
            .service(FromTower::new(tower_svc)),
    );
    assert_eq!(stack.call(1).await, Ok(101));
    assert_eq!(stack.call(2).await, Err("over budget".to_string()));

    let round_trip = IntoTower::from_arc(stack);
    assert_eq!(round_trip.oneshot(3).await, Err("over budget".to_string()));
}

#[tokio::test]
async fn tower_readiness_errors_reach_the_backstop_caller() {
    // A buffer whose worker has gone away fails in poll_ready; the bridge must surface
    // that error instead of calling the service.
    let (tower_svc, worker) = tower::buffer::Buffer::pair(
        tower::service_fn(|n: u32| async move { Ok::<_, String>(n) }),
        1,
    );
    drop(worker);
    let bridged = FromTower::new(tower_svc);
    let error = bridged.call(1).await.unwrap_err();
    assert!(error.to_string().contains("closed"), "{error}");
}

/// A service that reports itself full until `open` is set: what a full bulkhead or an
/// open circuit reports through `readiness`. Clones share the switch and the count.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Service<u32> for Gate {
    type Response = u32;
    type Error = backstop_core::Error<std::convert::Infallible>;

    async fn call(&self, n: u32) -> Result<u32, Self::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(n)
    }

    fn readiness(&self) -> Result<(), backstop_core::Rejected> {
        if self.open.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(backstop_core::Rejected::new(
                backstop_core::RejectKind::ConcurrencyLimited,
            ))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn load_shed_sheds_in_front_of_a_service_that_is_not_ready() {
    let gate = Gate::default();
    let shed = ServiceBuilder::new()
        .load_shed()
        .service(IntoTower::new(gate.clone()));
    let mut shed_count = 0;
    for n in 0..5 {
        match shed.clone().oneshot(n).await {
            Err(e) if e.is::<tower::load_shed::error::Overloaded>() => shed_count += 1,
            other => panic!("expected a shed, got {other:?}"),
        }
    }
    assert_eq!(shed_count, 5);
    assert_eq!(
        gate.calls.load(Ordering::SeqCst),
        0,
        "no shed request reached the service"
    );

    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(shed.oneshot(7).await.unwrap(), 7);
    assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_caller_is_woken_when_the_service_becomes_ready() {
    let gate = Gate::default();
    let waiting = tokio::spawn(IntoTower::new(gate.clone()).oneshot(3));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(waiting.await.unwrap().unwrap(), 3);
}
