//! One execution shared by every caller waiting on it.
//!
//! A purpose-built replacement for `futures::future::Shared`. `Shared` polls the work
//! with a waker that wakes *every* waiter, so each wake-up of the work costs a poll of
//! every caller; here the work wakes only the waiter that last polled it (the driver),
//! the others are woken once, when the result is in, and a driver that leaves hands the
//! work to one of them.
//!
//! Every operation is O(1) amortized in the number of waiters: wakers are kept by waiter
//! ([`Wakers`]) and removed when a waiter leaves, so a stuck key followed by a million
//! callers that give up holds nothing for them and never scans for them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use backstop_core::{Panicked, contain};
use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::wakers::Wakers;

/// The work and its result, shared by the execution's waiters.
pub(crate) struct Flight<T> {
    state: Mutex<State<T>>,
    /// Set by the first waiter to finish, which releases the key for everyone.
    released: AtomicBool,
    /// The result every waiter gets when polling the work panics: the work is out of its
    /// cell while polled, so without it the other waiters would wait for ever.
    on_panic: fn(Panicked) -> T,
}

struct State<T> {
    /// The work; out of the cell while its driver polls it, `None` once it finished.
    work: Option<BoxFuture<'static, T>>,
    result: Option<T>,
    /// The waiter that last polled the work, whose waker the work will wake.
    driver: Option<u64>,
    /// The wakers of waiters that polled and still wait: the ones to call when the result
    /// is in. A waiter's entry goes when it leaves.
    wakers: Wakers,
    next_waiter: u64,
    /// A waiter found the work out being polled and went to sleep.
    missed: bool,
}

impl<T: Clone> Flight<T> {
    pub(crate) fn new(work: BoxFuture<'static, T>, on_panic: fn(Panicked) -> T) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                work: Some(work),
                result: None,
                driver: None,
                wakers: Wakers::default(),
                next_waiter: 0,
                missed: false,
            }),
            released: AtomicBool::new(false),
            on_panic,
        })
    }

    /// A new waiter on this execution.
    pub(crate) fn join(self: &Arc<Self>) -> Joined<T> {
        let mut state = self.state.lock();
        let id = state.next_waiter;
        state.next_waiter += 1;
        Joined {
            flight: Arc::clone(self),
            id,
            done: false,
        }
    }

    #[cfg(test)]
    fn waker_capacity(&self) -> usize {
        self.state.lock().wakers.capacity()
    }
}

/// One caller's wait for a [`Flight`]'s result; the first to poll drives the work.
pub(crate) struct Joined<T> {
    flight: Arc<Flight<T>>,
    id: u64,
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
        state.wakers.register(this.id, cx.waker());
        let Some(mut work) = state.work.take() else {
            // Another waiter is polling the work right now: sleep; it wakes us if its
            // poll ends pending, so we never depend on its owner polling again.
            state.missed = true;
            return Poll::Pending;
        };
        state.driver = Some(this.id);
        // The work is polled outside the lock: it may join other flights, or this one.
        // A panic is contained here, while the work is out of its cell: unwinding past
        // this point would leave the others waiting for work nobody holds.
        drop(state);
        let poll = contain("dedup.work", || work.as_mut().poll(cx))
            .unwrap_or_else(|panicked| Poll::Ready((this.flight.on_panic)(panicked)));
        let mut state = this.flight.state.lock();
        match poll {
            Poll::Pending => {
                state.work = Some(work);
                if std::mem::take(&mut state.missed) {
                    let missed = state.wakers.take_others(this.id);
                    drop(state);
                    for waker in missed {
                        waker.wake();
                    }
                }
                Poll::Pending
            }
            Poll::Ready(result) => {
                state.result = Some(result.clone());
                state.driver = None;
                // Every waiter but this one, which returns the result itself.
                let sleepers = state.wakers.take_others(this.id);
                drop(state);
                // Dropped outside the lock: its `Drop` is user code.
                drop(work);
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
        state.wakers.remove(self.id);
        if state.driver == Some(self.id) {
            state.driver = None;
        }
        // Nobody drives the unfinished work: wake one sleeper to take it over, from
        // where it is. (A sleeper woken for this that leaves first lands here too.)
        if state.driver.is_none() && state.result.is_none() {
            let next = state.wakers.take_any();
            drop(state);
            if let Some(waker) = next {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;
    use std::time::{Duration, Instant};

    fn stuck() -> Arc<Flight<Result<u32, Panicked>>> {
        Flight::new(Box::pin(futures::future::pending()), Err)
    }

    fn poll<T: Clone>(joined: &mut Joined<T>) -> Poll<T> {
        let waker = noop_waker();
        Pin::new(joined).poll(&mut Context::from_waker(&waker))
    }

    /// Issue 19: with a stuck key, each departing follower used to leave a slot behind
    /// and each driver departure scanned every slot from the start (quadratic: a million
    /// departures did not finish in 600 s).
    #[test]
    fn departed_followers_cost_constant_time_and_leave_no_storage() {
        let flight = stuck();
        let mut first = flight.join();
        assert!(poll(&mut first).is_pending());
        let started = Instant::now();
        for _ in 0..200_000 {
            // Each follower polls (driving the work, as nobody else is) and gives up.
            let mut follower = flight.join();
            assert!(poll(&mut follower).is_pending());
            drop(follower);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "200k departures took {:?}",
            started.elapsed()
        );
        assert!(
            flight.waker_capacity() <= 64,
            "waiter storage kept {} slots",
            flight.waker_capacity()
        );
        drop(first);
        assert!(flight.waker_capacity() <= 64);
    }

    #[test]
    fn a_panicking_poll_reaches_every_waiter() {
        let flight: Arc<Flight<Result<u32, Panicked>>> = Flight::new(
            Box::pin(async {
                tokio::task::yield_now().await;
                panic!("work blew up")
            }),
            Err,
        );
        let mut a = flight.join();
        let mut b = flight.join();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, b) = tokio::join!(&mut a, &mut b);
            assert_eq!(a.unwrap_err().message(), "work blew up");
            assert_eq!(b.unwrap_err().message(), "work blew up");
        });
    }
}
