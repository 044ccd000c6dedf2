//! The limiters as one algorithm over one state store: handles, readiness, remaining and
//! quota states behave the same for every algorithm and store.

use backstop_core::{Error, Layer, ManualClock, RejectKind, Service, ServiceExt, service_fn};
use backstop_limit::{
    CheckError, KeyedMultiRateLimiter, KeyedRateLimiter, KeyedSlidingWindow, MultiRateLimiter,
    Quota, RateLimitLayer, RateLimiter, SlidingWindowLimiter, TokioClock, WaitPolicy,
};
use proptest::prelude::*;
use std::convert::Infallible;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn clones_are_handles_on_one_state() {
    let clock = ManualClock::new();
    let direct = RateLimiter::with_clock(Quota::per_minute(2).unwrap(), clock.clone());
    let copy = direct.clone();
    direct.check().unwrap();
    copy.check().unwrap();
    assert!(direct.check().is_err(), "the clone spent the same budget");
    assert_eq!((copy.stats().admitted, copy.stats().rejected), (2, 1));

    let window = KeyedSlidingWindow::with_clock(1, MINUTE, clock.clone()).unwrap();
    let copy = window.clone().with_max_keys(1);
    window.check_key(&"ann").unwrap();
    assert_eq!(
        copy.check_key(&"ann").unwrap_err().retry_after(),
        Some(2 * MINUTE),
        "the previous window weighs in full at the next one's start"
    );
    assert_eq!(
        window.check_key(&"bob"),
        Err(CheckError::TooManyKeys { max_keys: 1 }),
        "a cap set through one handle holds for every clone"
    );
    copy.set_limit("ann", 2).unwrap();
    assert!(window.check_key(&"ann").is_ok(), "overrides are shared too");
    assert_eq!(window.stats().keys, 1);
}

#[test]
fn every_direct_limiter_reports_readiness_without_charging() {
    let clock = ManualClock::new();
    let gcra = RateLimiter::with_clock(Quota::per_second(1).unwrap(), clock.clone());
    let multi = MultiRateLimiter::with_clock(
        vec![Quota::per_second(5).unwrap(), Quota::per_minute(1).unwrap()],
        clock.clone(),
    )
    .unwrap();
    let window = SlidingWindowLimiter::with_clock(1, MINUTE, clock.clone()).unwrap();
    for _ in 0..3 {
        assert!(gcra.readiness().is_ok() && multi.readiness().is_ok());
        assert!(window.readiness().is_ok());
    }
    gcra.check().unwrap();
    multi.check().unwrap();
    window.check().unwrap();
    assert_eq!(
        gcra.readiness().unwrap_err().retry_after,
        Some(Duration::from_secs(1))
    );
    let refused = multi.readiness().unwrap_err();
    assert_eq!(refused.kind, RejectKind::RateLimited { quota: 1 });
    assert_eq!(refused.retry_after, Some(MINUTE));
    assert_eq!(
        window.readiness().unwrap_err().retry_after,
        Some(2 * MINUTE)
    );
    clock.advance(MINUTE);
    assert!(multi.readiness().is_ok());
    assert!(
        window.readiness().is_err(),
        "the previous window still weighs"
    );
    clock.advance(MINUTE);
    assert!(window.readiness().is_ok());
}

#[test]
fn quota_states_for_direct_and_keyed_limiters() {
    let clock = ManualClock::new();
    let quotas = vec![
        Quota::per_minute(10).unwrap(),
        Quota::per_minute(100).unwrap(),
    ];
    let direct = MultiRateLimiter::with_clock(quotas.clone(), clock.clone())
        .unwrap()
        .with_quota_names(["requests", "tokens"])
        .unwrap();
    direct.check_costs(&[1, 30]).unwrap();
    let states = direct.quota_states(&());
    assert_eq!((&*states[0].name, states[0].remaining), ("requests", 9));
    assert_eq!((&*states[1].name, states[1].remaining), ("tokens", 70));
    assert_eq!(states[1].reset, Duration::from_millis(30 * 600));

    let keyed = KeyedRateLimiter::with_clock(Quota::per_minute(10).unwrap(), clock.clone());
    keyed.set_quota("vip", Quota::per_minute(60).unwrap());
    keyed.check_key_n(&"vip", 6).unwrap();
    let states = keyed.quota_states(&"vip");
    assert_eq!((&*states[0].name, states[0].limit), ("q0", 60));
    assert_eq!(states[0].remaining, 54);
    assert_eq!(keyed.quota_states(&"new")[0].remaining, 10);
}

#[test]
fn quota_names_are_refused_once_the_limiter_is_shared() {
    let budget = KeyedMultiRateLimiter::<&str>::new(vec![
        Quota::per_minute(1).unwrap(),
        Quota::per_minute(2).unwrap(),
    ])
    .unwrap();
    let shared = budget.clone();
    let err = budget.with_quota_names(["requests", "tokens"]).unwrap_err();
    assert_eq!(err.field(), "quota_names");
    assert_eq!(shared.quota_states(&"ann")[1].name.as_ref(), "q1");
}

#[tokio::test]
async fn a_layer_over_a_sliding_window_reports_readiness() {
    let window = SlidingWindowLimiter::with_clock(2, MINUTE, ManualClock::new()).unwrap();
    let svc = RateLimitLayer::new(window.clone())
        .layer(service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }).lift());
    svc.call(1).await.unwrap();
    assert!(svc.readiness().is_ok());
    svc.call(2).await.unwrap();
    assert_eq!(
        svc.readiness().unwrap_err().kind,
        RejectKind::RateLimited { quota: 0 }
    );
    assert!(matches!(svc.call(3).await, Err(Error::Rejected(_))));
    assert_eq!((window.stats().admitted, window.stats().rejected), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn every_direct_limiter_can_be_awaited() {
    let multi = MultiRateLimiter::with_clock(
        vec![Quota::per_second(2).unwrap(), Quota::per_second(1).unwrap()],
        TokioClock,
    )
    .unwrap();
    let window = SlidingWindowLimiter::with_clock(1, Duration::from_secs(1), TokioClock).unwrap();
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        multi.until_ready(1).await.unwrap();
        window.until_ready(1).await.unwrap();
    }
    assert!(start.elapsed() >= Duration::from_secs(2));
    let keyed = KeyedSlidingWindow::with_clock(1, Duration::from_secs(1), TokioClock).unwrap();
    keyed.check_key(&7).unwrap();
    keyed
        .until_key_ready(&7, 1, &Default::default())
        .await
        .unwrap();
    assert_eq!(keyed.stats().admitted, 2);
}

proptest! {
    /// `remaining` is exactly the most a check would admit now: one more is refused (and
    /// charges nothing), and a check passes exactly when it asks for no more than that.
    #[test]
    fn window_remaining_is_what_a_check_admits(
        limit in 1u64..12,
        steps in prop::collection::vec((0u64..40_000, 0u8..3, 0u64..6), 1..150),
    ) {
        let clock = ManualClock::new();
        let l = KeyedSlidingWindow::with_clock(limit, MINUTE, clock.clone()).unwrap();
        for (advance_ms, key, cost) in steps {
            clock.advance(Duration::from_millis(advance_ms));
            let room = l.remaining(&key);
            prop_assert!(room <= limit);
            if room < limit {
                prop_assert!(l.check_key_n(&key, room + 1).is_err());
            }
            prop_assert_eq!(l.remaining(&key), room);
            prop_assert_eq!(l.check_key_n(&key, cost).is_ok(), cost <= room);
        }
    }

    /// The same for several quotas, whose remaining is the tightest quota's, and readiness
    /// is "at least one cell remains".
    #[test]
    fn multi_remaining_and_readiness_agree_with_checks(
        steps in prop::collection::vec((0u64..600_000_000, 0u64..7), 1..150),
    ) {
        let clock = ManualClock::new();
        let l = MultiRateLimiter::with_clock(
            vec![
                Quota::per_second(4).unwrap().with_burst(6).unwrap(),
                Quota::per_second(1).unwrap().with_burst(9).unwrap(),
            ],
            clock.clone(),
        )
        .unwrap();
        for (advance, cost) in steps {
            clock.advance(Duration::from_nanos(advance));
            let room = l.stats().remaining;
            prop_assert_eq!(l.readiness().is_ok(), room >= 1);
            if room < 6 {
                prop_assert!(l.check_n(room + 1).is_err());
            }
            prop_assert_eq!(l.check_n(cost).is_ok(), cost <= room);
        }
    }
}

/// `wait` sleeps out a rate refusal of any limiter; the layer over a local limiter then
/// waits exactly the promised time.
#[tokio::test(start_paused = true)]
async fn a_waiting_layer_sleeps_out_a_refusal_and_gives_up_past_max_wait() {
    let limiter = KeyedMultiRateLimiter::with_clock(
        vec![
            Quota::per_second(1).unwrap(),
            Quota::per_minute(100).unwrap(),
        ],
        TokioClock,
    )
    .unwrap();
    let policy = WaitPolicy {
        max_wait: Some(Duration::from_secs(2)),
        jitter: Duration::ZERO,
    };
    let svc = RateLimitLayer::new(limiter.clone())
        .key(|_: &u64| "ann")
        .cost(|tokens: &u64| [1, *tokens])
        .wait(policy)
        .layer(service_fn(|n: u64| async move { Ok::<_, Infallible>(n) }).lift());
    let start = tokio::time::Instant::now();
    assert_eq!(svc.call(10).await.unwrap(), 10);
    assert_eq!(svc.call(10).await.unwrap(), 10);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "waited for the request quota"
    );
    // Refused on the token quota for longer than `max_wait`: given up at once.
    tokio::time::advance(Duration::from_secs(1)).await;
    let start = tokio::time::Instant::now();
    let refusal = svc.call(1_000).await.unwrap_err();
    assert_eq!(
        refusal.rejection().map(|r| r.kind),
        Some(RejectKind::TooLarge { quota: 0 })
    );
    let refusal = svc.call(100).await.unwrap_err();
    let refusal = refusal.rejection().unwrap();
    assert_eq!(refusal.kind, RejectKind::RateLimited { quota: 1 });
    assert!(refusal.retry_after.unwrap() > Duration::from_secs(2));
    assert_eq!(start.elapsed(), Duration::ZERO, "gave up without sleeping");
}

/// Dropped while it sleeps, a waiting call charges nothing.
#[tokio::test(start_paused = true)]
async fn a_waiting_call_dropped_while_sleeping_charges_nothing() {
    let limiter = RateLimiter::with_clock(Quota::per_second(1).unwrap(), TokioClock);
    let svc = RateLimitLayer::new(limiter.clone())
        .wait(WaitPolicy::default())
        .layer(service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }).lift());
    svc.call(1).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), svc.call(2)).await;
    assert!(waiting.is_err(), "still waiting after half the refill");
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(
        svc.call(3).await.unwrap(),
        3,
        "the dropped wait took nothing"
    );
    // The first try of the dropped call was refused; no retry ran.
    assert_eq!((limiter.stats().admitted, limiter.stats().rejected), (2, 1));
}
