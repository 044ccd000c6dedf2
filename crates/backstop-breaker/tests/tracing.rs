//! Transitions, rejections (once per state) and slow calls are reported through `tracing`.

use std::time::Duration;

use backstop_breaker::Breaker;
use backstop_core::ManualClock;
use backstop_testkit::logs::capture_logs;

#[test]
fn state_changes_rejections_and_slow_calls_are_traced() {
    let (captured, _guard) = capture_logs(tracing::Level::DEBUG);

    let clock = ManualClock::new();
    let breaker = Breaker::builder()
        .name("provider-a")
        .count_window(1)
        .minimum_calls(1)
        .slow_call_duration(Duration::from_millis(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let permit = breaker.try_acquire().unwrap();
    clock.advance(Duration::from_millis(20));
    permit.failure();
    assert!(breaker.try_acquire().is_err());
    assert!(breaker.try_acquire().is_err());
    breaker.force_open();
    assert!(breaker.try_acquire().is_err());

    let text = captured.text();
    let transition = text
        .lines()
        .find(|line| line.contains("circuit breaker state changed"))
        .unwrap_or_else(|| panic!("no transition in {text}"));
    assert!(transition.contains("WARN"), "{transition}");
    assert!(transition.contains("breaker=provider-a"), "{transition}");
    assert!(
        transition.contains("from=closed") && transition.contains("to=open"),
        "{transition}"
    );
    // One rejection line per state, not one per rejected call.
    let rejections: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("rejecting calls"))
        .collect();
    assert_eq!(rejections.len(), 2, "{text}");
    assert!(rejections[0].contains("state=open"), "{}", rejections[0]);
    assert!(
        rejections[1].contains("state=forced_open"),
        "{}",
        rejections[1]
    );
    assert!(text.contains("slow call"), "{text}");
}
