//! Transitions, rejections (once per state) and slow calls are reported through `tracing`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_breaker::Breaker;
use backstop_core::ManualClock;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn state_changes_rejections_and_slow_calls_are_traced() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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

    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
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
