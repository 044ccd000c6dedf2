//! The breaker against a simple reference model: random sequences of calls (successes,
//! failures, slow calls, ignored results), time advances, and probes held open across
//! other operations; state, admissions and rejection counts must always match.

use std::collections::VecDeque;
use std::time::Duration;

use backstop_breaker::{Breaker, Outcome, Permit, State};
use backstop_core::ManualClock;
use proptest::prelude::*;

const MS: u64 = 1_000_000;

#[derive(Debug, Clone)]
struct Params {
    size: u32,
    minimum: u32,
    failure_threshold: f64,
    slow_threshold: f64,
    slow_ms: u64,
    wait_ms: u64,
    backoff_max_ms: Option<u64>,
    permitted: u32,
    max_wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Finish {
    Success,
    Failure,
    Ignored,
    Cancel,
}

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

/// The reference: plain fields, a `VecDeque` window, every rule written the obvious way.
struct Model {
    p: Params,
    now: u64,
    state: State,
    epoch: u64,
    window: VecDeque<(bool, bool)>,
    open_until: u64,
    failed_rounds: u32,
    issued: u32,
    finished: u32,
    probe_failures: u32,
    probe_slow: u32,
    half_open_since: u64,
    rejected: u64,
}

/// A call in flight in the model: the epoch and state it was admitted in, and when.
#[derive(Clone, Copy)]
struct Ticket {
    epoch: u64,
    state: State,
    start: u64,
}

fn exceeded(p: &Params, calls: u64, failures: u64, slow: u64) -> bool {
    let rate = |part: u64| part as f64 * 100.0 / calls as f64;
    calls > 0 && (rate(failures) >= p.failure_threshold || rate(slow) >= p.slow_threshold)
}

impl Model {
    fn new(p: Params) -> Self {
        Self {
            p,
            now: 0,
            state: State::Closed,
            epoch: 0,
            window: VecDeque::new(),
            open_until: 0,
            failed_rounds: 0,
            issued: 0,
            finished: 0,
            probe_failures: 0,
            probe_slow: 0,
            half_open_since: 0,
            rejected: 0,
        }
    }

    fn go(&mut self, to: State) {
        match to {
            State::Closed => {
                self.window.clear();
                self.failed_rounds = 0;
            }
            State::Open => {
                if self.state == State::HalfOpen {
                    self.failed_rounds += 1;
                }
                let wait = match self.p.backoff_max_ms {
                    None => self.p.wait_ms,
                    Some(max) => {
                        let mut wait = self.p.wait_ms;
                        for _ in 0..self.failed_rounds {
                            wait = (wait * 2).min(max.max(self.p.wait_ms));
                        }
                        wait
                    }
                };
                self.open_until = self.now + wait * MS;
            }
            State::HalfOpen => {
                self.issued = 0;
                self.finished = 0;
                self.probe_failures = 0;
                self.probe_slow = 0;
                self.half_open_since = self.now;
            }
            _ => unreachable!(),
        }
        self.state = to;
        self.epoch += 1;
    }

    fn acquire(&mut self) -> Option<Ticket> {
        if self.state == State::Open && self.now >= self.open_until {
            self.go(State::HalfOpen);
        } else if self.state == State::HalfOpen
            && self
                .p
                .max_wait_ms
                .is_some_and(|max| self.now - self.half_open_since >= max * MS)
        {
            self.go(State::Open);
        }
        let admitted = match self.state {
            State::Closed => true,
            State::HalfOpen if self.issued < self.p.permitted => {
                self.issued += 1;
                true
            }
            _ => false,
        };
        if admitted {
            Some(Ticket {
                epoch: self.epoch,
                state: self.state,
                start: self.now,
            })
        } else {
            self.rejected += 1;
            None
        }
    }

    fn finish(&mut self, ticket: Ticket, finish: Finish) {
        if ticket.epoch != self.epoch {
            return;
        }
        let failed = match finish {
            Finish::Success => false,
            Finish::Failure => true,
            Finish::Ignored | Finish::Cancel => {
                if self.state == State::HalfOpen {
                    self.issued -= 1;
                }
                return;
            }
        };
        let slow = self.now - ticket.start >= self.p.slow_ms * MS;
        match ticket.state {
            State::Closed => {
                self.window.push_back((failed, slow));
                if self.window.len() > self.p.size as usize {
                    self.window.pop_front();
                }
                let calls = self.window.len() as u64;
                let failures = self.window.iter().filter(|c| c.0).count() as u64;
                let slows = self.window.iter().filter(|c| c.1).count() as u64;
                if calls >= u64::from(self.p.minimum) && exceeded(&self.p, calls, failures, slows) {
                    self.go(State::Open);
                }
            }
            State::HalfOpen => {
                self.finished += 1;
                self.probe_failures += u32::from(failed);
                self.probe_slow += u32::from(slow);
                if self.finished == self.p.permitted {
                    let to = if exceeded(
                        &self.p,
                        u64::from(self.finished),
                        u64::from(self.probe_failures),
                        u64::from(self.probe_slow),
                    ) {
                        State::Open
                    } else {
                        State::Closed
                    };
                    self.go(to);
                }
            }
            _ => unreachable!(),
        }
    }
}

fn report(permit: Permit<'_, ManualClock>, finish: Finish) {
    match finish {
        Finish::Success => permit.record(Outcome::Success),
        Finish::Failure => permit.record(Outcome::Failure),
        Finish::Ignored => permit.record(Outcome::Ignored),
        Finish::Cancel => drop(permit),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn breaker_matches_the_reference_model(p in params(), ops in prop::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let mut builder = Breaker::builder()
            .count_window(p.size)
            .minimum_calls(p.minimum)
            .failure_rate_threshold(p.failure_threshold)
            .slow_call_rate_threshold(p.slow_threshold)
            .slow_call_duration(Duration::from_millis(p.slow_ms))
            .wait_in_open(Duration::from_millis(p.wait_ms))
            .permitted_calls_in_half_open(p.permitted);
        if let Some(max) = p.backoff_max_ms {
            builder = builder.backoff(2.0, Duration::from_millis(max.max(p.wait_ms)));
        }
        if let Some(max) = p.max_wait_ms {
            builder = builder.max_wait_in_half_open(Duration::from_millis(max));
        }
        let breaker = builder.clock(clock.clone()).build().unwrap();
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
