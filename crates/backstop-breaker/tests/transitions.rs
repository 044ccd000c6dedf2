//! Every transition, driven by a `ManualClock`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_breaker::{
    Breaker, BreakerBuilder, BreakerConfig, BreakerEvent, BreakerRegistry, BreakerWindow,
    CancelledCalls, Outcome, RegistryConfig, State,
};
use backstop_core::config::Validate;
use backstop_core::{Error, ManualClock, RejectKind};

mod support;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn builder(clock: &ManualClock) -> BreakerBuilder<ManualClock> {
    Breaker::builder()
        .name("test")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .wait_in_open(secs(10))
        .permitted_calls_in_half_open(2)
        .clock(clock.clone())
}

fn succeed(breaker: &Breaker<ManualClock>) -> Result<(), State> {
    breaker
        .try_acquire()
        .map(|p| p.success())
        .map_err(|_| breaker.state())
}

fn fail(breaker: &Breaker<ManualClock>) -> Result<(), State> {
    breaker
        .try_acquire()
        .map(|p| p.failure())
        .map_err(|_| breaker.state())
}

fn trip(breaker: &Breaker<ManualClock>) {
    while breaker.state() == State::Closed {
        fail(breaker).unwrap();
    }
    assert_eq!(breaker.state(), State::Open);
}

fn record_events(breaker: &Breaker<ManualClock>) -> Arc<Mutex<Vec<BreakerEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    breaker.subscribe(move |event| sink.lock().unwrap().push(event.clone()));
    events
}

fn transitions(events: &Mutex<Vec<BreakerEvent>>) -> Vec<(State, State)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            BreakerEvent::StateTransition { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn failure_rate_opens_only_after_minimum_calls() {
    let (_, breaker) = support::on_new_clock(builder);
    fail(&breaker).unwrap();
    fail(&breaker).unwrap();
    fail(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Closed, "3 of minimum 4 calls");
    assert_eq!(breaker.stats().failure_rate, None);
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Open, "75% ≥ 50% at the 4th call");
}

#[test]
fn failure_rate_below_threshold_stays_closed() {
    let (_, breaker) = support::on_new_clock(|clock| builder(clock).failure_rate_threshold(60.0));
    for _ in 0..10 {
        fail(&breaker).unwrap();
        succeed(&breaker).unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    let stats = breaker.stats();
    assert_eq!(stats.failure_rate, Some(50.0));
    assert_eq!(stats.buffered_calls, 4);
}

#[test]
fn slow_call_rate_opens() {
    let (clock, breaker) = support::on_new_clock(|clock| {
        builder(clock)
            .slow_call_duration(Duration::from_millis(100))
            .slow_call_rate_threshold(50.0)
    });
    let events = record_events(&breaker);
    for _ in 0..2 {
        let permit = breaker.try_acquire().unwrap();
        clock.advance(Duration::from_millis(100));
        permit.success();
        succeed(&breaker).unwrap();
    }
    assert_eq!(breaker.state(), State::Open);
    let slow = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, BreakerEvent::SlowCall { duration, .. } if *duration == Duration::from_millis(100)))
        .count();
    assert_eq!(slow, 2);
}

#[test]
fn consecutive_failures_open_regardless_of_rate() {
    let (_, breaker) = support::on_new_clock(|clock| {
        builder(clock)
            .count_window(100)
            .minimum_calls(100)
            .consecutive_failures(3)
    });
    fail(&breaker).unwrap();
    fail(&breaker).unwrap();
    succeed(&breaker).unwrap();
    fail(&breaker).unwrap();
    fail(&breaker).unwrap();
    assert_eq!(
        breaker.state(),
        State::Closed,
        "the run was broken by a success"
    );
    fail(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn time_window_forgets_old_failures() {
    let (clock, breaker) =
        support::on_new_clock(|clock| builder(clock).time_window(2).minimum_calls(2));
    fail(&breaker).unwrap();
    clock.advance(secs(3));
    fail(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Closed, "the first failure expired");
    assert_eq!(breaker.stats().buffered_calls, 1);
    fail(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn open_rejects_with_retry_after_then_half_opens_lazily() {
    let (clock, breaker) = support::on_new_clock(builder);
    trip(&breaker);
    clock.advance(secs(4));
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.kind, RejectKind::CircuitOpen);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(rejected.retry_after, Some(secs(6)));
    clock.advance(secs(6));
    assert_eq!(breaker.state(), State::Open, "lazy: no call yet");
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(probe.state(), State::HalfOpen);
    assert_eq!(breaker.stats().rejected_calls, 1);
    probe.success();
}

#[test]
fn automatic_transition_is_visible_without_a_call() {
    let (clock, breaker) = support::on_new_clock(|clock| builder(clock).automatic_transition(true));
    let events = record_events(&breaker);
    trip(&breaker);
    clock.advance(secs(10));
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(
        transitions(&events),
        vec![(State::Closed, State::Open), (State::Open, State::HalfOpen)]
    );
}

#[test]
fn half_open_admits_exactly_the_permitted_probes_and_closes() {
    let (clock, breaker) = support::on_new_clock(builder);
    let events = record_events(&breaker);
    trip(&breaker);
    clock.advance(secs(10));
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    let third = breaker.try_acquire().unwrap_err();
    assert_eq!(third.kind, RejectKind::CircuitOpen);
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(third.retry_after, None);
    a.success();
    assert_eq!(breaker.state(), State::HalfOpen, "one probe still out");
    b.success();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        breaker.stats().buffered_calls,
        0,
        "closing starts a fresh window"
    );
    assert_eq!(
        transitions(&events),
        vec![
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[test]
fn failed_probes_reopen_with_backoff_up_to_the_cap() {
    let (clock, breaker) = support::on_new_clock(|clock| {
        builder(clock)
            .permitted_calls_in_half_open(1)
            .backoff(2.0, secs(35))
    });
    trip(&breaker);
    let mut periods = Vec::new();
    for _ in 0..4 {
        let retry = breaker.try_acquire().unwrap_err().retry_after.unwrap();
        periods.push(retry);
        clock.advance(retry);
        fail(&breaker).unwrap();
        assert_eq!(breaker.state(), State::Open);
    }
    assert_eq!(periods, vec![secs(10), secs(20), secs(35), secs(35)]);
    // A successful probe closes and resets the backoff.
    clock.advance(secs(35));
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Closed);
    trip(&breaker);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after,
        Some(secs(10))
    );
}

#[test]
fn half_open_decides_on_the_probe_failure_rate() {
    let (clock, breaker) = support::on_new_clock(|clock| {
        builder(clock)
            .permitted_calls_in_half_open(4)
            .failure_rate_threshold(50.0)
    });
    trip(&breaker);
    clock.advance(secs(10));
    fail(&breaker).unwrap();
    succeed(&breaker).unwrap();
    succeed(&breaker).unwrap();
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Closed, "25% < 50%");
    trip(&breaker);
    clock.advance(secs(10));
    fail(&breaker).unwrap();
    fail(&breaker).unwrap();
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Open, "50% ≥ 50%");
}

#[test]
fn a_stuck_probe_cannot_wedge_half_open() {
    let (clock, breaker) = support::on_new_clock(|clock| {
        builder(clock)
            .permitted_calls_in_half_open(1)
            .max_wait_in_half_open(secs(5))
    });
    trip(&breaker);
    clock.advance(secs(10));
    let stuck = breaker.try_acquire().unwrap();
    clock.advance(secs(4));
    assert!(breaker.try_acquire().is_err());
    assert_eq!(breaker.state(), State::HalfOpen);
    clock.advance(secs(1));
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.kind, RejectKind::CircuitOpen);
    assert_eq!(breaker.state(), State::Open, "max wait reached: reopened");
    assert_eq!(rejected.retry_after, Some(secs(10)));
    // The stuck probe finally returns: it belongs to a round that is over and is ignored.
    stuck.success();
    assert_eq!(breaker.state(), State::Open);
    clock.advance(secs(10));
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn outcomes_from_before_a_transition_are_ignored() {
    let (clock, breaker) = support::on_new_clock(builder);
    let slow_closed_call = breaker.try_acquire().unwrap();
    trip(&breaker);
    clock.advance(secs(10));
    let probe = breaker.try_acquire().unwrap();
    slow_closed_call.failure();
    probe.success();
    let probe = breaker.try_acquire().unwrap();
    probe.success();
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn ignored_results_are_not_recorded_and_return_the_probe_permit() {
    let (clock, breaker) =
        support::on_new_clock(|clock| builder(clock).permitted_calls_in_half_open(1));
    for _ in 0..10 {
        breaker.try_acquire().unwrap().ignore();
    }
    assert_eq!(breaker.stats().buffered_calls, 0);
    trip(&breaker);
    clock.advance(secs(10));
    breaker.try_acquire().unwrap().record(Outcome::Ignored);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn operator_states() {
    let (clock, breaker) = support::on_new_clock(builder);
    let events = record_events(&breaker);

    breaker.force_open();
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.kind, RejectKind::CircuitOpen);
    assert_eq!(breaker.state(), State::ForcedOpen);
    assert_eq!(rejected.retry_after, None);
    clock.advance(secs(3600));
    assert!(breaker.try_acquire().is_err());
    assert_eq!(breaker.state(), State::ForcedOpen);

    breaker.disable();
    for _ in 0..20 {
        fail(&breaker).unwrap();
    }
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(
        breaker.stats().buffered_calls,
        0,
        "disabled records nothing"
    );

    breaker.metrics_only();
    for _ in 0..20 {
        fail(&breaker).unwrap();
    }
    let stats = breaker.stats();
    assert_eq!(stats.state, State::MetricsOnly);
    assert_eq!(stats.failure_rate, Some(100.0));

    breaker.transition_to(State::Open);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after,
        Some(secs(10))
    );
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().buffered_calls, 0);
    assert_eq!(
        transitions(&events),
        vec![
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Disabled),
            (State::Disabled, State::MetricsOnly),
            (State::MetricsOnly, State::Open),
            (State::Open, State::Closed),
        ]
    );
}

#[test]
fn rejections_are_counted_and_published() {
    let (_, breaker) = support::on_new_clock(builder);
    let events = record_events(&breaker);
    trip(&breaker);
    for _ in 0..3 {
        assert!(succeed(&breaker).is_err());
    }
    assert_eq!(breaker.stats().rejected_calls, 3);
    let published = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                BreakerEvent::Rejected {
                    state: State::Open,
                    ..
                }
            )
        })
        .count();
    assert_eq!(published, 3);
}

#[tokio::test]
async fn call_classifies_successes_as_failures_when_asked() {
    let (_, breaker) = support::on_new_clock(builder);
    let finish_reason_error = |result: &Result<&str, ()>| match result {
        Ok("error") | Err(()) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    };
    for _ in 0..4 {
        let answer = breaker
            .call_with(&finish_reason_error, || async { Ok::<_, ()>("error") })
            .await;
        assert_eq!(answer.unwrap(), "error", "the caller still gets the result");
    }
    assert_eq!(breaker.state(), State::Open);
    let rejected = breaker.call(|| async { Ok::<_, ()>("fine") }).await;
    assert!(matches!(rejected, Err(Error::Rejected(r)) if r.kind == RejectKind::CircuitOpen));
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test]
async fn call_returns_inner_errors() {
    let breaker = Breaker::builder().build().unwrap();
    let result = breaker.call(|| async { Err::<(), _>("boom") }).await;
    assert!(matches!(result, Err(Error::Inner("boom"))));
    assert_eq!(result.unwrap_err().to_string(), "boom");
}

#[test]
fn stats_serialize() {
    let (_, breaker) = support::on_new_clock(builder);
    trip(&breaker);
    let json = serde_json::to_value(breaker.stats()).unwrap();
    assert_eq!(json["state"], "open");
    assert_eq!(json["failure_rate"], 100.0);
    assert_eq!(json["retry_after"], "10s");
    assert_eq!(json["name"], "test");
}

#[test]
fn invalid_configs_name_the_field() {
    /// Breaks one rule of an otherwise default config.
    type BreakRule = fn(&mut BreakerConfig);
    let cases: [(&str, BreakRule); 7] = [
        ("failure_rate_threshold", |c| c.failure_rate_threshold = 0.0),
        ("slow_call_rate_threshold", |c| {
            c.slow_call_rate_threshold = 100.5
        }),
        ("window.size", |c| {
            c.window = BreakerWindow::Count { size: 0 }
        }),
        ("window.seconds", |c| {
            c.window = BreakerWindow::Time { seconds: 0 }
        }),
        ("permitted_calls_in_half_open", |c| {
            c.permitted_calls_in_half_open = 0
        }),
        ("minimum_calls", |c| c.minimum_calls = 0),
        ("wait_in_open", |c| c.wait_in_open = Duration::ZERO),
    ];
    for (field, break_rule) in cases {
        let mut config = BreakerConfig::default();
        break_rule(&mut config);
        let error = Breaker::new("bad", config).unwrap_err();
        assert_eq!(error.field(), field);
        assert!(error.to_string().contains(field));
    }
    for (multiplier, max, field) in [
        (0.5, secs(60), "backoff.multiplier"),
        (2.0, secs(1), "backoff.max"),
    ] {
        let error = Breaker::builder()
            .backoff(multiplier, max)
            .build()
            .unwrap_err();
        assert_eq!(error.field(), field);
    }
}

#[test]
fn config_deserializes_from_human_strings() {
    let config: BreakerConfig = serde_json::from_str(
        r#"{
            "window": { "kind": "time", "seconds": 30 },
            "minimum_calls": 5,
            "slow_call_duration": "1500ms",
            "max_wait_in_half_open": "2m",
            "cancelled_calls": "failure"
        }"#,
    )
    .unwrap();
    assert_eq!(config.window, BreakerWindow::Time { seconds: 30 });
    assert_eq!(config.slow_call_duration, Some(Duration::from_millis(1500)));
    assert_eq!(config.max_wait_in_half_open, Some(secs(120)));
    assert_eq!(config.cancelled_calls, CancelledCalls::Failure);
    assert!(config.validate().is_ok());
    assert!(serde_json::from_str::<BreakerConfig>(r#"{"wait_in_opne": "1s"}"#).is_err());
}

#[test]
fn registry_applies_overrides_and_shares_breakers() {
    let clock = ManualClock::new();
    let mut config = RegistryConfig::default();
    config.overrides.insert(
        "fragile".into(),
        BreakerConfig {
            minimum_calls: 1,
            window: BreakerWindow::Count { size: 1 },
            ..Default::default()
        },
    );
    let registry = BreakerRegistry::with_clock(config.clone(), clock).unwrap();
    let fragile = registry.get("fragile");
    fragile.try_acquire().unwrap().failure();
    assert_eq!(registry.get("fragile").state(), State::Open);
    let sturdy = registry.get("sturdy");
    sturdy.try_acquire().unwrap().failure();
    assert_eq!(sturdy.state(), State::Closed);
    let names: Vec<_> = registry.stats().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["fragile", "sturdy"]);

    config.overrides.get_mut("fragile").unwrap().minimum_calls = 0;
    let error = BreakerRegistry::new(config).unwrap_err();
    assert_eq!(error.field(), "overrides.fragile.minimum_calls");
}
