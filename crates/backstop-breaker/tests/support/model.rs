//! The breaker's reference model: plain fields, a `VecDeque` window, every rule written
//! the obvious way. Shared by the proptest in `tests/model.rs` and the `breaker_ops` fuzz
//! target, so both check the breaker against the same rules.

use std::collections::VecDeque;

use std::time::Duration;

use backstop_breaker::{Breaker, Outcome, Permit, State};
use backstop_core::ManualClock;

pub(crate) const MS: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) size: u32,
    pub(crate) minimum: u32,
    pub(crate) failure_threshold: f64,
    pub(crate) slow_threshold: f64,
    pub(crate) slow_ms: u64,
    pub(crate) wait_ms: u64,
    pub(crate) backoff_max_ms: Option<u64>,
    pub(crate) permitted: u32,
    pub(crate) max_wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Finish {
    Success,
    Failure,
    Ignored,
    Cancel,
}

/// The reference: plain fields, a `VecDeque` window, every rule written the obvious way.
pub(crate) struct Model {
    pub(crate) p: Params,
    pub(crate) now: u64,
    pub(crate) state: State,
    pub(crate) epoch: u64,
    pub(crate) window: VecDeque<(bool, bool)>,
    pub(crate) open_until: u64,
    pub(crate) failed_rounds: u32,
    pub(crate) issued: u32,
    pub(crate) finished: u32,
    pub(crate) probe_failures: u32,
    pub(crate) probe_slow: u32,
    pub(crate) half_open_since: u64,
    pub(crate) rejected: u64,
}

/// A call in flight in the model: the epoch and state it was admitted in, and when.
#[derive(Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) epoch: u64,
    pub(crate) state: State,
    pub(crate) start: u64,
}

pub(crate) fn exceeded(p: &Params, calls: u64, failures: u64, slow: u64) -> bool {
    let rate = |part: u64| part as f64 * 100.0 / calls as f64;
    calls > 0 && (rate(failures) >= p.failure_threshold || rate(slow) >= p.slow_threshold)
}

impl Model {
    pub(crate) fn new(p: Params) -> Self {
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

    pub(crate) fn go(&mut self, to: State) {
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

    pub(crate) fn acquire(&mut self) -> Option<Ticket> {
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

    pub(crate) fn finish(&mut self, ticket: Ticket, finish: Finish) {
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

pub(crate) fn report(permit: Permit<'_, ManualClock>, finish: Finish) {
    match finish {
        Finish::Success => permit.record(Outcome::Success),
        Finish::Failure => permit.record(Outcome::Failure),
        Finish::Ignored => permit.record(Outcome::Ignored),
        Finish::Cancel => drop(permit),
    }
}

/// The breaker under test, configured exactly as the model.
pub(crate) fn breaker(p: &Params, clock: &ManualClock) -> Breaker<ManualClock> {
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
    builder
        .clock(clock.clone())
        .build()
        .expect("the model's parameters are valid")
}
