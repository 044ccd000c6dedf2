//! The breaker against a simple reference model: random sequences of calls (successes,
//! failures, slow calls, ignored results), time advances, and probes held open across
//! other operations; state, admissions and rejection counts must always match.

mod support;

use std::time::Duration;

use backstop_breaker::{Permit, State};
use backstop_core::ManualClock;
use proptest::prelude::*;
use support::model::{Finish, MS, Model, Params, Ticket, breaker, report};

#[derive(Debug, Clone)]
enum Op {
    /// A call that takes `ms` milliseconds and ends with `finish`.
    Call {
        ms: u64,
        finish: Finish,
    },
    /// Admit a call and keep it in flight.
    Start,
    /// End the `index`-th call in flight (modulo how many there are).
    End {
        index: usize,
        finish: Finish,
    },
    Advance {
        ms: u64,
    },
}

fn params() -> impl Strategy<Value = Params> {
    (
        1u32..8,
        1u32..8,
        prop::sample::select(vec![25.0, 50.0, 100.0]),
        prop::sample::select(vec![50.0, 100.0]),
        1u64..20,
        1u64..50,
        prop::option::of(50u64..400),
        1u32..4,
        prop::option::of(1u64..100),
    )
        .prop_map(
            |(
                size,
                minimum,
                failure_threshold,
                slow_threshold,
                slow_ms,
                wait_ms,
                backoff_max_ms,
                permitted,
                max_wait_ms,
            )| Params {
                size,
                minimum,
                failure_threshold,
                slow_threshold,
                slow_ms,
                wait_ms,
                backoff_max_ms,
                permitted,
                max_wait_ms,
            },
        )
}

fn finish() -> impl Strategy<Value = Finish> {
    prop_oneof![
        3 => Just(Finish::Success),
        3 => Just(Finish::Failure),
        1 => Just(Finish::Ignored),
        1 => Just(Finish::Cancel),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..30, finish()).prop_map(|(ms, finish)| Op::Call { ms, finish }),
        2 => Just(Op::Start),
        2 => (0usize..8, finish()).prop_map(|(index, finish)| Op::End { index, finish }),
        2 => (1u64..120).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn breaker_matches_the_reference_model(p in params(), ops in prop::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let breaker = breaker(&p, &clock);
        let mut model = Model::new(p);
        let mut in_flight: Vec<(Permit<'_, ManualClock>, Ticket)> = Vec::new();

        for op in ops {
            match op {
                Op::Call { ms, finish } => {
                    let real = breaker.try_acquire();
                    let expected = model.acquire();
                    prop_assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
                    clock.advance(Duration::from_millis(ms));
                    model.now += ms * MS;
                    if let (Ok(permit), Some(ticket)) = (real, expected) {
                        report(permit, finish);
                        model.finish(ticket, finish);
                    }
                }
                Op::Start => {
                    let real = breaker.try_acquire();
                    let expected = model.acquire();
                    prop_assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
                    if let (Ok(permit), Some(ticket)) = (real, expected) {
                        in_flight.push((permit, ticket));
                    }
                }
                Op::End { index, finish } => {
                    if !in_flight.is_empty() {
                        let (permit, ticket) = in_flight.swap_remove(index % in_flight.len());
                        report(permit, finish);
                        model.finish(ticket, finish);
                    }
                }
                Op::Advance { ms } => {
                    clock.advance(Duration::from_millis(ms));
                    model.now += ms * MS;
                }
            }
            prop_assert_eq!(breaker.state(), model.state);
            let stats = breaker.stats();
            prop_assert_eq!(stats.rejected_calls, model.rejected);
            if model.state == State::Closed {
                prop_assert_eq!(stats.buffered_calls, model.window.len() as u64);
            }
        }
    }
}
