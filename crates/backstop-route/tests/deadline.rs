//! One deadline over the whole chain, and cancellation.

mod common;

use backstop_core::{Error, LoadSignal, RejectKind, deadline};
use backstop_route::{RouteConfig, RouteHints};
use common::*;
use std::time::Duration;
use tokio::time::{Instant, sleep};

fn slow_chain(
    timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
) -> backstop_route::Router {
    RouteConfig {
        targets: (0..5).map(|i| target(&format!("slow-{i}"), i)).collect(),
        max_attempts: 5,
        timeout,
        attempt_timeout,
        ..RouteConfig::default()
    }
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_chain_of_slow_targets_never_exceeds_the_routers_deadline() {
    for (latency, attempt_timeout) in [
        (ms(400), None),             // each fails after 400 ms: three fit, the fourth is cut
        (ms(10_000), Some(ms(300))), // each hangs: attempts are cut at 300 ms
        (ms(10_000), None),          // the first hangs past the deadline
    ] {
        let router = slow_chain(Some(ms(1_000)), attempt_timeout);
        let started = Instant::now();
        let error = router
            .run(&RouteHints::new(), &classify, |_| async move {
                sleep(latency).await;
                Err::<(), _>(status(503))
            })
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            took <= ms(1_000),
            "{latency:?}/{attempt_timeout:?}: took {took:?}"
        );
        let kind = error.rejection().map(|r| r.kind);
        assert!(
            kind == Some(RejectKind::DeadlineExceeded)
                || error.inner().is_some()
                || kind == Some(RejectKind::Timeout),
            "{error:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_callers_deadline_bounds_the_chain_too() {
    let router = slow_chain(None, None);
    let started = Instant::now();
    let error = deadline::scope(ms(700), async {
        router
            .run(&RouteHints::new(), &classify, |_| async {
                sleep(ms(250)).await;
                Err::<(), _>(status(500))
            })
            .await
    })
    .await
    .unwrap_err();
    assert_eq!(started.elapsed(), ms(700));
    assert_eq!(
        error.rejection().unwrap().kind,
        RejectKind::DeadlineExceeded
    );
    assert_eq!(router.stats().deadline_exhaustions, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_leaves_nothing_in_flight() {
    let router = slow_chain(None, None);
    let hints = RouteHints::new();
    let call = router.run(&hints, &classify, |_| async {
        sleep(Duration::from_secs(60)).await;
        Ok::<_, Error<Status>>(())
    });
    let cut = tokio::time::timeout(ms(100), call).await;
    assert!(cut.is_err());
    assert_eq!(router.load().in_flight, 0);
    assert_eq!(router.stats().targets[0].in_flight, 0);
    // The breaker got its permit back: the target is still usable.
    assert!(router.readiness().is_ok());
    let answer = chosen(&router, &RouteHints::new()).await;
    assert_eq!(answer.unwrap(), "slow-0");
}
