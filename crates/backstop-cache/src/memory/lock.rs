//! The shard lock: a reader-writer lock whose read side is one `fetch_add` to take and
//! one to release, and whose release can count a hit on the way.
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
//! The hit count sits in the state word above the lock's bits: a lookup that hits
//! releases its read lock with one `fetch_add` that both takes the reader off and adds
//! the hit, so counting costs a hit nothing (a per-thread stripe increment had been
//! 1.2 ns of a 17 ns hit). The shard folds the count into its own counters under the
//! write lock, where no reader can add to it, long before its 38 bits could wrap.
//!
//! The unsafe code is the `RawRwLock` implementation `lock_api` asks for: its contract
//! is that an exclusive holder excludes every other holder, which the state word below
//! ensures (see `lock_is_exclusive_under_contention` in the tests).
#![allow(unsafe_code)]

use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

use parking_lot::{Mutex, lock_api};

/// A writer holds the lock.
const WRITER: u64 = 1;
/// A writer waits for the readers inside to leave; new readers stay out.
const WAITING: u64 = 2;
/// One reader inside (or one turning back). Readers count in bits 2 to 25: sixteen
/// million at once, more threads than a process has.
const READER: u64 = 4;
/// Where the hit count starts: the bits above the lock's.
const HIT_SHIFT: u32 = 26;
/// One hit, counted by the releasing reader.
const HIT: u64 = 1 << HIT_SHIFT;
/// The lock's bits: the flags and the reader count.
const LOCK: u64 = HIT - 1;
/// Hits after which the count is folded out of the word: half its 38 bits, so that it
/// never wraps while a fold waits for the write lock.
const FOLD_AT: u64 = 1 << 36;

/// The lock guarding one shard.
pub(crate) type ShardLock<T> = lock_api::RwLock<RawShardLock, T>;

/// The state word of a [`ShardLock`]: its flags, its reader count and, above them, the
/// hits counted since the last fold.
pub(crate) struct RawShardLock {
    state: AtomicU64,
    /// The turn of the writers that found the lock taken.
    writers: Mutex<()>,
}

// SAFETY: `WRITER` is set only by a swap from a state with neither readers nor a
// writer, and a reader enters only if its own `fetch_add` saw neither `WRITER` nor
// `WAITING`; the two are ordered on the one word, so a writer and a reader (or two
// writers) are never inside together. Acquire on entry and release on exit order the
// guarded data. The hit count above the lock's bits takes no part in this: every
// decision masks it off, and it can only wrap out of the word's top.
unsafe impl lock_api::RawRwLock for RawShardLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        state: AtomicU64::new(0),
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
        // The hit count may move under the swap; only the lock's bits decide.
        let mut state = self.state.load(Relaxed);
        while state & LOCK == 0 {
            match self
                .state
                .compare_exchange_weak(state, state | WRITER, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
        false
    }

    #[inline]
    unsafe fn unlock_exclusive(&self) {
        // A subtraction, not a store: readers turning back may still have their unit
        // in the word, and the hit count above the lock's bits stays.
        self.state.fetch_sub(WRITER, Release);
    }
}

impl RawShardLock {
    /// Releases a read lock and counts a hit, in the one `fetch_add`; `true` when the
    /// count is due to be folded out of the word ([`take_hits`]).
    ///
    /// # Safety
    ///
    /// The caller holds a read lock, which this releases.
    #[inline]
    unsafe fn unlock_shared_hit(&self) -> bool {
        // Adds a hit and takes a reader off: the reader count is at least one, so the
        // subtraction never borrows from the hits.
        let before = self.state.fetch_add(HIT.wrapping_sub(READER), Release);
        before >> HIT_SHIFT >= FOLD_AT
    }

    /// Enters as a reader unless the word has one of the `barring` bits.
    #[inline]
    fn try_enter(&self, barring: u64) -> bool {
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
        loop {
            let state = self.state.load(Relaxed);
            if state & LOCK == WAITING
                && self
                    .state
                    .compare_exchange_weak(state, state ^ WAITING | WRITER, Acquire, Relaxed)
                    .is_ok()
            {
                return;
            }
            // A failed swap with the lock's bits still free was a hit counted
            // meanwhile: look again at once.
            if self.state.load(Relaxed) & LOCK != WAITING {
                backoff.snooze();
            }
        }
    }
}

/// Releases `guard`'s read lock and counts a hit, in the one atomic operation that
/// releasing takes anyway; `true` when the shard should fold its count out of the lock
/// ([`take_hits`]).
#[inline]
pub(crate) fn release_counting_hit<T>(
    guard: lock_api::RwLockReadGuard<'_, RawShardLock, T>,
) -> bool {
    let lock = lock_api::RwLockReadGuard::rwlock(&guard);
    std::mem::forget(guard);
    // SAFETY: releases the read lock `guard` held, once, in place of its drop; `raw`
    // is unsafe only because its caller could release a lock it does not hold.
    unsafe { lock.raw().unlock_shared_hit() }
}

/// The hits counted in the lock's word since its last fold. Never decreases while the
/// caller holds a read lock (a fold needs the write lock).
pub(crate) fn hits<T>(lock: &ShardLock<T>) -> u64 {
    // SAFETY: only reads the state word.
    unsafe { lock.raw() }.state.load(Relaxed) >> HIT_SHIFT
}

/// Moves the hits counted in the lock's word out of it. Under the write lock no reader
/// is inside to count one meanwhile, so nothing is lost or counted twice.
pub(crate) fn take_hits<T>(guard: &lock_api::RwLockWriteGuard<'_, RawShardLock, T>) -> u64 {
    let lock = lock_api::RwLockWriteGuard::rwlock(guard);
    // SAFETY: only reads and adjusts the hit bits, which the lock's protocol ignores.
    let state = &unsafe { lock.raw() }.state;
    let hits = state.load(Relaxed) >> HIT_SHIFT;
    state.fetch_sub(hits << HIT_SHIFT, Relaxed);
    hits
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
    fn releases_count_hits_that_a_writer_takes_out() {
        let lock = ShardLock::new(0u64);
        for _ in 0..5 {
            assert!(!release_counting_hit(lock.read()));
        }
        drop(lock.read());
        assert_eq!(hits(&lock), 5);
        // A count in the word must not keep a writer off the fast path.
        let w = lock.try_write().expect("no one holds the lock");
        assert_eq!(take_hits(&w), 5);
        drop(w);
        assert_eq!(hits(&lock), 0);
        assert!(lock.try_read().is_some());
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
                            release_counting_hit(r);
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
        assert_eq!(hits(&lock), threads * rounds - writes);
    }
}
