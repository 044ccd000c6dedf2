//! Test support shared by this crate's integration tests and the fuzz targets.
#![allow(dead_code)] // each test binary uses a different part of it

use std::time::Duration;

use backstop_breaker::{Breaker, BreakerBuilder};
use backstop_core::ManualClock;

pub(crate) mod model;

/// A breaker on `clock` judging the last two calls (from the second call on), open for
/// `wait_in_open` once they trip it, then letting one trial call through.
pub(crate) fn two_call_breaker(
    clock: &ManualClock,
    wait_in_open: Duration,
) -> BreakerBuilder<ManualClock> {
    Breaker::builder()
        .count_window(2)
        .minimum_calls(2)
        .wait_in_open(wait_in_open)
        .permitted_calls_in_half_open(1)
        .clock(clock.clone())
}

/// A fresh clock and the breaker `builder` makes on it.
pub(crate) fn on_new_clock(
    builder: impl FnOnce(&ManualClock) -> BreakerBuilder<ManualClock>,
) -> (ManualClock, Breaker<ManualClock>) {
    let clock = ManualClock::new();
    let breaker = builder(&clock).build().unwrap();
    (clock, breaker)
}
