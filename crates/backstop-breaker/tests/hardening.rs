//! Issue 19: no configuration value or user callback can crash, abort or allocate without
//! bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backstop_breaker::{
    Breaker, BreakerConfig, BreakerEvent, BreakerWindow, CancelledCalls, MAX_COUNT_WINDOW,
    MAX_TIME_WINDOW_SECONDS, Outcome, State,
};
use backstop_core::ManualClock;
use backstop_core::config::{MAX_DURATION, Validate};

fn tripping_breaker(cancelled: CancelledCalls) -> Breaker<ManualClock> {
    Breaker::builder()
        .name("hardening")
        .count_window(2)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(10))
        .cancelled_calls(cancelled)
        .clock(ManualClock::new())
        .build()
        .unwrap()
}

fn panic_on_transition(breaker: &Breaker<ManualClock>) -> Arc<AtomicUsize> {
    let delivered = Arc::new(AtomicUsize::new(0));
    let seen = delivered.clone();
    // Two listeners: the panicking one must not keep the other from its events.
    breaker.subscribe(|event| {
        if matches!(event, BreakerEvent::StateTransition { .. }) {
            panic!("listener bug");
        }
    });
    breaker.subscribe(move |event| {
        if matches!(event, BreakerEvent::StateTransition { .. }) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    delivered
}

#[tokio::test]
async fn a_panicking_listener_does_not_reach_the_call_that_tripped_the_circuit() {
    let breaker = tripping_breaker(CancelledCalls::Ignore);
    let delivered = panic_on_transition(&breaker);
    for _ in 0..2 {
        let result = breaker.call(|| async { Err::<(), _>("503") }).await;
        assert!(result.is_err());
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(delivered.load(Ordering::Relaxed), 1);
    assert_eq!(breaker.stats().listener_panics, 1);
}

#[test]
fn a_permit_dropped_in_an_unwind_with_a_panicking_listener_does_not_abort() {
    let breaker = tripping_breaker(CancelledCalls::Failure);
    let delivered = panic_on_transition(&breaker);
    breaker.try_acquire().unwrap().failure();
    let worker = breaker.clone();
    // The permit's drop records a failure that trips the circuit while this thread
    // unwinds; a listener panic escaping that drop would abort the whole process.
    let joined = std::thread::spawn(move || {
        let _permit = worker.try_acquire().unwrap();
        panic!("the call itself panicked");
    })
    .join();
    assert!(
        joined.is_err(),
        "the call's own panic still reaches its thread"
    );
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(delivered.load(Ordering::Relaxed), 1);
    assert_eq!(breaker.stats().listener_panics, 1);
}

#[tokio::test]
async fn a_panicking_classifier_leaves_the_result_to_the_caller_and_counts_nothing() {
    let breaker = tripping_breaker(CancelledCalls::Ignore);
    let classify = |_: &Result<u32, &str>| -> Outcome { panic!("classifier bug") };
    let result = breaker.call_with(&classify, || async { Ok(7) }).await;
    assert_eq!(result.unwrap(), 7);
    let stats = breaker.stats();
    assert_eq!(stats.classifier_panics, 1);
    assert_eq!(stats.buffered_calls, 0);
}

#[test]
fn windows_beyond_their_bounds_are_refused_by_field() {
    let cases = [
        (BreakerWindow::Time { seconds: u32::MAX }, "window.seconds"),
        (
            BreakerWindow::Time {
                seconds: MAX_TIME_WINDOW_SECONDS + 1,
            },
            "window.seconds",
        ),
        (BreakerWindow::Count { size: u32::MAX }, "window.size"),
        (
            BreakerWindow::Count {
                size: MAX_COUNT_WINDOW + 1,
            },
            "window.size",
        ),
    ];
    for (window, field) in cases {
        let config = BreakerConfig {
            window,
            ..BreakerConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), field);
        assert!(Breaker::new("x", config).is_err());
    }
    for window in [
        BreakerWindow::Time {
            seconds: MAX_TIME_WINDOW_SECONDS,
        },
        BreakerWindow::Count {
            size: MAX_COUNT_WINDOW,
        },
    ] {
        let config = BreakerConfig {
            window,
            ..BreakerConfig::default()
        };
        assert!(Breaker::new("at the bound", config).is_ok());
    }
}

#[test]
fn durations_beyond_a_year_are_refused_by_field() {
    let huge = MAX_DURATION + Duration::from_secs(1);
    type Breaks = fn(&mut BreakerConfig, Duration);
    let cases: [(Breaks, &str); 4] = [
        (|c, d| c.wait_in_open = d, "wait_in_open"),
        (|c, d| c.slow_call_duration = Some(d), "slow_call_duration"),
        (
            |c, d| c.max_wait_in_half_open = Some(d),
            "max_wait_in_half_open",
        ),
        (
            |c, d| {
                c.backoff = Some(backstop_breaker::Backoff {
                    multiplier: 2.0,
                    max: d,
                })
            },
            "backoff.max",
        ),
    ];
    for (breaks, field) in cases {
        let mut config = BreakerConfig::default();
        breaks(&mut config, huge);
        assert_eq!(config.validate().unwrap_err().field(), field);
    }
}
