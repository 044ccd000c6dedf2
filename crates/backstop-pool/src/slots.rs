//! The pool's core: idle connections, the count of open ones, and a fair queue of
//! waiters, all behind one short lock.
//!
//! Capacity is counted in units: an idle connection, a checked-out one and a reservation
//! for a connection being created each hold one, and `size` counts them all. A unit
//! changes hands without `size` moving: a returned connection goes straight to the
//! longest waiter, and so does the unit of a closed connection (as a reservation to
//! create with). Waiters are woken outside the lock, each with what it was given, so
//! nobody wakes to find that another caller took the connection first.

use std::collections::VecDeque;
use std::time::Duration;

use backstop_core::HistogramSnapshot;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// What a waiter receives.
#[derive(Debug)]
pub(crate) enum Grant<T> {
    /// A connection returned by another caller.
    Conn(T),
    /// A reservation to create a connection with.
    Slot,
}

/// The outcome of asking for capacity.
#[derive(Debug)]
pub(crate) enum Take<T> {
    /// An idle connection (with its unit).
    Idle(T),
    /// A reservation: the pool has room for one more connection.
    Slot,
    /// The pool is full; a [`Grant`] arrives on this channel, in arrival order.
    Wait(oneshot::Receiver<Grant<T>>),
    /// The pool is closed.
    Closed,
}

/// Sizes at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    pub(crate) max_size: usize,
    /// Open connections plus reservations being created.
    pub(crate) size: usize,
    pub(crate) idle: usize,
    pub(crate) waiters: usize,
}

#[derive(Debug)]
struct State<T> {
    idle: VecDeque<T>,
    size: usize,
    max_size: usize,
    waiters: VecDeque<oneshot::Sender<Grant<T>>>,
    closed: bool,
    /// How long callers held their connections: recorded under the lock that a return
    /// takes anyway, so it costs plain adds rather than atomic ones.
    usage: HistogramSnapshot,
}

impl<T> State<T> {
    fn pop_idle(&mut self, lifo: bool) -> Option<T> {
        if lifo {
            self.idle.pop_back()
        } else {
            self.idle.pop_front()
        }
    }

    fn live_waiters(&self) -> usize {
        self.waiters.iter().filter(|w| !w.is_closed()).count()
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    state: Mutex<State<T>>,
    lifo: bool,
}

impl<T> Slots<T> {
    pub(crate) fn new(max_size: usize, lifo: bool) -> Self {
        Self {
            state: Mutex::new(State {
                // Grown on demand: never proportional to a configured maximum.
                idle: VecDeque::new(),
                size: 0,
                max_size,
                waiters: VecDeque::new(),
                closed: false,
                usage: HistogramSnapshot::empty(),
            }),
            lifo,
        }
    }

    /// An idle connection, else a reservation, else a place in the queue.
    pub(crate) fn take(&self) -> Take<T> {
        if let Some(take) = self.take_without_waiting() {
            return take;
        }
        // The channel is built outside the lock; the pool may have changed meanwhile.
        let (sender, receiver) = oneshot::channel();
        let mut state = self.state.lock();
        if let Some(take) = Self::take_locked(&mut state, self.lifo) {
            return take;
        }
        state.waiters.push_back(sender);
        Take::Wait(receiver)
    }

    fn take_without_waiting(&self) -> Option<Take<T>> {
        Self::take_locked(&mut self.state.lock(), self.lifo)
    }

    fn take_locked(state: &mut State<T>, lifo: bool) -> Option<Take<T>> {
        if state.closed {
            return Some(Take::Closed);
        }
        if let Some(conn) = state.pop_idle(lifo) {
            return Some(Take::Idle(conn));
        }
        if state.size < state.max_size {
            state.size += 1;
            return Some(Take::Slot);
        }
        None
    }

    /// Reserves a unit for a background creation, if the pool has room.
    pub(crate) fn reserve(&self) -> bool {
        let mut state = self.state.lock();
        if state.closed || state.size >= state.max_size {
            return false;
        }
        state.size += 1;
        true
    }

    /// Trades a reservation the caller holds for an idle connection, if there is one.
    pub(crate) fn swap_reservation_for_idle(&self) -> Option<T> {
        let mut state = self.state.lock();
        let conn = state.pop_idle(self.lifo)?;
        state.size -= 1;
        Some(conn)
    }

    /// Takes back a connection (recording how long it was held, if it was). Returns it
    /// when the pool no longer has room for it (closed, or shrunk below its size), for
    /// the caller to close.
    pub(crate) fn put(&self, conn: T, held: Option<Duration>) -> Option<T> {
        self.hand_over(Grant::Conn(conn), held)
    }

    /// Gives back a unit without a connection (one was closed, or a reservation went
    /// unused): the longest waiter gets it as a reservation.
    pub(crate) fn release(&self) {
        self.hand_over(Grant::Slot, None);
    }

    /// Hands `grant` to the longest live waiter, else keeps it (an idle connection) or
    /// frees it (a unit). Returns a connection the pool has no room for.
    fn hand_over(&self, mut grant: Grant<T>, held: Option<Duration>) -> Option<T> {
        let mut held = held;
        loop {
            let waiter = {
                let mut state = self.state.lock();
                if let Some(held) = held.take() {
                    state.usage.record(held);
                }
                if state.closed || state.size > state.max_size {
                    state.size -= 1;
                    return match grant {
                        Grant::Conn(surplus) => Some(surplus),
                        Grant::Slot => None,
                    };
                }
                match state.waiters.pop_front() {
                    Some(waiter) => waiter,
                    None => {
                        match grant {
                            Grant::Conn(conn) => state.idle.push_back(conn),
                            Grant::Slot => state.size -= 1,
                        }
                        return None;
                    }
                }
            };
            // Sent outside the lock; a waiter that gave up returns the grant to us.
            match waiter.send(grant) {
                Ok(()) => return None,
                Err(back) => grant = back,
            }
        }
    }

    /// Sets `max_size`. Returns the idle connections above the new size, for the caller
    /// to close; when growing, waiters get reservations for the new room.
    pub(crate) fn resize(&self, max_size: usize) -> Vec<T> {
        let (surplus, grants) = {
            let mut state = self.state.lock();
            state.max_size = max_size;
            let mut surplus = Vec::new();
            while state.size > max_size {
                let Some(conn) = state.idle.pop_front() else {
                    break;
                };
                state.size -= 1;
                surplus.push(conn);
            }
            let grants = max_size
                .saturating_sub(state.size)
                .min(state.live_waiters());
            state.size += grants;
            (surplus, grants)
        };
        for _ in 0..grants {
            self.release();
        }
        surplus
    }

    /// Removes the idle connections for which `verdict` gives a reason, returning them
    /// with it. With `keep_units` the caller keeps their units (it will return or close
    /// each connection); without, their units are freed.
    pub(crate) fn remove_idle<R>(
        &self,
        keep_units: bool,
        mut verdict: impl FnMut(&T) -> Option<R>,
    ) -> Vec<(T, R)> {
        let mut state = self.state.lock();
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(state.idle.len());
        for conn in state.idle.drain(..) {
            match verdict(&conn) {
                Some(reason) => removed.push((conn, reason)),
                None => kept.push_back(conn),
            }
        }
        state.idle = kept;
        if !keep_units {
            state.size -= removed.len();
        }
        removed
    }

    /// Closes the pool: returns the idle connections for the caller to close; waiters
    /// see their channel closed.
    pub(crate) fn close(&self) -> Vec<T> {
        let (idle, waiters) = {
            let mut state = self.state.lock();
            state.closed = true;
            let idle: Vec<T> = state.idle.drain(..).collect();
            state.size -= idle.len();
            (idle, std::mem::take(&mut state.waiters))
        };
        drop(waiters);
        idle
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub(crate) fn status(&self) -> Status {
        let state = self.state.lock();
        Status {
            max_size: state.max_size,
            size: state.size,
            idle: state.idle.len(),
            waiters: state.live_waiters(),
        }
    }

    pub(crate) fn usage(&self) -> HistogramSnapshot {
        self.state.lock().usage.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn granted(take: Take<u32>) -> Grant<u32> {
        match take {
            Take::Wait(mut receiver) => receiver.try_recv().expect("granted"),
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    /// A fair pool of one whose only unit is out, as a reservation.
    fn one_slot_taken() -> Slots<u32> {
        let slots = Slots::new(1, true);
        assert!(matches!(slots.take(), Take::Slot));
        slots
    }

    fn size_and_idle(slots: &Slots<u32>) -> (usize, usize) {
        let status = slots.status();
        (status.size, status.idle)
    }

    #[test]
    fn returns_go_to_the_longest_waiter_before_the_idle_queue() {
        let slots = one_slot_taken();
        let first = slots.take();
        let second = slots.take();
        assert!(slots.put(7, None).is_none());
        assert!(matches!(granted(first), Grant::Conn(7)));
        slots.release();
        assert!(matches!(granted(second), Grant::Slot));
        assert_eq!(size_and_idle(&slots), (1, 0));
    }

    #[test]
    fn a_waiter_that_gave_up_passes_its_grant_on() {
        let slots = one_slot_taken();
        drop(slots.take());
        assert_eq!(slots.status().waiters, 0);
        assert!(slots.put(1, None).is_none());
        assert_eq!(size_and_idle(&slots), (1, 1));
    }

    #[test]
    fn growing_grants_reservations_and_shrinking_returns_surplus() {
        let slots = Slots::new(2, false);
        assert!(matches!(slots.take(), Take::Slot));
        assert!(matches!(slots.take(), Take::Slot));
        let waiter = slots.take();
        assert!(slots.resize(3).is_empty());
        assert!(matches!(granted(waiter), Grant::Slot));
        assert!(slots.put(1, None).is_none());
        assert_eq!(slots.resize(1), vec![1]);
        assert_eq!(slots.put(2, None), Some(2), "over size: closed on return");
        assert!(slots.put(3, None).is_none());
        assert_eq!(size_and_idle(&slots), (1, 1));
    }

    #[test]
    fn closing_ends_waits_and_refuses_returns() {
        let slots = one_slot_taken();
        let Take::Wait(mut waiter) = slots.take() else {
            panic!("expected to wait");
        };
        assert!(slots.close().is_empty());
        assert!(waiter.try_recv().is_err());
        assert!(matches!(slots.take(), Take::Closed));
        assert_eq!(slots.put(5, None), Some(5));
        assert_eq!(slots.status().size, 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Take,
        Return(usize),
        Close(usize),
        GiveUp(usize),
        Resize(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Take),
            2 => any::<usize>().prop_map(Op::Return),
            1 => any::<usize>().prop_map(Op::Close),
            1 => any::<usize>().prop_map(Op::GiveUp),
            1 => (1usize..6).prop_map(Op::Resize),
        ]
    }

    /// A unit the test holds: a connection, or a reservation it "creates" on return.
    enum Held {
        Conn(u32),
        Reservation,
    }

    proptest! {
        /// Over any sequence of checkouts, returns, closes, abandoned waits and resizes,
        /// no unit of capacity is lost or made up: `size` always equals idle connections
        /// plus units held, never exceeds `max_size` once the surplus has drained, and
        /// nobody waits while a connection sits idle.
        #[test]
        fn capacity_is_conserved(max in 1usize..5, ops in proptest::collection::vec(op(), 1..80)) {
            let slots = Slots::new(max, true);
            let mut held: Vec<Held> = Vec::new();
            let mut waiting: VecDeque<oneshot::Receiver<Grant<u32>>> = VecDeque::new();
            let mut next_id = 0u32;
            for op in ops {
                match op {
                    Op::Take => match slots.take() {
                        Take::Idle(conn) => held.push(Held::Conn(conn)),
                        Take::Slot => held.push(Held::Reservation),
                        Take::Wait(receiver) => waiting.push_back(receiver),
                        Take::Closed => prop_assert!(false, "never closed here"),
                    },
                    Op::Return(i) if !held.is_empty() => {
                        let conn = match held.swap_remove(i % held.len()) {
                            Held::Conn(conn) => conn,
                            Held::Reservation => { next_id += 1; next_id }
                        };
                        let _surplus = slots.put(conn, Some(Duration::from_millis(1)));
                    }
                    Op::Close(i) if !held.is_empty() => {
                        held.swap_remove(i % held.len());
                        slots.release();
                    }
                    Op::GiveUp(i) if !waiting.is_empty() => {
                        let index = i % waiting.len();
                        if let Some(mut receiver) = waiting.remove(index) {
                            receiver.close();
                            match receiver.try_recv() {
                                Ok(Grant::Conn(conn)) => { let _surplus = slots.put(conn, None); }
                                Ok(Grant::Slot) => slots.release(),
                                Err(_) => {}
                            }
                        }
                    }
                    Op::Resize(size) => { let _surplus = slots.resize(size); }
                    _ => {}
                }
                waiting.retain_mut(|receiver| match receiver.try_recv() {
                    Ok(Grant::Conn(conn)) => { held.push(Held::Conn(conn)); false }
                    Ok(Grant::Slot) => { held.push(Held::Reservation); false }
                    Err(_) => true,
                });
                let status = slots.status();
                prop_assert_eq!(status.size, status.idle + held.len(), "{:?}", status);
                prop_assert_eq!(status.waiters, waiting.len());
                prop_assert!(status.idle == 0 || status.waiters == 0, "{:?}", status);
                prop_assert!(status.size <= status.max_size || status.idle == 0, "{:?}", status);
            }
            waiting.clear();
            for _ in held.drain(..) {
                slots.release();
            }
            let _idle = slots.close();
            prop_assert_eq!(slots.status().size, 0);
        }
    }
}
