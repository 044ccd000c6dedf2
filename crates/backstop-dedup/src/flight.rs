//! One execution shared by every caller waiting on it.
//!
//! A purpose-built replacement for `futures::future::Shared`. `Shared` polls the work
//! with a waker that wakes *every* waiter, so each wake-up of the work costs a poll of
//! every caller; here the work wakes only the waiter that last polled it (the driver),
//! the others are woken once, when the result is in, and a driver that leaves hands the
//! work to one of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use futures::future::BoxFuture;
use parking_lot::Mutex;

/// The work and its result, shared by the execution's waiters.
pub(crate) struct Flight<T> {
    state: Mutex<State<T>>,
    /// Set by the first waiter to finish, which releases the key for everyone.
    released: AtomicBool,
}

struct State<T> {
    /// The work; out of the cell while its driver polls it, `None` once it finished.
    work: Option<BoxFuture<'static, T>>,
    result: Option<T>,
    /// The waiter that last polled the work, whose waker the work will wake.
    driver: Option<usize>,
    /// Each waiter's slot: the waker to call when the result is in.
    wakers: Vec<Option<Waker>>,
    /// A waiter found the work out being polled and went to sleep.
    missed: bool,
}

impl<T: Clone> Flight<T> {
    pub(crate) fn new(work: BoxFuture<'static, T>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                work: Some(work),
                result: None,
                driver: None,
                wakers: Vec::new(),
                missed: false,
            }),
            released: AtomicBool::new(false),
        })
    }

    /// A new waiter on this execution.
    pub(crate) fn join(self: &Arc<Self>) -> Joined<T> {
        let mut state = self.state.lock();
        state.wakers.push(None);
        Joined {
            flight: Arc::clone(self),
            slot: state.wakers.len() - 1,
            done: false,
        }
    }
}

/// One caller's wait for a [`Flight`]'s result; the first to poll drives the work.
pub(crate) struct Joined<T> {
    flight: Arc<Flight<T>>,
    slot: usize,
    done: bool,
}

impl<T> Joined<T> {
    /// Whether this is the first waiter of the execution to finish (and so the one to
    /// release its key): the others skip the in-flight map altogether.
    pub(crate) fn first_to_finish(&self) -> bool {
        !self.flight.released.swap(true, Ordering::AcqRel)
    }
}

impl<T: Clone> Future for Joined<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let mut state = this.flight.state.lock();
        if let Some(result) = &state.result {
            this.done = true;
            return Poll::Ready(result.clone());
        }
        // Whoever polls while nobody else is polling the work drives it: a driver whose
        // owner stopped polling it (it sits in a `select!` that went another way, say)
        // must not stall the others.
        let slot = &mut state.wakers[this.slot];
        if !slot
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            *slot = Some(cx.waker().clone());
        }
        let Some(mut work) = state.work.take() else {
            // Another waiter is polling the work right now: sleep; it wakes us if its
            // poll ends pending, so we never depend on its owner polling again.
            state.missed = true;
            return Poll::Pending;
        };
        state.driver = Some(this.slot);
        // The work is polled outside the lock: it may join other flights, or this one.
        drop(state);
        let poll = work.as_mut().poll(cx);
        let mut state = this.flight.state.lock();
        match poll {
            Poll::Pending => {
                state.work = Some(work);
                if std::mem::take(&mut state.missed) {
                    let slot = this.slot;
                    let missed: Vec<Waker> = state
                        .wakers
                        .iter_mut()
                        .enumerate()
                        .filter(|(other, _)| *other != slot)
                        .filter_map(|(_, waker)| waker.take())
                        .collect();
                    drop(state);
                    for waker in missed {
                        waker.wake();
                    }
                }
                Poll::Pending
            }
            Poll::Ready(result) => {
                drop(work);
                state.result = Some(result.clone());
                state.driver = None;
                let sleepers: Vec<Waker> =
                    state.wakers.iter_mut().filter_map(Option::take).collect();
                drop(state);
                for waker in sleepers {
                    waker.wake();
                }
                this.done = true;
                Poll::Ready(result)
            }
        }
    }
}

impl<T> Drop for Joined<T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.flight.state.lock();
        state.wakers[self.slot] = None;
        if state.driver == Some(self.slot) {
            state.driver = None;
        }
        // Nobody drives the unfinished work: wake one sleeper to take it over, from
        // where it is. (A sleeper woken for this that leaves first lands here too.)
        if state.driver.is_none() && state.result.is_none() {
            let next = state.wakers.iter_mut().find_map(Option::take);
            drop(state);
            if let Some(waker) = next {
                waker.wake();
            }
        }
    }
}
