//! The fallback chain: group order, error-class rules, cooldown lengths (paused time), and
//! what happens when every target is cooling down.

mod common;

use backstop_core::{Error, RejectKind, Rejected};
use backstop_route::{
    AllCooling, CooldownConfig, RouteConfig, RouteHints, StandardRouteClassify, TargetConfig,
};
use common::*;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::{Instant, advance, sleep};

/// Calls the router once; every target answers as `script` says (success by default) and
/// the names called are appended to `log`.
async fn route_once(
    router: &backstop_route::Router,
    hints: RouteHints,
    script: &HashMap<&str, fn() -> Error<Status>>,
    log: &Mutex<Vec<String>>,
) -> Result<String, Error<Status>> {
    router
        .run(&hints, &classify, |target| {
            let name = target.name().to_string();
            log.lock().push(name.clone());
            let outcome = script.get(name.as_str()).map(|f| f());
            async move {
                sleep(ms(10)).await;
                match outcome {
                    Some(error) => Err(error),
                    None => Ok(name),
                }
            }
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn groups_are_tried_in_priority_order() {
    let router = router(vec![
        target("backup", 2),
        target("a", 0),
        target("b", 0),
        target("second", 1),
    ]);
    let script: HashMap<&str, fn() -> Error<Status>> = HashMap::from([
        ("a", (|| status(503)) as fn() -> _),
        ("b", || status(502)),
        ("second", || status(500)),
    ]);
    let log = Mutex::new(Vec::new());
    let answer = route_once(&router, RouteHints::new(), &script, &log).await;
    assert_eq!(answer.unwrap(), "backup");
    let log = log.into_inner();
    assert_eq!(log.len(), 4);
    let mut first_two = log[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, ["a", "b"], "group 0 first, both of its targets");
    assert_eq!(&log[2..], ["second", "backup"]);
    let stats = router.stats();
    assert_eq!((stats.fallbacks, stats.succeeded), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_goes_straight_back() {
    let router = router(vec![target("a", 0), target("b", 1)]);
    let script: HashMap<&str, fn() -> Error<Status>> =
        HashMap::from([("a", (|| status(400)) as fn() -> _)]);
    let log = Mutex::new(Vec::new());
    let error = route_once(&router, RouteHints::new(), &script, &log)
        .await
        .unwrap_err();
    assert_eq!(error.inner().unwrap().code, 400);
    assert_eq!(log.into_inner(), ["a"], "no fallback for a bad request");
    let stats = router.stats();
    assert_eq!(stats.targets[0].failed.fatal, 1);
    assert_eq!(
        stats.targets[0].cooling_down, None,
        "not the target's fault"
    );
}

#[tokio::test(start_paused = true)]
async fn context_length_moves_only_to_larger_windows() {
    let window = |name: &str, group, tokens| TargetConfig {
        context_window: Some(tokens),
        ..target(name, group)
    };
    let router = router(vec![
        window("small", 0, 8_000),
        window("small-too", 1, 8_000),
        window("large", 2, 128_000),
    ]);
    let script: HashMap<&str, fn() -> Error<Status>> =
        HashMap::from([("small", (|| status(413)) as fn() -> _)]);
    let log = Mutex::new(Vec::new());
    let answer = route_once(&router, RouteHints::new().tokens(6_000), &script, &log).await;
    assert_eq!(answer.unwrap(), "large");
    assert_eq!(
        log.into_inner(),
        ["small", "large"],
        "small-too has the same window: skipped"
    );

    // A request known to be too long skips the small windows without any call.
    let log = Mutex::new(Vec::new());
    let answer = route_once(
        &router,
        RouteHints::new().tokens(50_000),
        &HashMap::new(),
        &log,
    )
    .await;
    assert_eq!(answer.unwrap(), "large");
    assert_eq!(log.into_inner(), ["large"]);
}

#[tokio::test(start_paused = true)]
async fn cooldown_lengths_follow_the_error_class() {
    let router = RouteConfig {
        targets: vec![
            target("limited", 0),
            target("limited-no-header", 0),
            target("limited-huge", 0),
            target("flaky", 0),
            target("slow", 0),
            target("ok", 1),
        ],
        attempt_timeout: Some(ms(500)),
        max_attempts: 6,
        cooldown: CooldownConfig {
            consecutive_failures: 1,
            max: Duration::from_secs(300),
            ..CooldownConfig::default()
        },
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    let answer = router
        .run(&RouteHints::new(), &classify, |target| {
            let name = target.name().to_string();
            async move {
                match name.as_str() {
                    "limited" => Err(too_many(Some(Duration::from_secs(20)))),
                    "limited-no-header" => Err(too_many(None)),
                    "limited-huge" => Err(too_many(Some(Duration::from_secs(86_400)))),
                    "flaky" => Err(status(503)),
                    "slow" => {
                        sleep(Duration::from_secs(60)).await;
                        Ok(name)
                    }
                    _ => Ok(name),
                }
            }
        })
        .await;
    assert_eq!(answer.unwrap(), "ok");
    let stats = router.stats();
    // Time has moved by the slow target's 500 ms attempt timeout since some cooldowns
    // began; compare what is left against the class's length.
    let left = |i: usize| stats.targets[i].cooling_down.expect("cooling down");
    let near = |got: Duration, want: Duration| {
        assert!(got <= want && got + ms(600) >= want, "{got:?} vs {want:?}")
    };
    near(left(0), Duration::from_secs(20)); // Retry-After
    near(left(1), Duration::from_secs(30)); // cooldown.rate_limited
    near(left(2), Duration::from_secs(300)); // capped at cooldown.max
    near(left(3), Duration::from_secs(5)); // cooldown.server_error
    near(left(4), Duration::from_secs(10)); // cooldown.timeout
    assert_eq!(stats.targets[4].failed.timeout, 1);
    assert_eq!(stats.targets[5].cooling_down, None);
    assert!(stats.targets[..5].iter().all(|t| t.cooldowns == 1));
}

#[tokio::test(start_paused = true)]
async fn server_errors_cool_a_target_only_after_consecutive_failures() {
    let router = router(vec![target("flaky", 0), target("ok", 1)]);
    let script: HashMap<&str, fn() -> Error<Status>> =
        HashMap::from([("flaky", (|| status(503)) as fn() -> _)]);
    for round in 1..=3 {
        let log = Mutex::new(Vec::new());
        route_once(&router, RouteHints::new(), &script, &log)
            .await
            .unwrap();
        assert_eq!(
            log.into_inner(),
            ["flaky", "ok"],
            "round {round}: flaky still tried"
        );
    }
    // Three in a row (the default): five seconds off.
    let log = Mutex::new(Vec::new());
    route_once(&router, RouteHints::new(), &script, &log)
        .await
        .unwrap();
    assert_eq!(log.into_inner(), ["ok"]);
    advance(Duration::from_secs(5)).await;
    let log = Mutex::new(Vec::new());
    route_once(&router, RouteHints::new(), &HashMap::new(), &log)
        .await
        .unwrap();
    assert_eq!(
        log.into_inner(),
        ["flaky"],
        "back after the cooldown; a success resets the count"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cooling_target_gets_no_calls_until_its_retry_after() {
    let router = router(vec![target("a", 0), target("b", 1)]);
    let limited: HashMap<&str, fn() -> Error<Status>> = HashMap::from([(
        "a",
        (|| too_many(Some(Duration::from_secs(20)))) as fn() -> _,
    )]);
    let log = Mutex::new(Vec::new());
    route_once(&router, RouteHints::new(), &limited, &log)
        .await
        .unwrap();
    advance(Duration::from_secs(19)).await;
    route_once(&router, RouteHints::new(), &HashMap::new(), &log)
        .await
        .unwrap();
    advance(Duration::from_secs(1)).await;
    route_once(&router, RouteHints::new(), &HashMap::new(), &log)
        .await
        .unwrap();
    assert_eq!(log.into_inner(), ["a", "b", "b", "a"]);
}

async fn cool_everything(router: &backstop_route::Router) {
    // "a" (group 0) fails first, then "b" (group 1) with a longer wait.
    let waits = HashMap::from([
        ("a", Duration::from_secs(10)),
        ("b", Duration::from_secs(30)),
    ]);
    for name in ["a", "b"] {
        let _: Result<(), _> = router
            .run(&RouteHints::new(), &classify, |target| {
                assert_eq!(target.name(), name);
                let wait = waits[target.name()];
                async move { Err(too_many(Some(wait))) }
            })
            .await;
        advance(ms(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_target_cooling_fails_fast_with_the_soonest_retry_after() {
    let router = RouteConfig {
        targets: vec![target("a", 0), target("b", 1)],
        max_attempts: 1,
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    cool_everything(&router).await;
    let calls = Mutex::new(0);
    let refused = router
        .run(&RouteHints::new(), &classify, |_| {
            *calls.lock() += 1;
            async { Ok::<_, Error<Status>>(()) }
        })
        .await
        .unwrap_err();
    let refusal = refused.rejection().expect("a refusal, no call");
    assert_eq!(refusal.kind, RejectKind::Unavailable);
    // "a" cools for 10 s from 100 ms ago... minus the 100 ms since.
    assert_eq!(refusal.retry_after, Some(Duration::from_millis(9_800)));
    assert_eq!(*calls.lock(), 0);
    assert_eq!(router.stats().all_cooling_refusals, 1);
    assert_eq!(
        router.readiness().unwrap_err().kind,
        RejectKind::Unavailable
    );
}

#[tokio::test(start_paused = true)]
async fn every_target_cooling_probes_the_least_recently_failed() {
    let router = RouteConfig {
        targets: vec![target("a", 0), target("b", 1)],
        max_attempts: 1,
        when_all_cooling: AllCooling::ProbeLeastRecentlyFailed,
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    cool_everything(&router).await;
    let log = Mutex::new(Vec::new());
    let answer = route_once(&router, RouteHints::new(), &HashMap::new(), &log).await;
    assert_eq!(answer.unwrap(), "a");
    assert_eq!(log.into_inner(), ["a"], "one probe, the oldest failure");
    assert_eq!(router.stats().probes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_short_retry_after_is_waited_out_on_the_same_target() {
    let router = RouteConfig {
        targets: vec![target("a", 0), target("b", 1)],
        cooldown: CooldownConfig {
            wait_for_retry_after: Duration::from_secs(2),
            ..CooldownConfig::default()
        },
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    let calls = Mutex::new(Vec::new());
    let started = Instant::now();
    let answer = router
        .run(&RouteHints::new(), &classify, |target| {
            let name = target.name().to_string();
            let first = {
                let mut calls = calls.lock();
                calls.push(name.clone());
                calls.len() == 1
            };
            async move {
                if first {
                    Err(too_many(Some(Duration::from_secs(1))))
                } else {
                    Ok(name)
                }
            }
        })
        .await;
    assert_eq!(answer.unwrap(), "a");
    assert_eq!(calls.into_inner(), ["a", "a"]);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(router.stats().waited_retry_after, 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_skips_its_target_without_a_call() {
    let router = router(vec![
        TargetConfig {
            breaker: backstop_breaker::BreakerConfig {
                consecutive_failures: Some(1),
                ..TargetConfig::default().breaker
            },
            ..target("a", 0)
        },
        target("b", 1),
    ]);
    let script: HashMap<&str, fn() -> Error<Status>> =
        HashMap::from([("a", (|| status(503)) as fn() -> _)]);
    let log = Mutex::new(Vec::new());
    route_once(&router, RouteHints::new(), &script, &log)
        .await
        .unwrap();
    route_once(&router, RouteHints::new(), &HashMap::new(), &log)
        .await
        .unwrap();
    assert_eq!(log.into_inner(), ["a", "b", "b"]);
    assert_eq!(router.stats().targets[0].circuit, "open");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_is_contained() {
    let router = router(vec![target("a", 0), target("b", 0)]);
    let error = router
        .run(
            &RouteHints::new(),
            &|_: &Error<Status>| -> backstop_route::ErrorClass { panic!("classifier bug") },
            |_| async { Err::<(), _>(status(500)) },
        )
        .await
        .unwrap_err();
    assert_eq!(error.panic().unwrap().message(), "classifier bug");
    assert_eq!(router.stats().panics, 1);
}

#[tokio::test(start_paused = true)]
async fn refusals_below_the_router_are_classified_by_kind() {
    let router = router(vec![target("a", 0), target("b", 1)]);
    let answer = router
        .run(&RouteHints::new(), &StandardRouteClassify, |target| {
            let a = target.name() == "a";
            async move {
                if a {
                    Err(Error::<Status>::Rejected(
                        Rejected::new(RejectKind::CircuitOpen)
                            .with_retry_after(Duration::from_secs(7)),
                    ))
                } else {
                    Ok(())
                }
            }
        })
        .await;
    assert!(answer.is_ok());
    let stats = router.stats();
    assert_eq!(stats.targets[0].failed.circuit_open, 1);
    assert_eq!(stats.targets[0].cooling_down, Some(Duration::from_secs(7)));
}

#[tokio::test(start_paused = true)]
async fn the_routers_attempt_timeout_is_a_timeout_whatever_the_classifier_says() {
    let router = RouteConfig {
        targets: vec![target("hangs", 0), target("ok", 1)],
        attempt_timeout: Some(ms(200)),
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    // A classifier that calls every error fatal must not stop the chain on the router's
    // own timeout.
    let answer = router
        .run(
            &RouteHints::new(),
            &|_: &Error<Status>| backstop_route::ErrorClass::Fatal,
            |target| {
                let hangs = target.name() == "hangs";
                async move {
                    if hangs {
                        sleep(Duration::from_secs(60)).await;
                    }
                    Ok::<_, Error<Status>>(())
                }
            },
        )
        .await;
    assert!(answer.is_ok());
    let stats = router.stats();
    assert_eq!(stats.targets[0].failed.timeout, 1);
    assert!(
        stats.targets[0].ewma_latency >= ms(200),
        "the wait raised the estimate"
    );
}
