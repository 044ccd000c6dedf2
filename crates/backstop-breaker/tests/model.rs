//! The breaker against a simple reference model: random sequences of calls (successes,
//! failures, slow calls, ignored results), time advances, and probes held open across
//! other operations; state, admissions and rejection counts must always match.

mod support;

use std::time::Duration;

use backstop_breaker::{Breaker, Permit, State};
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

prop_compose! {
    /// The breaker's settings, each field drawn by the strategy beside its name.
    fn params()(
        size in 1u32..8,
        minimum in 1u32..8,
        failure_threshold in prop::sample::select(vec![25.0, 50.0, 100.0]),
        slow_threshold in prop::sample::select(vec![50.0, 100.0]),
        slow_ms in 1u64..20,
        wait_ms in 1u64..50,
        backoff_max_ms in prop::option::of(50u64..400),
        permitted in 1u32..4,
        max_wait_ms in prop::option::of(1u64..100),
    ) -> Params {
        Params {
            size,
            minimum,
            failure_threshold,
            slow_threshold,
            slow_ms,
            wait_ms,
            backoff_max_ms,
            permitted,
            max_wait_ms,
        }
    }
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

/// Asks the breaker and the model for a permit: they must agree on admitting the call.
fn admit<'b>(
    breaker: &'b Breaker<ManualClock>,
    model: &mut Model,
) -> Result<Option<(Permit<'b, ManualClock>, Ticket)>, TestCaseError> {
    let real = breaker.try_acquire();
    let expected = model.acquire();
    prop_assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
    Ok(real.ok().zip(expected))
}

/// Ends a call admitted by both, with the same `finish` in each.
fn end(permit: Permit<'_, ManualClock>, ticket: Ticket, finish: Finish, model: &mut Model) {
    report(permit, finish);
    model.finish(ticket, finish);
}

/// Moves the breaker's clock and the model's time on together.
fn advance(clock: &ManualClock, model: &mut Model, ms: u64) {
    clock.advance(Duration::from_millis(ms));
    model.now += ms * MS;
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
                    let admitted = admit(&breaker, &mut model)?;
                    advance(&clock, &mut model, ms);
                    if let Some((permit, ticket)) = admitted {
                        end(permit, ticket, finish, &mut model);
                    }
                }
                Op::Start => in_flight.extend(admit(&breaker, &mut model)?),
                Op::End { index, finish } => {
                    if !in_flight.is_empty() {
                        let (permit, ticket) = in_flight.swap_remove(index % in_flight.len());
                        end(permit, ticket, finish, &mut model);
                    }
                }
                Op::Advance { ms } => advance(&clock, &mut model, ms),
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
