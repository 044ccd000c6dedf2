//! Operation sequences on the circuit breaker against the reference model its proptest
//! uses (`crates/backstop-breaker/tests/support/model.rs`): every admission, state and
//! rejection count must match.
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/backstop-breaker/tests/support/model.rs"]
mod model;

use arbitrary::Arbitrary;
use backstop_breaker::{Permit, State};
use backstop_core::ManualClock;
use libfuzzer_sys::fuzz_target;
use model::{Finish, MS, Model, Params, Ticket, breaker, report};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Arbitrary)]
enum FuzzFinish {
    Success,
    Failure,
    Ignored,
    Cancel,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Call { ms: u8, finish: FuzzFinish },
    Start,
    End { index: u8, finish: FuzzFinish },
    Advance { ms: u8 },
}

#[derive(Debug, Arbitrary)]
struct Input {
    size: u8,
    minimum: u8,
    failure_threshold: u8,
    slow_threshold: bool,
    slow_ms: u8,
    wait_ms: u8,
    backoff_max_ms: Option<u16>,
    permitted: u8,
    max_wait_ms: Option<u8>,
    ops: Vec<Op>,
}

fn finish(f: FuzzFinish) -> Finish {
    match f {
        FuzzFinish::Success => Finish::Success,
        FuzzFinish::Failure => Finish::Failure,
        FuzzFinish::Ignored => Finish::Ignored,
        FuzzFinish::Cancel => Finish::Cancel,
    }
}

fuzz_target!(|input: Input| {
    let wait_ms = u64::from(input.wait_ms % 50) + 1;
    let p = Params {
        size: u32::from(input.size % 8) + 1,
        minimum: u32::from(input.minimum % 8) + 1,
        failure_threshold: [25.0, 50.0, 100.0][usize::from(input.failure_threshold % 3)],
        slow_threshold: if input.slow_threshold { 50.0 } else { 100.0 },
        slow_ms: u64::from(input.slow_ms % 20) + 1,
        wait_ms,
        backoff_max_ms: input.backoff_max_ms.map(|m| u64::from(m % 400) + 50),
        permitted: u32::from(input.permitted % 4) + 1,
        max_wait_ms: input.max_wait_ms.map(|m| u64::from(m % 100) + 1),
    };
    let clock = ManualClock::new();
    let breaker = breaker(&p, &clock);
    let mut model = Model::new(p);
    let mut in_flight: Vec<(Permit<'_, ManualClock>, Ticket)> = Vec::new();

    for op in input.ops.into_iter().take(300) {
        match op {
            Op::Call { ms, finish: f } => {
                let ms = u64::from(ms % 30);
                let real = breaker.try_acquire();
                let expected = model.acquire();
                assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
                clock.advance(Duration::from_millis(ms));
                model.now += ms * MS;
                if let (Ok(permit), Some(ticket)) = (real, expected) {
                    report(permit, finish(f));
                    model.finish(ticket, finish(f));
                }
            }
            Op::Start => {
                let real = breaker.try_acquire();
                let expected = model.acquire();
                assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
                if let (Ok(permit), Some(ticket)) = (real, expected) {
                    in_flight.push((permit, ticket));
                }
            }
            Op::End { index, finish: f } => {
                if !in_flight.is_empty() {
                    let at = usize::from(index) % in_flight.len();
                    let (permit, ticket) = in_flight.swap_remove(at);
                    report(permit, finish(f));
                    model.finish(ticket, finish(f));
                }
            }
            Op::Advance { ms } => {
                let ms = u64::from(ms % 120) + 1;
                clock.advance(Duration::from_millis(ms));
                model.now += ms * MS;
            }
        }
        assert_eq!(breaker.state(), model.state);
        let stats = breaker.stats();
        assert_eq!(stats.rejected_calls, model.rejected);
        if model.state == State::Closed {
            assert_eq!(stats.buffered_calls, model.window.len() as u64);
        }
    }
});
