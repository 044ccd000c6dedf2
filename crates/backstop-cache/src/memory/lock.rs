//! The shard lock: a reader-writer lock whose read side is one `fetch_add` to take and
//! one `fetch_sub` to release.
//!
//! A hit is mostly its lock. `parking_lot::RwLock` takes a read lock with a load and a
//! compare-and-swap and releases it with a `fetch_sub`: 1.7 ns more of a 17.8 ns hit
//! than this lock (one thread, `cache_get_hit`, the minimum of alternating pinned runs),
//! and 2.6 ns more of 28.5 with two threads, where the load fetches the line shared and
//! the swap must then fetch it again to own it.
//!
//! Writers are preferred: a writer that finds the lock taken raises `WAITING`, which
//! turns new readers away, and takes the lock once the readers inside have left, so a
//! stream of readers cannot hold inserts off. A reader that has waited through a few
//! yields stops honouring `WAITING` and enters whenever no writer is inside, so a
//! stream of writers cannot hold reads off either. Writers that find the lock taken
//! queue on a parking mutex, so that one of them at a time waits on the state word.
//! The waits on the word spin briefly and then yield to the scheduler rather than
//! park: the sections are tens of nanoseconds (an insert's eviction included), and a
//! yielding waiter lets a preempted holder run. Past a hundred yields a waiter sleeps
//! between looks (see `Backoff`), for the rare long section.
//!
//! The unsafe code is the `RawRwLock` implementation `lock_api` asks for: its contract
//! is that an exclusive holder excludes every other holder, which the state word below
//! ensures (see `lock_is_exclusive_under_contention` in the tests).
#![allow(unsafe_code)]

use std::sync::atomic::{
    AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

use parking_lot::{Mutex, lock_api};

/// A writer holds the lock.
const WRITER: usize = 1;
/// A writer waits for the readers inside to leave; new readers stay out.
const WAITING: usize = 2;
/// One reader inside (or one turning back).
const READER: usize = 4;

/// The lock guarding one shard.
pub(crate) type ShardLock<T> = lock_api::RwLock<RawShardLock, T>;

/// The state word of a [`ShardLock`].
pub(crate) struct RawShardLock {
    state: AtomicUsize,
    /// The turn of the writers that found the lock taken.
    writers: Mutex<()>,
}

// SAFETY: `WRITER` is set only by a swap from a state with neither readers nor a
// writer, and a reader enters only if its own `fetch_add` saw neither `WRITER` nor
// `WAITING`; the two are ordered on the one word, so a writer and a reader (or two
// writers) are never inside together. Acquire on entry and release on exit order the
// guarded data.
unsafe impl lock_api::RawRwLock for RawShardLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        state: AtomicUsize::new(0),
        writers: Mutex::new(()),
    };

    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock_shared(&self) {
        if !self.try_lock_shared() {
            self.lock_shared_slow();
        }
    }

    #[inline]
    fn try_lock_shared(&self) -> bool {
        self.try_enter(WRITER | WAITING)
    }

    #[inline]
    unsafe fn unlock_shared(&self) {
        self.state.fetch_sub(READER, Release);
    }

    #[inline]
    fn lock_exclusive(&self) {
        if !self.try_lock_exclusive() {
            self.lock_exclusive_slow();
        }
    }

    #[inline]
    fn try_lock_exclusive(&self) -> bool {
        self.state
            .compare_exchange(0, WRITER, Acquire, Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        // A subtraction, not a store of zero: readers turning back may still have
        // their unit in the word.
        self.state.fetch_sub(WRITER, Release);
    }
}

impl RawShardLock {
    /// Enters as a reader unless the word has one of the `barring` bits.
    #[inline]
    fn try_enter(&self, barring: usize) -> bool {
        let before = self.state.fetch_add(READER, Acquire);
        if before & barring == 0 {
            return true;
        }
        self.state.fetch_sub(READER, Relaxed);
        false
    }

    #[cold]
    #[inline(never)]
    fn lock_shared_slow(&self) {
        let mut backoff = Backoff::default();
        loop {
            // Entering past `WAITING` is always safe (a writer takes the lock only
            // once no reader is inside); it only gives up the writer's preference.
            let barring = if backoff.yielded() {
                WRITER
            } else {
                WRITER | WAITING
            };
            if self.state.load(Relaxed) & barring == 0 && self.try_enter(barring) {
                return;
            }
            backoff.snooze();
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_exclusive_slow(&self) {
        // One writer at a time waits on the word; the others park here. Spinning and
        // yielding all of them lost to parking_lot by 40 % with 16 threads updating on
        // two cores.
        let _turn = self.writers.lock();
        // Only the turn's holder raises `WAITING`, and it clears it on entering.
        self.state.fetch_or(WAITING, Relaxed);
        // Wait for the holder and the readers inside to leave.
        let mut backoff = Backoff::default();
        while self
            .state
            .compare_exchange_weak(WAITING, WRITER, Acquire, Relaxed)
            .is_err()
        {
            backoff.snooze();
        }
    }
}

/// Spins a few times, doubling, then yields to the scheduler, and past a hundred
/// yields sleeps between looks.
///
/// The sleep is for the rare long section: a user closure run under the write lock
/// (`compute`, a weigher, the predicate of `invalidate_if`). Yielding throughout, its
/// waiters would each keep a core busy for as long as it runs; a parking lock would
/// sleep them. A hundred yields take some tens of microseconds, so the sleep only ever
/// adds its 100 µs to a wait already that long.
#[derive(Default)]
struct Backoff {
    step: u32,
}

impl Backoff {
    /// Spins up to 2^`SPIN_STEPS` hints in all before the first yield.
    const SPIN_STEPS: u32 = 6;
    /// Yields after which a waiting reader stops deferring to waiting writers.
    const PATIENT_YIELDS: u32 = 8;
    /// Yields before the waits turn to sleeps.
    const YIELDS: u32 = 100;
    /// The sleep between looks at the word once the yields are spent.
    const NAP: std::time::Duration = std::time::Duration::from_micros(100);

    fn snooze(&mut self) {
        if self.step <= Self::SPIN_STEPS {
            for _ in 0..1u32 << self.step {
                std::hint::spin_loop();
            }
        } else if self.step <= Self::SPIN_STEPS + Self::YIELDS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Self::NAP);
        }
        self.step = self.step.saturating_add(1);
    }

    fn yielded(&self) -> bool {
        self.step > Self::SPIN_STEPS + Self::PATIENT_YIELDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_long_wait_turns_from_yields_to_sleeps() {
        let mut backoff = Backoff::default();
        for _ in 0..=Backoff::SPIN_STEPS + Backoff::YIELDS {
            backoff.snooze();
        }
        let start = std::time::Instant::now();
        backoff.snooze();
        assert!(start.elapsed() >= Backoff::NAP);
    }

    #[test]
    fn readers_share_and_writers_exclude() {
        let lock = ShardLock::new(0u64);
        let a = lock.read();
        let b = lock.read();
        assert!(lock.try_write().is_none());
        drop((a, b));
        let mut w = lock.write();
        *w += 1;
        assert!(lock.try_read().is_none());
        assert!(lock.try_write().is_none());
        drop(w);
        assert_eq!(*lock.read(), 1);
    }

    #[test]
    fn a_reader_that_waited_long_enough_enters_past_a_waiting_writer() {
        // A reader inside, a writer waiting for it, and the same thread reading again:
        // deferring to the writer for ever would deadlock (the writer waits on the
        // first read, the second read on the writer). A patient reader gets in. Run
        // on a thread of its own, so that a failure is reported, not hung on.
        let lock = std::sync::Arc::new(ShardLock::new(0u64));
        let (done, finished) = std::sync::mpsc::channel();
        let shared = std::sync::Arc::clone(&lock);
        std::thread::spawn(move || {
            let first = shared.read();
            let writer = {
                let lock = std::sync::Arc::clone(&shared);
                std::thread::spawn(move || *lock.write() += 1)
            };
            // The fast path turns readers away once the writer has raised `WAITING`.
            while let Some(probe) = shared.try_read() {
                drop(probe);
                std::thread::yield_now();
            }
            let second = shared.read();
            drop((first, second));
            let _ = writer.join();
            let _ = done.send(());
        });
        let finished = finished.recv_timeout(std::time::Duration::from_secs(30));
        assert!(
            finished.is_ok(),
            "the second read never got past the writer"
        );
        assert_eq!(*lock.read(), 1);
    }

    #[test]
    fn lock_is_exclusive_under_contention() {
        // Writers keep two halves equal only while they hold the lock; a reader that
        // ever sees them apart, or a lost increment, means two were inside at once.
        let lock = ShardLock::new((0u64, 0u64));
        let torn = AtomicBool::new(false);
        let (threads, rounds) = (6, 20_000u64);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (lock, torn) = (&lock, &torn);
                s.spawn(move || {
                    for i in 0..rounds {
                        if (i + t) % 4 == 0 {
                            let mut w = lock.write();
                            w.0 += 1;
                            std::hint::black_box(&mut *w);
                            w.1 += 1;
                        } else {
                            let r = lock.read();
                            if r.0 != r.1 {
                                torn.store(true, Relaxed);
                            }
                        }
                    }
                });
            }
        });
        assert!(!torn.load(Relaxed));
        let writes = (0..threads)
            .map(|t| (0..rounds).filter(|i| (i + t) % 4 == 0).count() as u64)
            .sum::<u64>();
        assert_eq!(*lock.read(), (writes, writes));
    }
}
