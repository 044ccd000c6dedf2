//! Always-on per-shard counters and their serializable snapshot.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

use serde::Serialize;

use super::listener::RemovalCause;
use super::shard::Inserted;

/// Miss counters striped by thread. Hits are counted by the shard lock, in the atomic
/// operation that releases a reader (see `lock.rs`); a miss has no such operation to
/// ride on, and a shared per-shard counter would bounce its cache line between the
/// readers of a hot shard. `stats()` sums the stripes.
///
/// Each thread has a process-wide index. The first threads, one per `owned` stripe,
/// each own a stripe and count with a plain load and store: being its only writer,
/// they cannot lose a count, and they skip the locked read-modify-write that was a
/// fifth of a lookup's cost. Later threads share the `shared` stripes and count with
/// `fetch_add`. Either way the counts are exact.
#[derive(Debug)]
pub(crate) struct MissCounters {
    /// Stripe `i` belongs to the thread with index `i`. Kept apart from `shared` so that
    /// an owner finds its stripe with one bounds check, which a thread without an index
    /// yet (`usize::MAX`) fails too.
    owned: Box<[Stripe]>,
    /// Shared by the threads past `owned.len()`, by index modulo their number.
    shared: Box<[Stripe]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    misses: AtomicU64,
}

thread_local! {
    /// The thread's process-wide index, `usize::MAX` until its first miss. A
    /// const-initialized `Cell` without a destructor: reading it is a plain load from
    /// thread-local storage, with no lazy-initialization check per hit.
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Gives the index back when the thread exits (see [`Lease`]).
    static LEASE: Lease = const { Lease };
}

/// Indices given back by exited threads, handed out again before new ones.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The next index never handed out.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A thread's hold on its index. Without it a process that keeps starting threads (a
/// blocking pool that retires idle threads, criterion's bench threads) soon ran out
/// of owned stripes, and every lookup of every later thread took the cold path and a
/// locked increment: the single-threaded hit bench measured 1.35 times quick_cache's
/// time where a long-lived thread measured 1.1.
///
/// Dropped at thread exit, after the thread's last lookup: the lock on [`FREE`] orders
/// that lookup's counts before the next owner's.
struct Lease;

impl Drop for Lease {
    fn drop(&mut self) {
        let index = INDEX.replace(usize::MAX);
        if index != usize::MAX {
            FREE.lock().push(index);
        }
    }
}

/// The calling thread's index, leasing one on its first miss. A miss from a
/// thread-local destructor after the lease was dropped gets an index of no stripe's
/// own (its counts go to a shared stripe), and none is leased.
#[cold]
fn lease_index() -> usize {
    if LEASE.try_with(|_| ()).is_err() {
        return usize::MAX;
    }
    let index = FREE
        .lock()
        .pop()
        .unwrap_or_else(|| NEXT.fetch_add(1, Relaxed));
    INDEX.set(index);
    index
}

impl MissCounters {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let owned = (cores * 2).next_power_of_two().clamp(4, 64);
        let stripes = |n| (0..n).map(|_| Stripe::default()).collect();
        Self {
            owned: stripes(owned),
            shared: stripes(owned),
        }
    }

    #[inline]
    pub(crate) fn miss(&self) {
        if let Some(stripe) = self.owned.get(INDEX.get()) {
            let c = &stripe.misses;
            c.store(c.load(Relaxed) + 1, Relaxed);
        } else {
            self.miss_shared();
        }
    }

    /// A thread's first miss, and every miss of a thread without a stripe of its own.
    #[cold]
    #[inline(never)]
    fn miss_shared(&self) {
        let mut i = INDEX.get();
        if i == usize::MAX {
            i = lease_index();
        }
        if let Some(stripe) = self.owned.get(i) {
            let c = &stripe.misses;
            c.store(c.load(Relaxed) + 1, Relaxed);
        } else {
            self.shared[i & (self.shared.len() - 1)]
                .misses
                .fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn add_to(&self, s: &mut CacheStats) {
        for stripe in self.owned.iter().chain(self.shared.iter()) {
            s.misses += stripe.misses.load(Relaxed);
        }
    }
}

/// Per-shard write-side counters. They live in the shard's locked state and are counted
/// by the writer that holds its write lock, with plain adds: a locked increment per
/// insert and per removal was a tenth of an insert's cost.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Hits folded out of the shard lock's word (see `lock.rs`).
    hits: u64,
    insertions: u64,
    updates: u64,
    rejected: u64,
    size: u64,
    expired: u64,
    explicit: u64,
    replaced: u64,
}

impl Counters {
    pub(crate) fn inserted(&mut self, outcome: Inserted) {
        match outcome {
            Inserted::New => self.insertions += 1,
            Inserted::Replaced => self.updates += 1,
            Inserted::Rejected => self.rejected += 1,
        }
    }

    pub(crate) fn removed(&mut self, cause: RemovalCause) {
        match cause {
            RemovalCause::Size => self.size += 1,
            RemovalCause::Expired => self.expired += 1,
            RemovalCause::Explicit => self.explicit += 1,
            RemovalCause::Replaced => self.replaced += 1,
        }
    }

    /// Takes in `n` hits folded out of the shard lock's word.
    pub(crate) fn fold_hits(&mut self, n: u64) {
        self.hits += n;
    }

    pub(crate) fn add_to(&self, s: &mut CacheStats) {
        s.hits += self.hits;
        s.insertions += self.insertions;
        s.updates += self.updates;
        s.rejected_oversize += self.rejected;
        s.removals.size += self.size;
        s.removals.expired += self.expired;
        s.removals.explicit += self.explicit;
        s.removals.replaced += self.replaced;
    }
}

/// Removals by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Removals {
    /// Evicted for capacity, including refused oversize entries.
    pub size: u64,
    /// Expired (time to live or time to idle).
    pub expired: u64,
    /// Removed explicitly.
    pub explicit: u64,
    /// Overwritten by a newer value.
    pub replaced: u64,
}

/// A point-in-time view of a cache's counters and occupancy.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that returned a value.
    pub hits: u64,
    /// Lookups that found nothing (or only an expired entry).
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 before any lookup.
    pub hit_ratio: f64,
    /// Inserts of keys that were absent.
    pub insertions: u64,
    /// Inserts that replaced a present value.
    pub updates: u64,
    /// Entries refused because their weight exceeds one shard's share of capacity.
    pub rejected_oversize: u64,
    /// Panics of the weigher, expiry hook or eviction listener, each contained (a
    /// panicking weigher refuses its entry; a panicking hook leaves the cache-wide TTL).
    pub panicked: u64,
    /// Removals by cause.
    pub removals: Removals,
    /// Entries held (expired ones count until reclaimed).
    pub entries: u64,
    /// Total weight held.
    pub weighted_size: u64,
    /// Configured capacity (entries, or weight with a weigher).
    pub max_capacity: u64,
}

impl CacheStats {
    pub(crate) fn finish(mut self) -> Self {
        let lookups = self.hits + self.misses;
        self.hit_ratio = if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_miss_counts_are_exact_across_threads() {
        let c = MissCounters::new();
        std::thread::scope(|s| {
            for _ in 0..(c.owned.len() + c.shared.len() + 3) {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        c.miss();
                    }
                });
            }
        });
        let mut stats = CacheStats::default();
        c.add_to(&mut stats);
        let threads = (c.owned.len() + c.shared.len() + 3) as u64;
        assert_eq!(stats.misses, 1_000 * threads);
    }

    #[test]
    fn exited_threads_give_their_stripe_to_later_ones() {
        let c = MissCounters::new();
        let threads = 200;
        let indices: Vec<usize> = (0..threads)
            .map(|_| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        c.miss();
                        INDEX.get()
                    })
                    .join()
                    .expect("no panic")
                })
            })
            .collect();
        // Without the lease every thread took a new index; with it they reuse the few
        // that this process's concurrent test threads hold.
        let highest = indices.iter().max().copied().unwrap_or(0);
        assert!(highest < threads / 2, "highest index {highest}");
        let mut stats = CacheStats::default();
        c.add_to(&mut stats);
        assert_eq!(stats.misses, threads as u64);
    }
}
