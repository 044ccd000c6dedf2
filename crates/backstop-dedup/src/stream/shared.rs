//! One upstream stream read by several readers, each at its own pace.
//!
//! The chunks live in one buffer (a deque indexed from `base`); every reader is a cursor
//! into it. Each buffered chunk counts the readers whose next chunk it is, so the oldest
//! chunk nobody needs any more is found in O(1) and dropped. While the stream is open to
//! joiners, every chunk is kept (a late joiner starts from chunk 0); once it is closed
//! (ended, or its buffer reached the bound), chunks go as soon as the last reader passed
//! them.
//!
//! Nothing is spawned: a reader that wants the chunk after the last buffered one polls
//! the upstream itself, with a waker that wakes every reader waiting at the tail, so
//! whichever of them runs next carries on. A reader leaving, the leader included, takes
//! nothing with it; the last reader leaving drops the upstream.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

use backstop_core::{Panicked, RejectKind, Rejected, StackError, contain};
use foldhash::fast::RandomState;
use futures::Stream;
use parking_lot::Mutex;

use super::config::{LagPolicy, StreamShareConfig};
use super::stats::StreamCounters;

/// An upstream as the group stores it.
pub(crate) type Upstream<T, E> = Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>;

/// How many bytes a chunk counts for against the buffer bound.
pub(crate) type Weigher<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

/// What every stream of a group shares: settings, weigher, counters.
pub(crate) struct GroupShared<T> {
    pub(crate) config: StreamShareConfig,
    pub(crate) weigher: Weigher<T>,
    pub(crate) counters: StreamCounters,
}

/// Removes the stream's key from the group's map (if it still maps to this stream).
pub(crate) type Release = Box<dyn FnOnce() + Send>;

struct Slot<T> {
    chunk: T,
    weight: usize,
    /// Readers whose next chunk is this one.
    waiting: u32,
}

enum Source<T, E> {
    /// Nobody is polling it.
    Idle(Upstream<T, E>),
    /// A reader took it out to poll it, outside the lock.
    Polling,
    /// It ended (or failed, or panicked, or was abandoned) and was dropped.
    Done,
}

enum End<E> {
    Finished,
    Failed(Arc<E>),
    Panicked(Panicked),
}

impl<E> Clone for End<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Finished => Self::Finished,
            Self::Failed(error) => Self::Failed(Arc::clone(error)),
            Self::Panicked(panicked) => Self::Panicked(panicked.clone()),
        }
    }
}

struct State<T, E> {
    slots: VecDeque<Slot<T>>,
    /// Index of `slots[0]` in the whole stream.
    base: u64,
    /// Readers that have read every buffered chunk.
    at_tail: u32,
    readers: u32,
    bytes: usize,
    /// Whether a new caller may still join (and so replay from chunk 0).
    joinable: bool,
    source: Source<T, E>,
    end: Option<End<E>>,
    /// The upstream asked to be polled (its waker fired) since its last poll began.
    woken: bool,
    /// Readers sleeping until the tail moves, space frees up or the stream ends.
    wakers: HashMap<u64, Waker, RandomState>,
    next_reader: u64,
    release: Option<Release>,
}

impl<T, E> State<T, E> {
    /// Gives memory back after a crowd of readers left.
    fn shrink(&mut self) {
        if self.wakers.capacity() > 4 * self.wakers.len() + 64 {
            self.wakers.shrink_to(2 * self.wakers.len());
        }
    }

    fn take_wakers(&mut self) -> Vec<Waker> {
        let wakers = self.wakers.drain().map(|(_, waker)| waker).collect();
        self.shrink();
        wakers
    }

    fn register(&mut self, id: u64, waker: &Waker) {
        match self.wakers.get_mut(&id) {
            Some(known) if known.will_wake(waker) => {}
            Some(known) => known.clone_from(waker),
            None => {
                self.wakers.insert(id, waker.clone());
            }
        }
    }

    /// Drops the oldest chunk, returning how many readers still needed it.
    fn pop_front(&mut self, shared: &GroupShared<T>) -> u32 {
        let Some(slot) = self.slots.pop_front() else {
            return 0;
        };
        self.base += 1;
        self.bytes -= slot.weight;
        shared
            .counters
            .bytes_buffered
            .fetch_sub(slot.weight as u64, Relaxed);
        slot.waiting
    }

    /// Drops the leading chunks no reader needs any more, once nobody can join.
    fn trim(&mut self, shared: &GroupShared<T>) -> bool {
        let mut trimmed = false;
        while !self.joinable && self.slots.front().is_some_and(|slot| slot.waiting == 0) {
            self.pop_front(shared);
            trimmed = true;
        }
        trimmed
    }

    /// Trims, and if that made room, takes the wakers of the readers waiting for it (to
    /// wake once the lock is released).
    fn trim_and_take_wakers(&mut self, shared: &GroupShared<T>) -> Vec<Waker> {
        if self.trim(shared) && !self.full(shared) {
            self.take_wakers()
        } else {
            Vec::new()
        }
    }

    /// Whether, under [`LagPolicy::Wait`], the upstream must not be read until the slowest
    /// reader frees room.
    fn full(&self, shared: &GroupShared<T>) -> bool {
        shared.config.lag == LagPolicy::Wait
            && !self.joinable
            && self.bytes > shared.config.max_buffered_bytes
    }

    fn close_to_joiners(&mut self) -> Option<Release> {
        self.joinable = false;
        self.release.take()
    }

    /// Sets the end, drops the upstream, and hands back what to run outside the lock.
    fn finish(&mut self, end: End<E>) -> Finished<T, E> {
        self.end = Some(end);
        let upstream = match std::mem::replace(&mut self.source, Source::Done) {
            Source::Idle(upstream) => Some(upstream),
            Source::Polling | Source::Done => None,
        };
        Finished {
            release: self.close_to_joiners(),
            wakers: self.take_wakers(),
            upstream,
        }
    }
}

/// Work left for after the lock is released: user `Drop` code and wake-ups never run
/// under it, and the key is released without holding a shard of the map and the stream's
/// lock at once.
struct Finished<T, E> {
    release: Option<Release>,
    wakers: Vec<Waker>,
    upstream: Option<Upstream<T, E>>,
}

impl<T, E> Finished<T, E> {
    fn run(self) {
        if let Some(upstream) = self.upstream {
            // The upstream's `Drop` is user code: a panic there must not unwind through a
            // reader's `poll_next` or `Drop`.
            let _ = contain("dedup.stream.drop", move || drop(upstream));
        }
        if let Some(release) = self.release {
            release();
        }
        for waker in self.wakers {
            waker.wake();
        }
    }
}

/// One shared upstream and its buffer.
pub(crate) struct SharedFlight<T, E> {
    state: Mutex<State<T, E>>,
    shared: Arc<GroupShared<T>>,
    /// What the upstream is polled with: wakes every sleeping reader.
    tail_waker: Waker,
}

/// The upstream's waker: it wakes every sleeping reader, so the stream goes on whichever
/// of them is polled next, even if the one that polled last has gone or stopped polling.
struct TailWake<T, E>(Weak<SharedFlight<T, E>>);

impl<T, E> Wake for TailWake<T, E>
where
    T: Send + 'static,
    E: Send + Sync + 'static,
{
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(flight) = self.0.upgrade() else {
            return;
        };
        let wakers = {
            let mut state = flight.state.lock();
            state.woken = true;
            state.take_wakers()
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl<T, E> SharedFlight<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: StackError,
{
    /// A stream over `upstream`, read by one first reader. `release` (when shared) removes
    /// its key from the group when the stream stops taking joiners.
    pub(crate) fn start(
        upstream: Upstream<T, E>,
        shared: Arc<GroupShared<T>>,
        release: Option<Release>,
    ) -> SharedStream<T, E> {
        let joinable = release.is_some();
        let flight = Arc::new_cyclic(|weak| Self {
            state: Mutex::new(State {
                slots: VecDeque::new(),
                base: 0,
                at_tail: 1,
                readers: 1,
                bytes: 0,
                joinable,
                source: Source::Idle(upstream),
                end: None,
                woken: true,
                wakers: HashMap::default(),
                next_reader: 1,
                release,
            }),
            shared,
            tail_waker: Waker::from(Arc::new(TailWake(weak.clone()))),
        });
        flight.shared.counters.readers.fetch_add(1, Relaxed);
        SharedStream {
            flight,
            id: 0,
            cursor: 0,
            done: false,
        }
    }

    /// A new reader from chunk 0, or `None` when the stream no longer takes joiners.
    /// The second value says whether chunks were already produced (a late joiner).
    pub(crate) fn join(self: &Arc<Self>) -> Option<(SharedStream<T, E>, bool)> {
        let mut state = self.state.lock();
        if !state.joinable {
            return None;
        }
        state.readers += 1;
        let late = match state.slots.front_mut() {
            Some(first) => {
                first.waiting += 1;
                true
            }
            None => {
                state.at_tail += 1;
                false
            }
        };
        let id = state.next_reader;
        state.next_reader += 1;
        drop(state);
        self.shared.counters.readers.fetch_add(1, Relaxed);
        Some((
            SharedStream {
                flight: Arc::clone(self),
                id,
                cursor: 0,
                done: false,
            },
            late,
        ))
    }
}

impl<T, E> SharedFlight<T, E> {
    /// Stops taking joiners (the key was forgotten): chunks every reader passed go.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        let release = state.close_to_joiners();
        let wakers = state.trim_and_take_wakers(&self.shared);
        drop(state);
        if let Some(release) = release {
            release();
        }
        for waker in wakers {
            waker.wake();
        }
    }
}

impl<T, E> Drop for SharedFlight<T, E> {
    fn drop(&mut self) {
        let bytes = self.state.get_mut().bytes;
        self.shared
            .counters
            .bytes_buffered
            .fetch_sub(bytes as u64, Relaxed);
    }
}

/// One reader's view of a shared upstream stream, made by
/// [`StreamGroup::share`](crate::StreamGroup::share).
///
/// It yields every chunk of the upstream from the first, then its end: `None` after a
/// clean end, or the upstream's error (through [`StackError::shared`], after the chunks
/// this reader had not read yet) and then `None`. A reader cut for lagging gets a
/// [`Rejected`] with [`RejectKind::QueueFull`] instead. Dropping it leaves the others
/// reading; dropping the last reader of an unfinished stream drops the upstream.
pub struct SharedStream<T, E> {
    flight: Arc<SharedFlight<T, E>>,
    id: u64,
    /// Index of this reader's next chunk.
    cursor: u64,
    /// This reader got its end and no longer counts as a reader.
    done: bool,
}

impl<T, E> fmt::Debug for SharedStream<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStream")
            .field("next_chunk", &self.cursor)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T, E> SharedStream<T, E> {
    pub(crate) fn flight(&self) -> Arc<SharedFlight<T, E>> {
        Arc::clone(&self.flight)
    }

    /// How many chunks this reader has read.
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// Marks this reader gone under the lock: its place stops holding chunks back, and
    /// the last reader of an unfinished stream abandons it.
    fn leave(&mut self, state: &mut State<T, E>) -> Option<Finished<T, E>> {
        self.done = true;
        let shared = &self.flight.shared;
        if self.cursor >= state.base {
            let index = (self.cursor - state.base) as usize;
            match state.slots.get_mut(index) {
                Some(slot) => slot.waiting -= 1,
                None => state.at_tail -= 1,
            }
        }
        state.readers -= 1;
        shared.counters.readers.fetch_sub(1, Relaxed);
        state.wakers.remove(&self.id);
        state.shrink();
        if state.readers == 0 && state.end.is_none() {
            StreamCounters::bump(&shared.counters.abandoned);
            tracing::debug!(target: "backstop_dedup", "every reader left; shared stream abandoned");
            let mut finished = state.finish(End::Finished);
            // Nobody reads any more: the buffer goes with the last reader.
            while !state.slots.is_empty() {
                state.pop_front(shared);
            }
            finished.wakers.clear();
            return Some(finished);
        }
        if state.trim(shared) && !state.full(shared) {
            return Some(Finished {
                release: None,
                wakers: state.take_wakers(),
                upstream: None,
            });
        }
        None
    }

    /// The error for this reader's end.
    fn end_item(end: End<E>, others: bool) -> Option<Result<T, E>>
    where
        E: StackError,
    {
        match end {
            End::Finished => None,
            End::Failed(error) if !others => {
                Some(Err(Arc::try_unwrap(error).unwrap_or_else(E::shared)))
            }
            End::Failed(error) => Some(Err(E::shared(error))),
            End::Panicked(panicked) => Some(Err(E::panicked(panicked))),
        }
    }
}

impl<T, E> Stream for SharedStream<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: StackError,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let flight = Arc::clone(&this.flight);
        let shared = &flight.shared;
        let mut state = flight.state.lock();

        if this.cursor < state.base {
            // The bound dropped chunks this reader had not read: it is cut.
            let after = this.leave(&mut state);
            drop(state);
            StreamCounters::bump(&shared.counters.lagged);
            tracing::debug!(target: "backstop_dedup", position = this.cursor, "shared stream reader lagged behind the buffer bound");
            if let Some(after) = after {
                after.run();
            }
            return Poll::Ready(Some(Err(E::rejected(Rejected::new(RejectKind::QueueFull)))));
        }

        let index = (this.cursor - state.base) as usize;
        if index < state.slots.len() {
            // Cloned before any count changes: `clone` is user code and may panic.
            let chunk = state.slots[index].chunk.clone();
            state.slots[index].waiting -= 1;
            match state.slots.get_mut(index + 1) {
                Some(next) => next.waiting += 1,
                None => state.at_tail += 1,
            }
            this.cursor += 1;
            let wakers = state.trim_and_take_wakers(shared);
            drop(state);
            for waker in wakers {
                waker.wake();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }

        if let Some(end) = state.end.clone() {
            let after = this.leave(&mut state);
            let others = state.readers > 0;
            drop(state);
            if let Some(after) = after {
                after.run();
            }
            return Poll::Ready(Self::end_item(end, others));
        }

        // This reader needs the next chunk from the upstream.
        state.register(this.id, cx.waker());
        if state.full(shared) || !state.woken {
            // Waiting for room (`LagPolicy::Wait`), or the upstream is pending and will
            // wake every sleeper when it has something.
            return Poll::Pending;
        }
        let mut upstream = match std::mem::replace(&mut state.source, Source::Polling) {
            Source::Idle(upstream) => upstream,
            other => {
                // Another reader is polling it right now; it wakes the sleepers after.
                state.source = other;
                return Poll::Pending;
            }
        };
        state.woken = false;
        drop(state);

        let mut upstream_cx = Context::from_waker(&flight.tail_waker);
        let polled = contain("dedup.stream.upstream", || {
            upstream.as_mut().poll_next(&mut upstream_cx)
        });
        let polled = match polled {
            Ok(Poll::Ready(Some(Ok(chunk)))) => {
                match contain("dedup.stream.weigher", || {
                    ((shared.weigher)(&chunk), chunk.clone())
                }) {
                    Ok((weight, copy)) => Ok(Poll::Ready(Some(Ok((chunk, copy, weight))))),
                    Err(panicked) => Err(panicked),
                }
            }
            Ok(Poll::Ready(Some(Err(error)))) => Ok(Poll::Ready(Some(Err(error)))),
            Ok(Poll::Ready(None)) => Ok(Poll::Ready(None)),
            Ok(Poll::Pending) => Ok(Poll::Pending),
            Err(panicked) => Err(panicked),
        };

        let mut state = flight.state.lock();
        match polled {
            Ok(Poll::Pending) => {
                state.source = Source::Idle(upstream);
                // A wake-up that came while this reader polled found it out of its cell:
                // let the sleepers look again rather than rely on this reader's owner.
                let missed = if state.woken {
                    state.wakers.remove(&this.id);
                    state.take_wakers()
                } else {
                    Vec::new()
                };
                drop(state);
                for waker in missed {
                    waker.wake();
                }
                Poll::Pending
            }
            Ok(Poll::Ready(Some(Ok((chunk, copy, weight))))) => {
                state.source = Source::Idle(upstream);
                // A stream that answered registered no waker: the next reader to need a
                // chunk polls it again at once.
                state.woken = true;
                StreamCounters::bump(&shared.counters.chunks);
                this.cursor += 1;
                // Every other reader at the tail now waits on this chunk; this one has it.
                let others = state.at_tail - 1;
                state.at_tail = 1;
                let release = if others > 0 || state.joinable || !state.slots.is_empty() {
                    state.slots.push_back(Slot {
                        chunk: copy,
                        weight,
                        waiting: others,
                    });
                    state.bytes += weight;
                    shared
                        .counters
                        .bytes_buffered
                        .fetch_add(weight as u64, Relaxed);
                    this.bound(&mut state)
                } else {
                    // Nobody else will read it, nobody can join, nobody is behind: not
                    // buffered at all.
                    state.base += 1;
                    None
                };
                state.wakers.remove(&this.id);
                let wakers = state.take_wakers();
                drop(state);
                if let Some(release) = release {
                    release();
                }
                for waker in wakers {
                    waker.wake();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Ok(Poll::Ready(Some(Err(error)))) => {
                StreamCounters::bump(&shared.counters.failed);
                tracing::debug!(target: "backstop_dedup", chunks = this.cursor, "shared upstream failed mid-stream");
                let error = Arc::new(error);
                state.source = Source::Idle(upstream);
                let mut finished = state.finish(End::Failed(Arc::clone(&error)));
                if let Some(after) = this.leave(&mut state) {
                    finished.wakers.extend(after.wakers);
                }
                let others = state.readers > 0;
                if !others {
                    // Nobody else will read the end: give this reader the error itself.
                    state.end = Some(End::Finished);
                }
                drop(state);
                finished.run();
                Poll::Ready(Self::end_item(End::Failed(error), others))
            }
            Ok(Poll::Ready(None)) => {
                state.source = Source::Idle(upstream);
                let finished = state.finish(End::Finished);
                let after = this.leave(&mut state);
                drop(state);
                finished.run();
                if let Some(after) = after {
                    after.run();
                }
                Poll::Ready(None)
            }
            Err(panicked) => {
                StreamCounters::bump(&shared.counters.panicked);
                tracing::warn!(target: "backstop_dedup", %panicked, "shared upstream panicked");
                state.source = Source::Idle(upstream);
                let finished = state.finish(End::Panicked(panicked.clone()));
                let after = this.leave(&mut state);
                drop(state);
                finished.run();
                if let Some(after) = after {
                    after.run();
                }
                Poll::Ready(Some(Err(E::panicked(panicked))))
            }
        }
    }
}

impl<T, E> SharedStream<T, E> {
    /// Applies the buffer bound after a chunk was added; returns the key's release when
    /// the stream stops taking joiners.
    fn bound(&self, state: &mut State<T, E>) -> Option<Release> {
        let shared = &self.flight.shared;
        let max = shared.config.max_buffered_bytes;
        let mut release = None;
        if state.bytes > max && state.joinable {
            StreamCounters::bump(&shared.counters.overflowed);
            tracing::debug!(target: "backstop_dedup", bytes = state.bytes, max, "shared stream buffer reached its bound; closed to new joiners");
            release = state.close_to_joiners();
        }
        state.trim(shared);
        if shared.config.lag == LagPolicy::Fail {
            // Keep the newest chunk whatever its size: readers at the tail need it.
            while state.bytes > max && state.slots.len() > 1 {
                state.pop_front(shared);
            }
        }
        release
    }
}

impl<T, E> Drop for SharedStream<T, E> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let flight = Arc::clone(&self.flight);
        let mut state = flight.state.lock();
        let after = self.leave(&mut state);
        drop(state);
        if let Some(after) = after {
            after.run();
        }
    }
}
