//! The breaker as a layer over a `Service`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backstop_breaker::{Breaker, BreakerLayer, Outcome, State};
use backstop_core::{
    Error, Layer, ManualClock, RejectKind, Service, ServiceExt, Stack, service_fn,
};

mod support;

/// The two-call breaker of `support`, open for 5 s once tripped.
fn opens_after_two_failures(clock: &ManualClock) -> Breaker<ManualClock> {
    support::two_call_breaker(clock, Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn layer_sheds_calls_while_open_and_clones_share_the_circuit() {
    let clock = ManualClock::new();
    let breaker = opens_after_two_failures(&clock);
    let hits = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backend = {
        let hits = hits.clone();
        let healthy = healthy.clone();
        service_fn(move |n: u32| {
            hits.fetch_add(1, Ordering::SeqCst);
            let ok = healthy.load(Ordering::SeqCst);
            async move { if ok { Ok(n) } else { Err("down") } }
        })
        .lift()
    };
    let layer = BreakerLayer::new(breaker.clone());
    let service = Arc::new(Stack::new().layer(layer.clone()).service(backend));
    let twin = layer.layer(service_fn(|n: u32| async move { Ok::<_, &str>(n) }).lift());

    assert!(matches!(service.call(1).await, Err(Error::Inner("down"))));
    assert!(matches!(service.call(2).await, Err(Error::Inner("down"))));
    assert_eq!(breaker.state(), State::Open);
    let shed = service.call(3).await.unwrap_err();
    assert_eq!(
        shed.rejection().unwrap().retry_after,
        Some(Duration::from_secs(5))
    );
    assert!(
        twin.call(4).await.is_err(),
        "services made by one layer share the circuit"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the backend saw no call while open"
    );

    healthy.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(5));
    assert_eq!(service.call(5).await.unwrap(), 5);
    assert_eq!(twin.breaker().state(), State::Closed);
}

#[tokio::test]
async fn layer_classifier_ignores_caller_errors() {
    let breaker = Breaker::builder()
        .count_window(1)
        .minimum_calls(1)
        .build()
        .unwrap();
    let layer =
        BreakerLayer::new(breaker.clone()).classify(|result: &Result<u32, Error<&'static str>>| {
            match result {
                Err(Error::Inner("bad request")) => Outcome::Ignored,
                Err(_) => Outcome::Failure,
                Ok(_) => Outcome::Success,
            }
        });
    let service = layer.layer(service_fn(|_: ()| async { Err::<u32, _>("bad request") }).lift());
    for _ in 0..5 {
        assert!(matches!(
            service.call(()).await,
            Err(Error::Inner("bad request"))
        ));
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().buffered_calls, 0);
}

#[tokio::test]
async fn readiness_reports_an_open_circuit_without_counting_a_rejection() {
    let clock = ManualClock::new();
    let breaker = opens_after_two_failures(&clock);
    let backend = service_fn(|_: u32| async { Err::<u32, _>("down") }).lift();
    let service = BreakerLayer::new(breaker.clone()).layer(backend);
    assert_eq!(service.readiness(), Ok(()));
    for n in 0..2 {
        assert!(service.call(n).await.is_err());
    }
    let refused = service.readiness().unwrap_err();
    assert_eq!(refused.kind, backstop_core::RejectKind::CircuitOpen);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(
        breaker.stats().rejected_calls,
        0,
        "readiness charges nothing"
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(service.readiness(), Ok(()), "the next call would probe");
    let probe = breaker.try_acquire().unwrap();
    assert!(service.readiness().is_err(), "the one probe is out");
    probe.success();
    assert_eq!(service.readiness(), Ok(()));
    breaker.force_open();
    assert!(service.readiness().is_err());
}

#[tokio::test]
async fn a_breaker_refusal_is_the_shared_rejection() {
    let breaker = Breaker::builder()
        .wait_in_open(Duration::from_secs(7))
        .clock(ManualClock::new())
        .build()
        .unwrap();
    breaker.transition_to(State::Open);
    let refused = breaker.try_acquire().unwrap_err();
    assert_eq!(refused.kind, backstop_core::RejectKind::CircuitOpen);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn refusals_from_below_do_not_trip_the_circuit_but_provider_errors_do() {
    let breaker = Breaker::builder()
        .count_window(2)
        .minimum_calls(2)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    // Below the breaker: a rate limit refusing every call, then a provider that fails.
    let refusing = BreakerLayer::new(breaker.clone()).layer(service_fn(|_: u32| async {
        Err::<u32, Error<&str>>(backstop_core::StackError::rejected(
            backstop_core::Rejected::new(RejectKind::RateLimited { quota: 0 }),
        ))
    }));
    for n in 0..10 {
        let refused = refusing.call(n).await.unwrap_err();
        assert_eq!(
            refused.rejection().unwrap().kind,
            RejectKind::RateLimited { quota: 0 },
            "the refusal below passes through unchanged"
        );
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "a local refusal says nothing of the provider"
    );
    let failing = BreakerLayer::new(breaker.clone())
        .layer(service_fn(|_: u32| async { Err::<u32, _>("503") }).lift());
    for n in 0..2 {
        assert!(matches!(failing.call(n).await, Err(Error::Inner("503"))));
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        failing.call(3).await.unwrap_err().rejection().unwrap().kind,
        RejectKind::CircuitOpen
    );
}
