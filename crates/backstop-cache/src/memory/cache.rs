//! The sharded cache handle and its builder.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use backstop_core::config::{ConfigError, Validate};
use backstop_core::{Clock, Panicked, SystemClock, contain};

use super::adapt::Tuning;
use super::config::CacheConfig;
use super::expiry::{Expiry, NEVER};
use super::listener::{EvictionListener, RemovalCause};
use super::shard::{Inserted, Now, RemovedList, Shard};
use super::stats::{CacheStats, MissCounters};

/// Computes the weight of an entry (for example its size in bytes or tokens).
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// What [`MemoryCache::compute`] does with the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compute<V> {
    /// Leave the entry as it is (absent stays absent).
    Keep,
    /// Store this value.
    Put(V),
    /// Remove the entry.
    Remove,
}

/// A bounded, sharded, concurrent in-memory cache with the S3-FIFO policy, weights,
/// time to live / time to idle / per-entry expiry, an eviction listener and stats.
///
/// Clones share the same cache. `V` is returned by clone, so use `Arc<T>` for large values.
///
/// ```
/// use std::time::Duration;
/// use backstop_cache::MemoryCache;
///
/// let cache: MemoryCache<String, String> = MemoryCache::builder()
///     .max_capacity(10_000)
///     .ttl(Duration::from_secs(300))
///     .build()
///     .unwrap();
/// cache.insert("prompt".to_string(), "answer".to_string());
/// assert_eq!(cache.get("prompt").as_deref(), Some("answer"));
/// assert_eq!(cache.stats().hits, 1);
/// ```
pub struct MemoryCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for MemoryCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for MemoryCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("shards", &self.inner.shards.len())
            .field("max_capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

struct Inner<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: SeedableRandomState,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    ttl: u64,
    tti: u64,
    expiry: Option<Arc<dyn Expiry<K, V>>>,
    weigher: Option<Weigher<K, V>>,
    listener: Option<EvictionListener<K, V>>,
    /// Miss counters; hits are counted by the shards' locks.
    misses: MissCounters,
    /// Panics of user code (weigher, expiry hook, listener), contained and counted.
    panicked: AtomicU64,
    /// Whether any entry can expire; until then the hit path never reads the clock.
    timed: AtomicBool,
    capacity: u64,
}

/// Builds a [`MemoryCache`]; start from [`MemoryCache::builder`].
pub struct CacheBuilder<K, V> {
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    expiry: Option<Arc<dyn Expiry<K, V>>>,
    weigher: Option<Weigher<K, V>>,
    listener: Option<EvictionListener<K, V>>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Replaces the whole configuration (for example one read from a file).
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// Maximum number of entries, or total weight when a weigher is set.
    pub fn max_capacity(mut self, capacity: u64) -> Self {
        self.config.max_capacity = capacity;
        self
    }

    /// Number of shards (default: about four per core, at least 64 capacity units each).
    pub fn shards(mut self, shards: usize) -> Self {
        self.config.shards = Some(shards);
        self
    }

    /// Cache-wide time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = Some(ttl);
        self
    }

    /// Cache-wide time to idle.
    pub fn tti(mut self, tti: Duration) -> Self {
        self.config.tti = Some(tti);
        self
    }

    /// Per-entry time to live hook.
    pub fn expiry(mut self, expiry: impl Expiry<K, V>) -> Self {
        self.expiry = Some(Arc::new(expiry));
        self
    }

    /// Weigh entries; capacity then bounds the total weight. An entry heavier than one
    /// shard's share of capacity is refused and reported with [`RemovalCause::Size`].
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Called for every entry that leaves the cache. A panic in it is caught and logged.
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// A fixed seed for the key hash, so that runs repeat exactly (see
    /// [`PolicyConfig::hash_seed`](crate::PolicyConfig::hash_seed)).
    pub fn hash_seed(mut self, seed: u64) -> Self {
        self.config.policy.hash_seed = Some(seed);
        self
    }

    /// The clock every deadline is read from (a `ManualClock` makes tests exact).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the configuration and builds the cache.
    pub fn build(self) -> Result<MemoryCache<K, V>, ConfigError> {
        let cfg = self.config;
        cfg.validate()?;
        let n = cfg.shard_count(self.weigher.is_some());
        // foldhash: randomly seeded per cache unless a seed is given, and cheap enough to
        // hash once for the shard and once in the shard map (SipHash made hashing most of
        // the cost of a hit).
        let hasher = match cfg.policy.hash_seed {
            Some(seed) => SeedableRandomState::with_seed(seed, SharedSeed::global_fixed()),
            None => SeedableRandomState::random(),
        };
        let tti = cfg.tti.map_or(NEVER, nanos);
        let base = cfg.max_capacity / n as u64;
        let extra = cfg.max_capacity % n as u64;
        let tuning = Arc::new(Tuning::new(
            cfg.policy.small_ratio,
            cfg.policy.adaptive,
            cfg.max_capacity,
        ));
        let shards = (0..n as u64)
            .map(|i| {
                let cap = base + u64::from(i < extra);
                Shard::new(cap, Arc::clone(&tuning), cfg.policy.ghost_ratio, tti)
            })
            .collect();
        let timed = cfg.ttl.is_some() || cfg.tti.is_some() || self.expiry.is_some();
        Ok(MemoryCache {
            inner: Arc::new(Inner {
                shards,
                hasher,
                epoch: self.clock.now(),
                clock: self.clock,
                ttl: cfg.ttl.map_or(NEVER, nanos),
                tti,
                expiry: self.expiry,
                weigher: self.weigher,
                listener: self.listener,
                misses: MissCounters::new(),
                panicked: AtomicU64::new(0),
                timed: AtomicBool::new(timed),
                capacity: cfg.max_capacity,
            }),
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER - 1)
}

impl<K, V> MemoryCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder with the default configuration and the system clock.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder {
            config: CacheConfig::default(),
            clock: Arc::new(SystemClock),
            expiry: None,
            weigher: None,
            listener: None,
        }
    }

    /// A cache built from `config` with the system clock.
    pub fn from_config(config: CacheConfig) -> Result<Self, ConfigError> {
        Self::builder().config(config).build()
    }

    fn shard_for(&self, hash: u64) -> &Shard<K, V> {
        let n = self.inner.shards.len() as u64;
        // The shard table probes with the low bits and tags with the top seven, so the
        // shard comes from the bits in between; multiply-shift maps them onto any shard
        // count without a modulo.
        let mid = (hash >> 24) & 0xFFFF_FFFF;
        &self.inner.shards[((mid * n) >> 32) as usize]
    }

    fn now(&self) -> Now {
        let now = if self.inner.timed.load(Relaxed) {
            self.clock_nanos()
        } else {
            0
        };
        Now {
            now,
            tti: self.inner.tti,
        }
    }

    /// Nanoseconds since the cache's epoch. Kept out of line: inlined, the dynamic clock
    /// call made every lookup of an untimed cache save and restore registers for it
    /// (and a timed cache's lookup pays far more for the clock than for the call).
    #[inline(never)]
    fn clock_nanos(&self) -> u64 {
        nanos(
            self.inner
                .clock
                .now()
                .saturating_duration_since(self.inner.epoch),
        )
    }

    /// The entry's weight; `None` when the weigher panicked (contained, counted and
    /// logged: the entry is then refused, never stored with a made-up weight).
    fn weigh(&self, key: &K, value: &V) -> Option<u32> {
        let Some(weigher) = &self.inner.weigher else {
            return Some(1);
        };
        match contain("cache weigher", || weigher(key, value)) {
            Ok(weight) => Some(weight),
            Err(panicked) => {
                self.panicked(&panicked);
                None
            }
        }
    }

    #[cold]
    fn panicked(&self, panicked: &Panicked) {
        self.inner.panicked.fetch_add(1, Relaxed);
        tracing::error!(%panicked, "cache callback panicked; contained");
    }

    /// Reports removals to the listener, outside any shard lock (the shard counted
    /// them). Without a listener the list is dropped unread: the check is inlined into
    /// every writer, which otherwise paid a call and a copy of the list per insert.
    /// Forced: LLVM declined a plain `#[inline]` here, and the call, the copy and the
    /// register saves were 22 of a replacing insert's 232 instructions (cachegrind).
    #[inline(always)]
    fn notify(&self, removed: RemovedList<K, V>) {
        if let Some(listener) = &self.inner.listener {
            self.report_to(listener, removed);
        }
    }

    #[inline(never)]
    fn report_to(&self, listener: &EvictionListener<K, V>, removed: RemovedList<K, V>) {
        for (k, v, cause) in removed {
            if let Err(panicked) = contain("cache eviction listener", || listener(&k, &v, cause)) {
                self.panicked(&panicked);
            }
        }
    }

    /// The value for `key`, if present and not expired. Takes only a shared shard lock.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        let shard = self.shard_for(hash);
        let found = shard.get(key, hash, true, || self.now());
        if found.is_none() {
            self.inner.misses.miss();
        }
        found
    }

    /// Whether a live entry exists for `key` (does not count as an access).
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        self.shard_for(hash).contains(key, hash, self.now())
    }

    /// The deadline of an entry written at `t`: its own time to live, else the
    /// [`Expiry`] hook's (asked whether the write creates or updates the entry), else
    /// the cache-wide one. Without an own time to live or a hook, which is every write
    /// of most caches, that is one comparison, kept inline; the hook's path is not.
    #[inline]
    fn deadline(
        &self,
        shard: &Shard<K, V>,
        key: &K,
        value: &V,
        hash: u64,
        t: Now,
        ttl: Option<Duration>,
    ) -> u64 {
        let ttl = match (ttl, &self.inner.expiry) {
            (Some(d), _) => Some(d),
            (None, None) => None,
            (None, Some(e)) => self.ask_expiry(e.as_ref(), shard, key, value, hash, t),
        };
        match ttl {
            Some(d) => t.now.saturating_add(nanos(d)),
            None if self.inner.ttl == NEVER => NEVER,
            None => t.now.saturating_add(self.inner.ttl),
        }
    }

    /// The [`Expiry`] hook's time to live for a write at `t`, contained.
    #[inline(never)]
    fn ask_expiry(
        &self,
        e: &dyn Expiry<K, V>,
        shard: &Shard<K, V>,
        key: &K,
        value: &V,
        hash: u64,
        t: Now,
    ) -> Option<Duration> {
        let update = shard.contains(key, hash, t);
        let at = self.inner.epoch + Duration::from_nanos(t.now);
        let hook = contain("cache expiry hook", || {
            if update {
                e.expire_after_update(key, value, at)
            } else {
                e.expire_after_create(key, value, at)
            }
        });
        // A panicking hook leaves the entry to the cache-wide time to live.
        hook.unwrap_or_else(|panicked| {
            self.panicked(&panicked);
            None
        })
    }

    fn insert_inner(&self, key: K, value: V, ttl: Option<Duration>) {
        if ttl.is_some() && !self.inner.timed.load(Relaxed) {
            self.inner.timed.store(true, Relaxed);
        }
        let hash = self.inner.hasher.hash_one(&key);
        let shard = self.shard_for(hash);
        let t = self.now();
        let Some(weight) = self.weigh(&key, &value) else {
            // Never serve the value this insert meant to replace.
            self.remove(&key);
            return;
        };
        let expires_at = self.deadline(shard, &key, &value, hash, t, ttl);
        let mut removed = RemovedList::default();
        if shard.insert(key, value, weight, hash, expires_at, t, &mut removed) == Inserted::Rejected
        {
            refused(weight, shard.capacity());
        }
        self.notify(removed);
    }

    /// Inserts or replaces the value for `key`.
    pub fn insert(&self, key: K, value: V) {
        self.insert_inner(key, value, None);
    }

    /// Inserts with an entry-specific time to live (overriding the cache-wide one and the
    /// `Expiry` hook).
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.insert_inner(key, value, Some(ttl));
    }

    /// Removes and returns the live value for `key`.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        let shard = self.shard_for(hash);
        let mut removed = RemovedList::default();
        let v = shard.remove(key, hash, self.now(), &mut removed);
        self.notify(removed);
        v
    }

    /// Atomically decides the fate of `key` from its current live value and returns the
    /// value held afterwards. `f` runs under the shard's write lock: keep it short and do
    /// not call back into the cache from it. A value it stores gets the cache-wide time to
    /// live (the [`Expiry`] hook is not consulted).
    ///
    /// ```
    /// use backstop_cache::{Compute, MemoryCache};
    ///
    /// let cache: MemoryCache<&str, u32> = MemoryCache::builder().max_capacity(100).build().unwrap();
    /// cache.compute("hits", |v| Compute::Put(v.map_or(1, |n| n + 1)));
    /// assert_eq!(cache.compute("hits", |v| Compute::Put(v.map_or(1, |n| n + 1))), Some(2));
    /// assert_eq!(cache.compute("hits", |v| if v == Some(&2) { Compute::Remove } else { Compute::Keep }), None);
    /// ```
    pub fn compute<F>(&self, key: K, f: F) -> Option<V>
    where
        F: FnOnce(Option<&V>) -> Compute<V>,
    {
        let hash = self.inner.hasher.hash_one(&key);
        let shard = self.shard_for(hash);
        let t = self.now();
        let ttl_nanos = if self.inner.ttl == NEVER {
            NEVER
        } else {
            t.now.saturating_add(self.inner.ttl)
        };
        let weigh = |k: &K, v: &V| self.weigh(k, v);
        let mut removed = RemovedList::default();
        let value = shard.compute(key, hash, t, ttl_nanos, &weigh, f, &mut removed);
        self.notify(removed);
        value
    }

    /// The value for `key`, computing and inserting it with `init` on a miss. Concurrent
    /// callers for the same key wait for one `init` instead of each running their own.
    /// If `init` panics, the panic reaches its caller and a waiting caller runs `init`.
    pub fn get_or_insert_with(&self, key: K, init: impl FnOnce() -> V) -> V {
        match self.try_get_or_insert_with(key, || Ok::<V, std::convert::Infallible>(init())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`get_or_insert_with`](Self::get_or_insert_with) with a fallible `init`; an
    /// error is returned to its caller, nothing is cached, and a waiting caller retries.
    ///
    /// ```
    /// use backstop_cache::MemoryCache;
    ///
    /// let cache: MemoryCache<u32, String> = MemoryCache::builder().max_capacity(100).build().unwrap();
    /// assert!(cache.try_get_or_insert_with(1, || Err::<String, _>("backend down")).is_err());
    /// assert_eq!(cache.try_get_or_insert_with(1, || Ok::<_, &str>("ok".to_string())).unwrap(), "ok");
    /// ```
    pub fn try_get_or_insert_with<E>(
        &self,
        key: K,
        init: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let hash = self.inner.hasher.hash_one(&key);
        let shard = self.shard_for(hash);
        let pending = Arc::clone(shard.pending.lock().entry(key.clone()).or_default());
        let _cleanup = PendingGuard {
            shard,
            key: &key,
            pending: &pending,
        };
        let mut slot = pending.lock();
        if let Some(v) = slot.as_ref() {
            return Ok(v.clone());
        }
        // Not counted: the lookup above already was.
        if let Some(v) = shard.get(&key, hash, false, || self.now()) {
            *slot = Some(v.clone());
            return Ok(v);
        }
        let v = init()?;
        self.insert(key.clone(), v.clone());
        *slot = Some(v.clone());
        Ok(v)
    }

    /// Removes every entry.
    pub fn invalidate_all(&self) {
        self.invalidate_if(|_, _| true);
        tracing::debug!("cache invalidated");
    }

    /// Removes every entry for which `pred` holds. Visits every shard (this is the one
    /// operation that scans).
    pub fn invalidate_if(&self, mut pred: impl FnMut(&K, &V) -> bool) {
        let t = self.now();
        for shard in self.inner.shards.iter() {
            let mut removed = RemovedList::default();
            shard.retain_not(t, &mut pred, &mut removed);
            self.notify(removed);
        }
    }

    /// Removes every entry whose key starts with `prefix`.
    pub fn invalidate_prefix(&self, prefix: &str)
    where
        K: AsRef<str>,
    {
        self.invalidate_if(|k, _| k.as_ref().starts_with(prefix));
    }

    /// Reclaims expired entries now (writes do this for their shard as they go).
    pub fn run_pending_tasks(&self) {
        let t = self.now();
        for shard in self.inner.shards.iter() {
            let mut removed = RemovedList::default();
            shard.expire(t, &mut removed);
            self.notify(removed);
        }
    }

    /// A copy of the live entries, one shard at a time (not an atomic snapshot of the
    /// whole cache).
    pub fn snapshot(&self) -> Vec<(K, V)> {
        let t = self.now();
        let mut out = Vec::with_capacity(self.len() as usize);
        for shard in self.inner.shards.iter() {
            shard.snapshot(t, &mut out);
        }
        out
    }

    /// Iterates over a [`snapshot`](Self::snapshot) of the live entries.
    pub fn iter(&self) -> std::vec::IntoIter<(K, V)> {
        self.snapshot().into_iter()
    }

    /// Entries held, including expired ones not yet reclaimed.
    pub fn len(&self) -> u64 {
        self.inner.shards.iter().map(Shard::len).sum()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held (equal to [`len`](Self::len) without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner.shards.iter().map(Shard::weighted_size).sum()
    }

    /// Configured capacity.
    pub fn max_capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The largest single entry weight the cache accepts (one shard's share).
    pub fn max_entry_weight(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(Shard::capacity)
            .min()
            .unwrap_or(0)
    }

    /// Counters and occupancy, summed over shards.
    pub fn stats(&self) -> CacheStats {
        let mut s = CacheStats {
            max_capacity: self.inner.capacity,
            ..CacheStats::default()
        };
        self.inner.misses.add_to(&mut s);
        s.panicked = self.inner.panicked.load(Relaxed);
        for shard in self.inner.shards.iter() {
            shard.add_counts_to(&mut s);
            s.entries += shard.len();
            s.weighted_size += shard.weighted_size();
        }
        s.finish()
    }
}

/// Removes the in-flight record of a `get_or_insert_with` when its leader finishes,
/// fails or unwinds, unless a newer record already replaced it.
struct PendingGuard<'a, K: Hash + Eq, V> {
    shard: &'a Shard<K, V>,
    key: &'a K,
    pending: &'a super::shard::Pending<V>,
}

impl<K: Hash + Eq, V> Drop for PendingGuard<'_, K, V> {
    fn drop(&mut self) {
        let mut map = self.shard.pending.lock();
        if map
            .get(self.key)
            .is_some_and(|p| Arc::ptr_eq(p, self.pending))
        {
            map.remove(self.key);
        }
    }
}

/// Logs an entry refused for its weight; out of line, off every insert's path.
#[cold]
fn refused(weight: u32, shard_capacity: u64) {
    tracing::warn!(
        weight,
        shard_capacity,
        "cache entry heavier than a shard's capacity refused"
    );
}
