//! Dropping a call at any await point releases its permit; what a cancelled call counts
//! as is configurable.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use backstop_breaker::{Breaker, BreakerBuilder, CancelledCalls, State};
use backstop_core::ManualClock;

mod support;

/// A future that is pending `remaining` times before resolving to `Ok(())`.
struct Steps {
    remaining: usize,
}

impl Future for Steps {
    type Output = Result<(), ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.remaining == 0 {
            Poll::Ready(Ok(()))
        } else {
            self.remaining -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn poll_times<F: Future>(future: Pin<&mut F>, times: usize) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = future;
    for _ in 0..times {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
    }
    None
}

fn builder(clock: &ManualClock) -> BreakerBuilder<ManualClock> {
    support::two_call_breaker(clock, Duration::from_secs(1))
}

/// Starts a call that needs four polls, polls it `polls` times and drops it unfinished.
fn cancel_after(breaker: &Breaker<ManualClock>, polls: usize) {
    let mut call = Box::pin(breaker.call(|| Steps { remaining: 3 }));
    assert!(poll_times(call.as_mut(), polls).is_none());
}

fn half_open(breaker: &Breaker<ManualClock>, clock: &ManualClock) {
    breaker.transition_to(State::Open);
    clock.advance(Duration::from_secs(1));
}

#[test]
fn dropping_a_probe_at_every_await_point_returns_its_permit() {
    let (clock, breaker) = support::on_new_clock(builder);
    half_open(&breaker, &clock);
    breaker.try_acquire().unwrap().ignore();
    assert_eq!(breaker.state(), State::HalfOpen);
    for polls in 0..6 {
        let mut call = Box::pin(breaker.call(|| Steps { remaining: 5 }));
        assert!(poll_times(call.as_mut(), polls).is_none());
        if polls > 0 {
            assert!(breaker.try_acquire().is_err(), "the probe is out");
            assert_eq!(breaker.state(), State::HalfOpen);
        }
        drop(call);
        assert_eq!(
            breaker.state(),
            State::HalfOpen,
            "a cancelled call decides nothing"
        );
    }
    breaker
        .try_acquire()
        .expect("the permit came back")
        .success();
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn a_cancelled_closed_call_is_not_recorded_by_default() {
    let (_, breaker) = support::on_new_clock(builder);
    for _ in 0..5 {
        cancel_after(&breaker, 2);
    }
    assert_eq!(breaker.stats().buffered_calls, 0);
}

#[test]
fn cancelled_calls_can_count_as_failures() {
    let (clock, breaker) =
        support::on_new_clock(|clock| builder(clock).cancelled_calls(CancelledCalls::Failure));
    for _ in 0..2 {
        cancel_after(&breaker, 1);
    }
    assert_eq!(
        breaker.state(),
        State::Open,
        "two cancelled calls = two failures"
    );
    clock.advance(Duration::from_secs(1));
    cancel_after(&breaker, 1);
    assert_eq!(breaker.state(), State::Open, "the cancelled probe failed");
}

#[test]
fn cancelled_calls_can_count_as_successes() {
    let (clock, breaker) =
        support::on_new_clock(|clock| builder(clock).cancelled_calls(CancelledCalls::Success));
    half_open(&breaker, &clock);
    cancel_after(&breaker, 1);
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn a_completed_call_is_recorded_once() {
    let (_, breaker) = support::on_new_clock(|clock| builder(clock).count_window(10));
    let mut call = Box::pin(breaker.call(|| Steps { remaining: 2 }));
    assert!(matches!(poll_times(call.as_mut(), 3), Some(Ok(()))));
    drop(call);
    assert_eq!(breaker.stats().buffered_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_probe_frees_half_open() {
    let (clock, breaker) = support::on_new_clock(builder);
    half_open(&breaker, &clock);
    let stuck = tokio::time::timeout(
        Duration::from_secs(30),
        breaker.call(std::future::pending::<Result<(), ()>>),
    )
    .await;
    assert!(stuck.is_err(), "the probe never answered");
    let probe = breaker.call(|| async { Ok::<_, ()>(()) }).await;
    assert!(probe.is_ok());
    assert_eq!(breaker.state(), State::Closed);
}
