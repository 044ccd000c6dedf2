//! One shard: a hash table from key to slot, the S3-FIFO queues and the timer queue, all
//! behind one reader-writer lock (`lock.rs`). Reads take the shared lock and touch only
//! atomics in the slot.
//!
//! The table is a `hashbrown::HashTable` of slot indices probed with the hash the cache
//! already computed to pick the shard, so an operation hashes its key once, and the key
//! is stored once (in its slot) instead of again as a map key.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::adapt::{ShareView, Tuning, WINDOW_SHARE};
use super::expiry::{NEVER, TimerQueue};
use super::ghost::Ghost;
use super::listener::RemovalCause;
use super::lock::{self, ShardLock};
use super::policy::Access;
use super::sketch::Sketch;
use super::stats::{CacheStats, Counters};

/// A removed entry waiting to be reported once the shard lock is released.
pub(crate) type Removed<K, V> = (K, V, RemovalCause);

/// The entries one operation removed, reported once the shard lock is released. Most
/// operations remove at most one, held inline so that an evicting insert does not
/// allocate.
pub(crate) struct RemovedList<K, V> {
    first: Option<Removed<K, V>>,
    rest: Vec<Removed<K, V>>,
}

impl<K, V> Default for RemovedList<K, V> {
    fn default() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<K, V> RemovedList<K, V> {
    pub(crate) fn push(&mut self, removed: Removed<K, V>) {
        if self.first.is_none() {
            self.first = Some(removed);
        } else {
            self.rest.push(removed);
        }
    }
}

impl<K, V> IntoIterator for RemovedList<K, V> {
    type Item = Removed<K, V>;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<Removed<K, V>>, std::vec::IntoIter<Removed<K, V>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// A call that computes a value once per key while concurrent callers wait for it.
pub(crate) type Pending<V> = std::sync::Arc<Mutex<Option<V>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

struct Slot<K, V> {
    key: K,
    value: V,
    /// The key's hash, kept so eviction and table growth never hash again.
    hash: u64,
    weight: u32,
    queue: Queue,
    /// [`Access`] bits, written by readers under the shared lock.
    freq: AtomicU8,
}

/// A slot's time fields, kept in a vector beside the slots that a shard allocates only
/// once it has an entry that can expire: a cache without TTL, TTI or per-entry expiry
/// then spends 24 bytes less per slot (32 instead of 56 for `u64` keys and values).
struct Times {
    /// Absolute time-to-live deadline in cache nanoseconds, `NEVER` if none.
    expires_at: u64,
    /// Last read or write, for time to idle.
    last_access: AtomicU64,
    /// Deadline under which the slot's live timer is queued, `NEVER` if none.
    queued_deadline: u64,
}

impl Times {
    fn new(expires_at: u64, now: u64) -> Self {
        Self {
            expires_at,
            last_access: AtomicU64::new(now),
            queued_deadline: NEVER,
        }
    }

    fn deadline(&self, tti: u64) -> u64 {
        if tti == NEVER {
            self.expires_at
        } else {
            self.expires_at
                .min(self.last_access.load(Relaxed).saturating_add(tti))
        }
    }
}

/// How much more often than main's victim a key back from the ghost queue must have
/// been asked for to displace it. A margin of one keeps sketch noise (and a victim's
/// hits not yet folded) from swapping equally popular keys back and forth: on a loop
/// just over capacity it took the hit ratio from 0.88 to 0.90 without moving the Zipf
/// and shifting workloads.
const ADMISSION_MARGIN: u8 = 1;

/// Hits an entry needs while on probation to move to main when probation evicts it
/// (libCacheSim's S3-FIFO default). With one, every key hit once during its short stay
/// went to main unchecked, and on block-I/O traces, where a block is often read
/// again right away and then not for long, those filled main and pushed out entries
/// that would have hit. With two, such an entry goes to the ghost queue instead and
/// earns main if it comes back and passes the admission test. On the ARC paper's traces
/// it took P2 at 10,000 entries from 0.114 to 0.136 and P12 at 50,000 from 0.229 to
/// 0.250, and brought 1 shard within 0.7 points of 64 on P12 at 100,000 (from 1.4);
/// the seeded Zipf, scan, loop and shifting lines moved by at most 0.0001, their
/// probation being too short to see a second hit anyway.
const PROMOTION_HITS: u8 = 2;

/// How much of a step towards a longer probation a key back soon from probation moves
/// the share when it then loses the admission test. Such a key would have hit had
/// probation been longer, but it is worth less than what main would give up for it,
/// so its miss counts for less than one that wins. Counting it fully let those keys
/// (most ghost hits on the ARC paper's P2 trace at 10,000 entries) drive the share to
/// 0.1–0.36 where 0.01–0.02 is best, and left P2 at 50,000 with one shard 1.2 points
/// behind 64 (0.389 against 0.401); not counting it at all starved probation on P2 at
/// 50,000 and P12 at 10,000 (a point lost on each).
const REJECTED_MISS_WEIGHT: f64 = 0.75;

/// Time parameters of one operation, in nanoseconds since the cache's epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) now: u64,
    pub(crate) tti: u64,
}

pub(crate) struct ShardInner<K, V> {
    map: HashTable<u32>,
    slots: Vec<Option<Slot<K, V>>>,
    /// Each slot's [`Times`], empty until the shard has an entry that can expire (or a
    /// time to idle), then exactly as long as `slots`.
    times: Vec<Times>,
    gens: Vec<u32>,
    free: Vec<u32>,
    small: VecDeque<(u32, u32)>,
    main: VecDeque<(u32, u32)>,
    small_weight: u64,
    main_weight: u64,
    ghost: Ghost,
    /// Hashes of the entries main evicted last (a window's worth), to tell when main
    /// was too short for a key.
    main_ghost: Ghost,
    sketch: Sketch,
    timers: TimerQueue,
    capacity: u64,
    /// The probationary queue's share, tuned for the whole cache.
    tuning: Arc<Tuning>,
    /// What the shard derives from the share, kept until it moves.
    share: ShareView,
    /// How many evictions after leaving its queue a returning key counts as that
    /// queue's miss (see `adapt.rs`).
    window: u64,
    tti: u64,
    /// Write-side statistics, counted under the write lock.
    counts: Counters,
}

/// The outcome of an insert, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    New,
    Replaced,
    Rejected,
}

// Aligned to two cache lines so that one shard's lock word never shares a line with a
// neighbour's counters (adjacent-line prefetching pairs lines).
#[repr(align(128))]
pub(crate) struct Shard<K, V> {
    pub(crate) inner: ShardLock<ShardInner<K, V>>,
    pub(crate) pending: Mutex<HashMap<K, Pending<V>>>,
    len: AtomicU64,
    weight: AtomicU64,
}

impl<K: Hash + Eq + Clone, V: Clone> Shard<K, V> {
    pub(crate) fn new(capacity: u64, tuning: Arc<Tuning>, ghost_ratio: f64, tti: u64) -> Self {
        Self {
            inner: ShardLock::new(ShardInner {
                map: HashTable::new(),
                slots: Vec::new(),
                times: Vec::new(),
                gens: Vec::new(),
                free: Vec::new(),
                small: VecDeque::new(),
                main: VecDeque::new(),
                small_weight: 0,
                main_weight: 0,
                ghost: Ghost::default(),
                main_ghost: Ghost::default(),
                sketch: Sketch::new(16),
                timers: TimerQueue::default(),
                capacity,
                tuning,
                share: ShareView::new(capacity, ghost_ratio),
                window: ((capacity as f64 * WINDOW_SHARE) as u64).max(8),
                tti,
                counts: Counters::default(),
            }),
            pending: Mutex::new(HashMap::new()),
            len: AtomicU64::new(0),
            weight: AtomicU64::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.inner.read().capacity
    }

    pub(crate) fn len(&self) -> u64 {
        self.len.load(Relaxed)
    }

    pub(crate) fn weighted_size(&self) -> u64 {
        self.weight.load(Relaxed)
    }

    /// Adds the shard's counters to `s`: the write side's, and the hits, part folded
    /// into them and part still in the lock's word (neither moves while the read lock
    /// is held, but for new hits).
    pub(crate) fn add_counts_to(&self, s: &mut CacheStats) {
        let inner = self.inner.read();
        inner.counts.add_to(s);
        s.hits += lock::hits(&self.inner);
    }

    /// Moves the hits counted in the lock's word into the shard's counters, before the
    /// word's count could wrap (about every 69 billion hits).
    #[cold]
    #[inline(never)]
    fn fold_hits(&self) {
        let mut inner = self.inner.write();
        let hits = lock::take_hits(&inner);
        inner.counts.fold_hits(hits);
    }

    fn publish(&self, inner: &ShardInner<K, V>) {
        self.len.store(inner.map.len() as u64, Relaxed);
        self.weight
            .store(inner.small_weight + inner.main_weight, Relaxed);
    }

    /// The hit path: shared lock, then relaxed atomics only. Inlined into
    /// `MemoryCache::get`, which the compiler otherwise declined, paying a call and the
    /// register saves around it on every lookup.
    ///
    /// The time is asked of `now` only for a shard that keeps times: a cache without
    /// expiry then neither reads its clock flag nor carries the time through the probe
    /// (five instructions of a hit's 122, callgrind).
    ///
    /// A hit is counted, when `count` is set, in the release of the read lock (see
    /// `lock.rs`).
    #[inline]
    pub(crate) fn get<Q>(
        &self,
        key: &Q,
        hash: u64,
        count: bool,
        now: impl FnOnce() -> Now,
    ) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.inner.read();
        let idx = inner.find(key, hash)? as usize;
        let slot = inner.slots.get(idx)?.as_ref()?;
        if let Some(times) = inner.times.get(idx) {
            let t = now();
            if times.deadline(t.tti) <= t.now {
                return None;
            }
            if t.tti != NEVER {
                times.last_access.fetch_max(t.now, Relaxed);
            }
        }
        let access = Access(slot.freq.load(Relaxed));
        if !access.saturated() {
            // A lost increment under a race only costs policy precision, never safety;
            // once both counts saturate a hot entry stops writing its cache line.
            slot.freq.store(access.hit().0, Relaxed);
        }
        let value = slot.value.clone();
        if count && lock::release_counting_hit(inner) {
            self.fold_hits();
        }
        Some(value)
    }

    pub(crate) fn contains<Q>(&self, key: &Q, hash: u64, t: Now) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.inner.read();
        inner
            .find(key, hash)
            .is_some_and(|idx| inner.deadline(idx, t.tti) > t.now)
    }

    /// Inserts or replaces; `weight` above the shard capacity is refused and reported.
    // The arguments are the precomputed parts of one entry; bundling them would only add
    // a struct built and destructured on the hot path.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        key: K,
        value: V,
        weight: u32,
        hash: u64,
        expires_at: u64,
        t: Now,
        out: &mut RemovedList<K, V>,
    ) -> Inserted {
        let mut inner = self.inner.write();
        inner.expire(t, out);
        let outcome = inner.insert(key, value, weight, hash, expires_at, t, out);
        inner.counts.inserted(outcome);
        self.publish(&inner);
        outcome
    }

    pub(crate) fn remove<Q>(
        &self,
        key: &Q,
        hash: u64,
        t: Now,
        out: &mut RemovedList<K, V>,
    ) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.inner.write();
        let idx = inner.find(key, hash)?;
        let expired = inner.deadline(idx, t.tti) <= t.now;
        let (k, v) = inner.take(idx, hash)?;
        let cause = if expired {
            RemovalCause::Expired
        } else {
            RemovalCause::Explicit
        };
        inner.counts.removed(cause);
        self.publish(&inner);
        drop(inner);
        if expired {
            out.push((k, v, cause));
            None
        } else {
            out.push((k, v.clone(), cause));
            Some(v)
        }
    }

    /// Runs `f` on the live value (if any) under the write lock and applies its decision.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compute<F>(
        &self,
        key: K,
        hash: u64,
        t: Now,
        expires_at: u64,
        weigh: &dyn Fn(&K, &V) -> Option<u32>,
        f: F,
        out: &mut RemovedList<K, V>,
    ) -> Option<V>
    where
        F: FnOnce(Option<&V>) -> super::cache::Compute<V>,
    {
        use super::cache::Compute;
        let mut inner = self.inner.write();
        inner.expire(t, out);
        if let Some(idx) = inner.find(&key, hash)
            && inner.deadline(idx, t.tti) <= t.now
            && let Some((k, v)) = inner.take(idx, hash)
        {
            inner.report(out, (k, v, RemovalCause::Expired));
        }
        let current = inner.slot_of(&key, hash).map(|s| &s.value);
        let (value, outcome) = match f(current) {
            Compute::Keep => (current.cloned(), None),
            Compute::Put(v) => match weigh(&key, &v) {
                Some(w) => {
                    let outcome = inner.insert(key.clone(), v, w, hash, expires_at, t, out);
                    let now_value = inner.slot_of(&key, hash).map(|s| s.value.clone());
                    (now_value, Some(outcome))
                }
                // The weigher panicked: the value is refused like an oversized one, and
                // the one it meant to replace goes too.
                None => {
                    if let Some(idx) = inner.find(&key, hash)
                        && let Some((k, old)) = inner.take(idx, hash)
                    {
                        inner.report(out, (k, old, RemovalCause::Replaced));
                    }
                    (None, Some(Inserted::Rejected))
                }
            },
            Compute::Remove => {
                if let Some(idx) = inner.find(&key, hash)
                    && let Some((k, v)) = inner.take(idx, hash)
                {
                    inner.report(out, (k, v, RemovalCause::Explicit));
                }
                (None, None)
            }
        };
        if let Some(outcome) = outcome {
            inner.counts.inserted(outcome);
        }
        self.publish(&inner);
        value
    }

    pub(crate) fn expire(&self, t: Now, out: &mut RemovedList<K, V>) {
        let mut inner = self.inner.write();
        inner.expire(t, out);
        self.publish(&inner);
    }

    /// Removes every entry for which `pred` holds (expired ones are reported as expired).
    pub(crate) fn retain_not(
        &self,
        t: Now,
        pred: &mut dyn FnMut(&K, &V) -> bool,
        out: &mut RemovedList<K, V>,
    ) {
        let mut inner = self.inner.write();
        inner.expire(t, out);
        let doomed: Vec<u32> = inner
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| pred(&s.key, &s.value))
                    .map(|_| i as u32)
            })
            .collect();
        for idx in doomed {
            if let Some((k, v)) = inner.take_unhashed(idx) {
                inner.report(out, (k, v, RemovalCause::Explicit));
            }
        }
        if inner.map.is_empty() {
            inner.reset();
        }
        self.publish(&inner);
    }

    pub(crate) fn snapshot(&self, t: Now, into: &mut Vec<(K, V)>) {
        let inner = self.inner.read();
        into.extend(
            inner
                .slots
                .iter()
                .enumerate()
                .filter(|&(i, _)| inner.deadline(i as u32, t.tti) > t.now)
                .filter_map(|(_, s)| s.as_ref())
                .map(|s| (s.key.clone(), s.value.clone())),
        );
    }
}

impl<K: Hash + Eq + Clone, V> ShardInner<K, V> {
    /// The slot index holding `key`, probing with its precomputed `hash`.
    fn find<Q>(&self, key: &Q, hash: u64) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slots = &self.slots;
        self.map
            .find(hash, |&i| {
                slots
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.key.borrow() == key)
            })
            .copied()
    }

    fn slot_of<Q>(&self, key: &Q, hash: u64) -> Option<&Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let idx = self.find(key, hash)?;
        self.slots.get(idx as usize)?.as_ref()
    }

    /// Hands a removed entry to the caller for the listener, counting it.
    fn report(&mut self, out: &mut RemovedList<K, V>, removed: Removed<K, V>) {
        self.counts.removed(removed.2);
        out.push(removed);
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot<K, V>> {
        self.slots.get_mut(idx as usize)?.as_mut()
    }

    /// The slot's deadline, `NEVER` while the shard keeps no times.
    fn deadline(&self, idx: u32, tti: u64) -> u64 {
        self.times
            .get(idx as usize)
            .map_or(NEVER, |times| times.deadline(tti))
    }

    /// Records the times of slot `idx`, allocating the times of every slot the first
    /// time an entry can expire.
    fn set_times(&mut self, idx: u32, expires_at: u64, t: Now) {
        if self.times.is_empty() {
            if expires_at == NEVER && t.tti == NEVER {
                return;
            }
            self.times
                .resize_with(self.slots.len(), || Times::new(NEVER, t.now));
        }
        if let Some(times) = self.times.get_mut(idx as usize) {
            *times = Times::new(expires_at, t.now);
        }
    }

    fn total(&self) -> u64 {
        self.small_weight + self.main_weight
    }

    fn small_target(&mut self) -> u64 {
        self.share.small_target(&self.tuning)
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        key: K,
        value: V,
        weight: u32,
        hash: u64,
        expires_at: u64,
        t: Now,
        out: &mut RemovedList<K, V>,
    ) -> Inserted {
        let existing = self.find(&key, hash);
        if u64::from(weight) > self.capacity {
            // Larger than the whole shard: storing it would flush everything else for an
            // entry that cannot stay. Drop any older value so it is never served stale.
            if let Some(idx) = existing
                && let Some((k, v)) = self.take(idx, hash)
            {
                self.report(out, (k, v, RemovalCause::Replaced));
            }
            self.report(out, (key, value, RemovalCause::Size));
            return Inserted::Rejected;
        }
        if let Some(idx) = existing {
            let Some(slot) = self.slot_mut(idx) else {
                return Inserted::Rejected;
            };
            let old = std::mem::replace(&mut slot.value, value);
            let old_weight = std::mem::replace(&mut slot.weight, weight);
            let queue = slot.queue;
            // The queued timer stays valid: `schedule` only queues an earlier deadline,
            // and a later one is picked up when the queued timer fires.
            let queued = self
                .times
                .get(idx as usize)
                .map_or(NEVER, |x| x.queued_deadline);
            self.set_times(idx, expires_at, t);
            if let Some(times) = self.times.get_mut(idx as usize) {
                times.queued_deadline = queued;
            }
            let delta = i128::from(weight) - i128::from(old_weight);
            let w = match queue {
                Queue::Small => &mut self.small_weight,
                Queue::Main => &mut self.main_weight,
            };
            *w = (i128::from(*w) + delta) as u64;
            self.schedule(idx, t.tti);
            self.report(out, (key, old, RemovalCause::Replaced));
            self.make_room(0, false, out);
            return Inserted::Replaced;
        }
        let (queue, rejected) = self.admit(hash, u64::from(weight));
        self.make_room(u64::from(weight), rejected, out);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                if !self.times.is_empty() {
                    self.times.push(Times::new(NEVER, t.now));
                }
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.gens[idx as usize];
        self.slots[idx as usize] = Some(Slot {
            key,
            value,
            hash,
            weight,
            queue,
            freq: AtomicU8::new(0),
        });
        self.set_times(idx, expires_at, t);
        match queue {
            Queue::Small => {
                self.small.push_back((idx, generation));
                self.small_weight += u64::from(weight);
            }
            Queue::Main => {
                self.main.push_back((idx, generation));
                self.main_weight += u64::from(weight);
            }
        }
        let slots = &self.slots;
        self.map.insert_unique(hash, idx, |&i| {
            slots
                .get(i as usize)
                .and_then(Option::as_ref)
                .map_or(0, |s| s.hash)
        });
        self.schedule(idx, t.tti);
        self.compact();
        Inserted::New
    }

    /// Queues a timer for the slot's deadline unless an earlier one is already queued;
    /// a later deadline is picked up when the earlier timer fires.
    fn schedule(&mut self, idx: u32, tti: u64) {
        // Checked first: a shard without expiry keeps no times, and every insert asks.
        let Some(times) = self.times.get_mut(idx as usize) else {
            return;
        };
        if self.slots.get(idx as usize).is_none_or(Option::is_none) {
            return;
        }
        let d = times.deadline(tti);
        if d < times.queued_deadline {
            times.queued_deadline = d;
            self.timers.push(d, idx, self.gens[idx as usize]);
        }
    }

    /// Reclaims entries whose deadline has passed, touching only due timers.
    fn expire(&mut self, t: Now, out: &mut RemovedList<K, V>) {
        while let Some((d, idx, generation)) = self.timers.pop_due(t.now) {
            if self.gens.get(idx as usize) != Some(&generation) {
                continue;
            }
            if self.slots.get(idx as usize).is_none_or(Option::is_none) {
                continue;
            }
            let Some(times) = self.times.get_mut(idx as usize) else {
                continue;
            };
            if times.queued_deadline != d {
                continue;
            }
            times.queued_deadline = NEVER;
            if times.deadline(t.tti) <= t.now {
                if let Some((k, v)) = self.take_unhashed(idx) {
                    self.report(out, (k, v, RemovalCause::Expired));
                }
            } else {
                self.schedule(idx, t.tti);
            }
        }
    }

    /// Evicts until `incoming` fits; `spare_main` takes the room from probation first
    /// (for a key that just lost the admission test to main's victim).
    fn make_room(&mut self, incoming: u64, spare_main: bool, out: &mut RemovedList<K, V>) {
        while self.total() + incoming > self.capacity {
            if !self.evict_one(spare_main, out) {
                break;
            }
        }
    }

    /// Picks the queue a new key enters. A key back from the ghost queue goes to the
    /// main queue, unless that would push out a main entry asked for at least as often
    /// (TinyLFU's admission test): then it starts over on probation, and the room it
    /// needs comes from probation (`true`). That keeps a working set slightly larger
    /// than the cache (a loop) from churning the main queue. A key back within the
    /// window counts as probation's miss, less so when it loses the test (see
    /// [`REJECTED_MISS_WEIGHT`]).
    ///
    /// The test runs whenever the shard is full, even while probation is over its share
    /// and this insert's room would come from there: main grows by the key either way,
    /// and gives the room back at the next insert. Skipping the test in that state made
    /// the hit ratio depend on the shard count. Probation sits one entry over its share
    /// between inserts, so of a burst of returning keys (a block-I/O trace's sequential
    /// run) only the first skipped the test in one shard, while spread over 64 shards
    /// most did: on the ARC paper's P2 trace at 100,000, 3% of returns skipped it with 1
    /// shard and 36% with 64, and the hit ratio differed by 0.9 points (0.548 against
    /// 0.557). Testing every return puts them within 0.4 points; the shorter sketch
    /// memory that goes with it (see `sketch.rs`) lets a new hot set in as soon as
    /// recovers most of what the skipped tests gave a shifting hot set.
    ///
    /// Main's victim is read at its head, where the last eviction from main left the
    /// hand (see [`main_head`](Self::main_head)); the test itself never moves it.
    fn admit(&mut self, hash: u64, weight: u64) -> (Queue, bool) {
        self.sketch.fit(self.map.len() as u64 + 1);
        self.sketch.add(hash, 1);
        let window = self.window;
        if self.main_ghost.remove(hash) {
            self.tuning.main_missed();
        }
        let recent = match self.ghost.take(hash) {
            None => return (Queue::Small, false),
            Some(ago) => ago < window,
        };
        if self.total() + weight <= self.capacity {
            if recent {
                self.tuning.probation_missed(1.0);
            }
            return (Queue::Main, false);
        }
        let victim = self
            .main_head()
            .and_then(|i| self.slots.get(i as usize)?.as_ref())
            .map(|s| {
                let pending = Access(s.freq.load(Relaxed)).unfolded();
                self.sketch.frequency(s.hash).saturating_add(pending)
            });
        let admitted = !matches!(
            victim,
            Some(v) if self.sketch.frequency(hash) <= v.saturating_add(ADMISSION_MARGIN)
        );
        if recent {
            self.tuning
                .probation_missed(if admitted { 1.0 } else { REJECTED_MISS_WEIGHT });
        }
        if admitted {
            (Queue::Main, false)
        } else {
            (Queue::Small, true)
        }
    }

    /// Advances the main queue's head past entries with recorded accesses (their second
    /// chance, folding the accesses into the sketch) and returns the entry it stops at.
    /// Ends within three laps: nothing can raise an access count under the write lock.
    ///
    /// The entries passed move to the back in one rotation when the hand stops, instead
    /// of a pop and a push each: on Zipf traffic the hand passes about ten hot entries
    /// for each one it stops at. A whole lap leaves the order as it was, so it needs no
    /// rotation at all.
    fn main_victim(&mut self) -> Option<u32> {
        let mut passed = 0;
        loop {
            let Some(&(idx, generation)) = self.main.get(passed) else {
                if passed == 0 {
                    return None;
                }
                passed = 0;
                continue;
            };
            let Some(slot) = self.queued_slot_mut(idx, generation) else {
                self.main.rotate_left(passed);
                self.main.pop_front();
                passed = 0;
                continue;
            };
            let access = Access(slot.freq.load(Relaxed));
            if access.chances() == 0 {
                self.main.rotate_left(passed);
                return Some(idx);
            }
            slot.freq.store(access.second_chance().0, Relaxed);
            let hash = slot.hash;
            self.sketch.add(hash, access.unfolded());
            passed += 1;
        }
    }

    /// The live slot a queue record names, `None` for a stale record (its slot emptied,
    /// or emptied and filled again since).
    fn queued_slot_mut(&mut self, idx: u32, generation: u32) -> Option<&mut Slot<K, V>> {
        if self.gens.get(idx as usize) != Some(&generation) {
            return None;
        }
        self.slot_mut(idx)
    }

    /// Main's head entry, dropping stale records before it: the victim the last
    /// eviction from main moved the hand to, which the admission test compares with.
    ///
    /// The test once moved the hand itself. Tests outnumber evictions from main (on
    /// `cache_mixed`, 25,000 tests to 1,600 evictions), and each passed about ten hot
    /// entries, reading their slots and folding their hits into the sketch: that was
    /// 3.4 ns of the bench's 23 per operation (quick_cache: 19), and comparing with an
    /// unmoved head instead cost 2 to 4 points on every Zipf row, its head being any
    /// entry, often a hot one. Moving the hand right after each eviction keeps a cold
    /// entry at the head at the eviction's pace. An entry asked for since it was
    /// placed there is compared with its new hits counted, as a victim still would
    /// be. The hit ratios stayed: the loop lost most, 0.904 to 0.901, and every row
    /// kept every shard count within half a point.
    fn main_head(&mut self) -> Option<u32> {
        while let Some(&(idx, generation)) = self.main.front() {
            if self.queued_slot_mut(idx, generation).is_some() {
                return Some(idx);
            }
            self.main.pop_front();
        }
        None
    }

    /// S3-FIFO eviction: probation first while it is over its share (entries asked for
    /// [`PROMOTION_HITS`] times there move to main, and so do the others while main is
    /// short of its share), else main with a second chance per recorded access.
    fn evict_one(&mut self, spare_main: bool, out: &mut RemovedList<K, V>) -> bool {
        let small_target = self.small_target();
        loop {
            let from_small = self.small_weight > small_target
                || (spare_main && self.small_weight > 0)
                || self.main.is_empty();
            if !from_small {
                // `None` means main held only stale records; the next lap uses small.
                if let Some(idx) = self.main_victim() {
                    self.main.pop_front();
                    let evicted = self.evict(idx, false, out);
                    // The next victim, for the admission tests until the next eviction.
                    self.main_victim();
                    return evicted;
                }
                continue;
            }
            let Some((idx, generation)) = self.small.pop_front() else {
                return false;
            };
            // Fields borrowed one by one: the slot stays borrowed while the weights
            // are read below.
            if self.gens[idx as usize] != generation {
                continue;
            }
            let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::as_mut) else {
                continue;
            };
            let access = Access(slot.freq.load(Relaxed));
            let (w, hash) = (u64::from(slot.weight), slot.hash);
            // Main short of its share takes the entry even unaccessed: otherwise a
            // workload without second accesses within probation (a loop longer than the
            // cache) keeps main empty and every entry passes through probation unused.
            // Filled this way, main holds a fixed part of the loop, the best any policy
            // can do, and the admission test keeps it from churning. Only while
            // probation stays over its share after the move, though: otherwise the next
            // victim would come from main, and every new key would push an old one out
            // of main, which is FIFO (a loop just over capacity then never hits).
            let main_short = self.main_weight + w + small_target <= self.capacity
                && self.small_weight - w > small_target;
            if access.chances() < PROMOTION_HITS && !main_short {
                return self.evict(idx, true, out);
            }
            slot.freq.store(0, Relaxed);
            slot.queue = Queue::Main;
            self.small_weight -= w;
            self.main_weight += w;
            self.sketch.add(hash, access.unfolded());
            self.main.push_back((idx, generation));
        }
    }

    /// Evicts the entry in slot `idx` for capacity; one leaving probation unused is
    /// remembered in the ghost queue.
    #[inline]
    fn evict(&mut self, idx: u32, from_small: bool, out: &mut RemovedList<K, V>) -> bool {
        let Some(hash) = self
            .slots
            .get(idx as usize)
            .and_then(Option::as_ref)
            .map(|s| s.hash)
        else {
            return false;
        };
        let Some((k, v)) = self.take(idx, hash) else {
            return false;
        };
        if from_small {
            let cap = self.share.ghost_len(&self.tuning, self.map.len());
            self.ghost.insert(hash, cap);
        } else {
            let window = usize::try_from(self.window).unwrap_or(usize::MAX);
            self.main_ghost.insert(hash, window);
        }
        self.report(out, (k, v, RemovalCause::Size));
        true
    }

    /// [`take`](Self::take) for paths that do not have the key's hash at hand.
    fn take_unhashed(&mut self, idx: u32) -> Option<(K, V)> {
        let hash = self.slots.get(idx as usize)?.as_ref()?.hash;
        self.take(idx, hash)
    }

    /// Empties the slot (whose key hashes to `hash`), leaving its queue and timer
    /// records to be skipped lazily.
    #[inline]
    fn take(&mut self, idx: u32, hash: u64) -> Option<(K, V)> {
        if let Ok(entry) = self.map.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        let slot = self.slots.get_mut(idx as usize)?.take()?;
        self.gens[idx as usize] = self.gens[idx as usize].wrapping_add(1);
        self.free.push(idx);
        match slot.queue {
            Queue::Small => self.small_weight -= u64::from(slot.weight),
            Queue::Main => self.main_weight -= u64::from(slot.weight),
        }
        Some((slot.key, slot.value))
    }

    /// Drops stale queue and timer records once they outnumber live entries, keeping
    /// memory proportional to the live set at amortized O(1) per operation.
    fn compact(&mut self) {
        let live = self.map.len();
        let gens = &self.gens;
        if self.small.len() + self.main.len() > 2 * live + 64 {
            self.small.retain(|(i, g)| gens[*i as usize] == *g);
            self.main.retain(|(i, g)| gens[*i as usize] == *g);
        }
        // Probation holds everything while the cache first fills, then hands most of it
        // to main; without this its buffer would stay the size of the cache beside
        // main's (8 bytes an entry for nothing).
        if self.small.capacity() > 4 * self.small.len() + 1024 {
            self.small.shrink_to(2 * self.small.len());
        }
        if self.timers.len() > 2 * live + 64 {
            self.timers.clear();
            for times in &mut self.times {
                times.queued_deadline = NEVER;
            }
            for idx in 0..self.slots.len() as u32 {
                self.schedule(idx, self.tti);
            }
        }
    }

    fn reset(&mut self) {
        self.slots.clear();
        self.times.clear();
        self.gens.clear();
        self.free.clear();
        self.small.clear();
        self.main.clear();
        self.timers.clear();
        self.ghost.clear();
        self.main_ghost.clear();
        self.sketch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(k: u64) -> u64 {
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// A shard of 100 entries with a fixed probation share of 0.1, after inserting the
    /// keys `0..n` at time 0, with that time and the removal list.
    fn shard_holding(n: u64) -> (Shard<u64, u64>, Now, RemovedList<u64, u64>) {
        let tuning = Arc::new(Tuning::new(0.1, false, 100));
        let shard = Shard::<u64, u64>::new(100, tuning, 0.5, NEVER);
        let at = Now { now: 0, tti: NEVER };
        let mut out = RemovedList::default();
        for k in 0..n {
            shard.insert(k, k, 1, hash(k), NEVER, at, &mut out);
        }
        (shard, at, out)
    }

    #[test]
    fn times_are_kept_only_once_an_entry_can_expire() {
        assert_eq!(std::mem::size_of::<Option<Slot<u64, u64>>>(), 32);
        let tuning = Arc::new(Tuning::new(0.002, true, 100));
        let shard = Shard::<u64, u64>::new(100, tuning, 0.5, NEVER);
        let at = |now| Now { now, tti: NEVER };
        let mut out = RemovedList::default();
        for k in 0..10 {
            shard.insert(k, k, 1, hash(k), NEVER, at(0), &mut out);
        }
        assert!(shard.inner.read().times.is_empty());
        shard.insert(10, 10, 1, hash(10), 50, at(0), &mut out);
        {
            let inner = shard.inner.read();
            assert_eq!(inner.times.len(), inner.slots.len());
        }
        assert_eq!(shard.get(&3, hash(3), true, || at(100)), Some(3));
        assert_eq!(shard.get(&10, hash(10), true, || at(49)), Some(10));
        assert_eq!(shard.get(&10, hash(10), true, || at(100)), None);
        shard.expire(at(100), &mut out);
        assert_eq!(shard.len(), 10);
    }

    #[test]
    fn a_key_back_from_the_ghost_is_tested_even_while_probation_is_over_its_share() {
        let (shard, at, mut out) = shard_holding(100);
        // Main's entries are asked for far more often than the returning key will be.
        for _ in 0..6 {
            for k in 0..100 {
                shard.get(&k, hash(k), true, || at);
            }
        }
        // 1,000 passes through probation unused and is remembered in the ghost queue.
        for k in 1_000..1_020 {
            shard.insert(k, k, 1, hash(k), NEVER, at, &mut out);
        }
        assert!(!shard.contains(&1_000, hash(1_000), at));
        {
            let mut inner = shard.inner.write();
            assert!(inner.small_weight > inner.small_target());
        }
        shard.insert(1_000, 1_000, 1, hash(1_000), NEVER, at, &mut out);
        let inner = shard.inner.read();
        let queue = inner.slot_of(&1_000, hash(1_000)).map(|s| s.queue);
        assert_eq!(queue, Some(Queue::Small));
    }

    #[test]
    fn evictions_from_main_move_the_hand_and_admission_tests_do_not() {
        // Most keys in main, the rest on probation; every other entry is asked for.
        let (shard, at, mut out) = shard_holding(101);
        for k in (0..101).step_by(2) {
            shard.get(&k, hash(k), true, || at);
        }
        let mut inner = shard.inner.write();
        while inner.small_weight > inner.small_target() {
            inner.evict_one(false, &mut out);
        }
        let main_len = inner.main_weight;
        assert!(inner.evict_one(false, &mut out));
        assert_eq!(inner.main_weight, main_len - 1);
        let head = inner.main_head().expect("main holds entries");
        let access = inner.slot_mut(head).map(|s| Access(s.freq.load(Relaxed)));
        assert_eq!(access.map(Access::chances), Some(0));
        // A key back from the ghost queue into a full shard is tested against that
        // head in place, even once the head was asked for again.
        if let Some(slot) = inner.slot_mut(head) {
            slot.freq.store(Access(0).hit().0, Relaxed);
        }
        inner.capacity = inner.total();
        let order: Vec<_> = inner.main.iter().copied().collect();
        let returning = hash(1_000);
        inner.ghost.insert(returning, 100);
        inner.admit(returning, 1);
        assert!(inner.main.iter().copied().eq(order));
    }

    #[test]
    fn folding_moves_the_locks_hit_count_into_the_shard_without_changing_the_total() {
        let (shard, at, _) = shard_holding(10);
        let hits = |shard: &Shard<u64, u64>| {
            let mut s = CacheStats::default();
            shard.add_counts_to(&mut s);
            s.hits
        };
        for k in 0..30 {
            shard.get(&(k % 10), hash(k % 10), true, || at);
        }
        shard.get(&3, hash(3), false, || at);
        assert_eq!(hits(&shard), 30);
        shard.fold_hits();
        assert_eq!(lock::hits(&shard.inner), 0);
        assert_eq!(hits(&shard), 30);
        shard.get(&3, hash(3), true, || at);
        assert_eq!(hits(&shard), 31);
    }

    #[test]
    fn probation_promotes_only_entries_hit_twice() {
        // Filling hands all but probation's share to main; 91 to 100 stay on probation.
        let (shard, at, mut out) = shard_holding(101);
        shard.get(&95, hash(95), true, || at);
        shard.get(&96, hash(96), true, || at);
        shard.get(&96, hash(96), true, || at);
        for k in 1_000..1_015 {
            shard.insert(k, k, 1, hash(k), NEVER, at, &mut out);
        }
        assert!(!shard.contains(&95, hash(95), at));
        assert!(shard.contains(&96, hash(96), at));
    }
}
