//! Tiers stacked into one cache: reads fall through, hits are promoted, writes go through.

use backstop_core::{Clock, Histogram, HistogramSnapshot, LatencySummary, SystemClock};
use dashmap::DashMap;
use futures::future::join_all;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::load_error::Loads;
use crate::{
    Entry, MemoryCache, MemoryTier, Promotion, Tier, TierError, TierStats, TieredConfig, WallClock,
};

/// A write that did not reach every tier. The tiers named in `failed` may hold an older
/// value; the others hold the new one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write reached {reached} of {total} tiers; failed: {failed:?}")]
pub struct PartialWrite {
    /// Tiers that took the write.
    pub reached: usize,
    /// Tiers in the cache.
    pub total: usize,
    /// Each failed tier's name and error.
    pub failed: Vec<(String, TierError)>,
}

/// Counters of a [`TieredCache`] and of each of its tiers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TieredStats {
    /// Fresh reads answered, by the index of the tier that answered (top first).
    pub hits_by_tier: Vec<u64>,
    /// Reads no tier could answer with a fresh value.
    pub misses: u64,
    /// Stale values served while a refresh ran (stale-while-revalidate).
    pub stale_served: u64,
    /// Remembered "not found" answers served (negative caching).
    pub negative_hits: u64,
    /// Loader runs (after coalescing: one per key per miss, not one per caller).
    pub loads: u64,
    /// Loads that failed or timed out.
    pub load_failures: u64,
    /// Background refreshes started (stale-while-revalidate and refresh-ahead).
    pub refreshes: u64,
    /// Values copied into upper tiers after a lower-tier hit.
    pub promotions: u64,
    /// Tier errors met while reading (each treated as a miss of that tier).
    pub read_errors: u64,
    /// Loads (foreground or background refreshes) whose loader or tier panicked; each
    /// panic was contained, failed that load only and released the key.
    pub panicked: u64,
    /// How long loader runs took.
    pub load_time: LatencySummary,
    /// Every loader run's duration since creation, bucketed: what a metrics exporter
    /// publishes as a histogram (`load_time` summarises it). Not serialized.
    #[serde(skip)]
    pub load_time_histogram: HistogramSnapshot,
    /// Each tier's own counters, top first, with its name.
    pub tiers: Vec<(String, TierStats)>,
}

/// One tier and how long entries are kept in it.
pub(crate) struct Level<V> {
    pub(crate) tier: Arc<dyn Tier<Entry<V>>>,
    pub(crate) ttl: Option<Duration>,
}

/// Caps the memory of hit counting under [`Promotion::AfterHits`].
const MAX_TRACKED_KEYS: usize = 100_000;

backstop_core::counter_set!(
    /// The cache's own counters behind [`TieredStats`] (hits are counted per tier apart).
    pub(crate) struct Counters => TieredStats {
        misses,
        stale_served,
        negative_hits,
        loads,
        load_failures,
        refreshes,
        promotions,
        read_errors,
        panicked,
    }
);

pub(crate) struct Inner<V, C> {
    /// The first tier again, typed, when it is a memory tier: read without a boxed future.
    memory: Option<MemoryCache<String, Entry<V>>>,
    pub(crate) levels: Vec<Level<V>>,
    pub(crate) config: TieredConfig,
    pub(crate) wall: WallClock<C>,
    lower_tier_reads: DashMap<String, u32>,
    hits_by_tier: Vec<AtomicU64>,
    pub(crate) counters: Counters,
    pub(crate) loads: Loads<V>,
    pub(crate) load_time: Histogram,
}

/// A cache made of tiers, fastest first (memory, then Redis, then disk).
///
/// Lookups go down the tiers until one has the key; that value is promoted into the tiers
/// above it per [`Promotion`], each with its own TTL. Writes, deletes and prefix
/// invalidations go to every tier. A failing tier never fails a read: it counts as a miss
/// of that tier and is reported in [`stats`](Self::stats) and through `tracing`.
///
/// Every tier stores an [`Entry`]: the value and the Unix time until which it is fresh,
/// so all processes sharing a Redis tier agree on staleness. Cloning the cache is cheap
/// and clones share everything.
///
/// ```
/// use backstop_cache::{MemoryTier, Promotion, TieredCache, TieredConfig};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // L1 in memory for a minute, L2 (here a second memory tier standing in for Redis).
/// let l2 = MemoryTier::with_capacity(100_000)?;
/// let cache: TieredCache<String, String> = TieredCache::builder()
///     .memory(MemoryTier::with_capacity(1_000)?, Some(Duration::from_secs(60)))
///     .tier(l2.clone(), Some(Duration::from_secs(3_600)))
///     .config(TieredConfig { promotion: Promotion::Always, ..Default::default() })
///     .build()?;
///
/// // One loader per key however many callers miss at once; the answer fills every tier.
/// let prompt = "What is 2+2?".to_string();
/// let answer = cache
///     .get_or_load(&prompt, || async { Ok::<_, std::io::Error>(Some("4".to_string())) })
///     .await?;
/// assert_eq!(answer.as_deref(), Some("4"));
/// assert_eq!(cache.get(&prompt).await.as_deref(), Some("4"));
/// let stats = cache.stats();
/// assert_eq!((stats.loads, stats.hits_by_tier[0]), (1, 1));
/// # Ok(())
/// # }
/// ```
pub struct TieredCache<K, V, C = SystemClock> {
    pub(crate) inner: Arc<Inner<V, C>>,
    _keys: PhantomData<fn(K)>,
}

impl<K, V, C> Clone for TieredCache<K, V, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _keys: PhantomData,
        }
    }
}

/// Builds a [`TieredCache`] one tier at a time, top first.
pub struct TieredCacheBuilder<K, V, C = SystemClock> {
    memory: Option<MemoryCache<String, Entry<V>>>,
    levels: Vec<Level<V>>,
    config: TieredConfig,
    clock: C,
    _keys: PhantomData<fn(K)>,
}

impl<K, V, C> TieredCacheBuilder<K, V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    /// Adds the next tier down. Entries are kept in it for `ttl` (at most a year, checked
    /// by [`build`](Self::build)), or, when `None`, for the config's fresh time plus stale
    /// grace.
    pub fn tier(mut self, tier: impl Tier<Entry<V>> + 'static, ttl: Option<Duration>) -> Self {
        self.levels.push(Level {
            tier: Arc::new(tier),
            ttl,
        });
        self
    }

    /// Puts an in-memory L1 on top of every tier added so far or later; entries are kept
    /// in it for `ttl` (see [`tier`](Self::tier)). Reads of this tier take a synchronous
    /// fast path.
    pub fn memory(mut self, tier: MemoryTier<Entry<V>>, ttl: Option<Duration>) -> Self {
        if self.memory.is_some() {
            self.levels.remove(0);
        }
        self.memory = Some(tier.cache().clone());
        self.levels.insert(
            0,
            Level {
                tier: Arc::new(tier),
                ttl,
            },
        );
        self
    }

    /// Adds an already shared tier.
    pub fn shared_tier(mut self, tier: Arc<dyn Tier<Entry<V>>>, ttl: Option<Duration>) -> Self {
        self.levels.push(Level { tier, ttl });
        self
    }

    /// Replaces the settings.
    pub fn config(mut self, config: TieredConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads time from `clock` (a `ManualClock` in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> TieredCacheBuilder<K, V, C2> {
        TieredCacheBuilder {
            memory: self.memory,
            levels: self.levels,
            config: self.config,
            clock,
            _keys: PhantomData,
        }
    }

    /// The cache, once its settings are valid.
    pub fn build(self) -> Result<TieredCache<K, V, C>, backstop_core::ConfigError> {
        let config = self.config.validated()?;
        backstop_core::config::ensure(
            !self.levels.is_empty(),
            "tiers",
            "must hold at least one tier",
        )?;
        for (index, level) in self.levels.iter().enumerate() {
            if let Some(ttl) = level.ttl {
                backstop_core::config::ensure_duration(&format!("tiers[{index}].ttl"), ttl)?;
            }
        }
        let retention = config.retention();
        let levels = self
            .levels
            .into_iter()
            .map(|level| Level {
                ttl: Some(level.ttl.unwrap_or(retention)),
                tier: level.tier,
            })
            .collect::<Vec<_>>();
        let hits_by_tier = levels.iter().map(|_| AtomicU64::new(0)).collect();
        Ok(TieredCache {
            inner: Arc::new(Inner {
                memory: self.memory,
                levels,
                config,
                wall: WallClock::new(self.clock),
                lower_tier_reads: DashMap::new(),
                hits_by_tier,
                counters: Counters::default(),
                loads: Loads::new(),
                load_time: Histogram::new(),
            }),
            _keys: PhantomData,
        })
    }
}

impl<K, V> TieredCache<K, V, SystemClock> {
    /// A cache of one memory tier holding at most `entries` entries, with default settings
    /// and the system clock: the shortest way to a cache, as moka's `Cache::new(capacity)`.
    ///
    /// ```
    /// use backstop_cache::TieredCache;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), backstop_core::ConfigError> {
    /// let cache: TieredCache<String, String> = TieredCache::in_memory(1_000)?;
    /// cache.insert(&"k".to_string(), "v".to_string()).await.unwrap();
    /// assert_eq!(cache.get(&"k".to_string()).await.as_deref(), Some("v"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn in_memory(entries: u64) -> Result<Self, backstop_core::ConfigError>
    where
        V: Clone + Send + Sync + 'static,
    {
        Self::builder()
            .memory(MemoryTier::with_capacity(entries)?, None)
            .build()
    }

    /// Starts a builder with default settings and the system clock.
    pub fn builder() -> TieredCacheBuilder<K, V, SystemClock> {
        TieredCacheBuilder {
            memory: None,
            levels: Vec::new(),
            config: TieredConfig::default(),
            clock: SystemClock,
            _keys: PhantomData,
        }
    }
}

impl<K, V, C> TieredCache<K, V, C>
where
    K: AsRef<str>,
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    /// The fresh value under `key` from the highest tier that has one; `None` when no
    /// tier has it, or it is stale, or it is a remembered "not found".
    pub async fn get(&self, key: &K) -> Option<V> {
        if let Some(entry) = self.inner.fresh_memory_hit(key.as_ref()) {
            if entry.value.is_none() {
                self.inner
                    .counters
                    .negative_hits
                    .fetch_add(1, Ordering::Relaxed);
            }
            return entry.value;
        }
        let now = self.inner.wall.unix_millis();
        match self.inner.lookup(key.as_ref()).await {
            Some(entry) if entry.is_fresh(now) => {
                if entry.value.is_none() {
                    self.inner
                        .counters
                        .negative_hits
                        .fetch_add(1, Ordering::Relaxed);
                }
                entry.value
            }
            _ => {
                self.inner.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Like [`get`](Self::get), but a failing tier is an error instead of a miss (strict
    /// mode), for callers that must tell "not cached" from "could not ask".
    pub async fn try_get(&self, key: &K) -> Result<Option<V>, TierError> {
        let key = key.as_ref();
        let now = self.inner.wall.unix_millis();
        for level in &self.inner.levels {
            if let Some(entry) = level.tier.get(key).await? {
                let fresh = entry.is_fresh(now);
                return Ok(entry.value.filter(|_| fresh));
            }
        }
        Ok(None)
    }

    /// Writes `value` through to every tier, fresh for the configured time.
    pub async fn insert(&self, key: &K, value: V) -> Result<(), PartialWrite> {
        self.inner.write(key.as_ref(), Some(value)).await
    }

    /// Removes `key` from every tier.
    pub async fn remove(&self, key: &K) -> Result<(), PartialWrite> {
        let key = key.as_ref();
        let levels = &self.inner.levels;
        let results = join_all(levels.iter().map(|level| level.tier.delete(key))).await;
        self.inner.collect(results)
    }

    /// Removes every key starting with `prefix` from every tier.
    ///
    /// An empty prefix is refused (every tier fails with [`TierError::EmptyPrefix`] and
    /// none is asked): in a Redis tier it would read as "the whole namespace", which is
    /// the separate [`invalidate_all`](Self::invalidate_all).
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<(), PartialWrite> {
        let levels = &self.inner.levels;
        if prefix.is_empty() {
            let refused = levels.iter().map(|_| Err::<u64, _>(TierError::EmptyPrefix));
            return self.inner.collect(refused.collect());
        }
        let results = join_all(
            levels
                .iter()
                .map(|level| level.tier.invalidate_prefix(prefix)),
        )
        .await;
        self.inner.collect(results)
    }

    /// Removes every entry of this cache from every tier: the memory tier is emptied, a
    /// Redis tier removes the keys of its namespace (and nothing outside it), a
    /// persistent tier empties its file.
    pub async fn invalidate_all(&self) -> Result<(), PartialWrite> {
        let levels = &self.inner.levels;
        let results = join_all(levels.iter().map(|level| level.tier.invalidate_all())).await;
        self.inner.collect(results)
    }

    /// Writes many values at once (cache warming), each through to every tier; returns
    /// how many reached every tier.
    pub async fn warm(&self, entries: impl IntoIterator<Item = (K, V)>) -> usize {
        let writes = entries
            .into_iter()
            .map(|(key, value)| async move { self.insert(&key, value).await.is_ok() });
        join_all(writes).await.into_iter().filter(|ok| *ok).count()
    }

    /// Counters of the cache and of each tier.
    pub fn stats(&self) -> TieredStats {
        let inner = &self.inner;
        let load_time = inner.load_time.snapshot();
        inner.counters.read_into(TieredStats {
            hits_by_tier: inner
                .hits_by_tier
                .iter()
                .map(|hits| hits.load(Ordering::Relaxed))
                .collect(),
            load_time: load_time.summary(),
            load_time_histogram: load_time,
            tiers: inner
                .levels
                .iter()
                .map(|level| (level.tier.name().to_string(), level.tier.stats()))
                .collect(),
            ..TieredStats::default()
        })
    }
}

impl<V, C> Inner<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    pub(crate) fn clock(&self) -> &C {
        self.wall.clock()
    }

    pub(crate) fn memory_keys(&self, limit: usize) -> Vec<String> {
        let Some(memory) = &self.memory else {
            return Vec::new();
        };
        memory
            .iter()
            .filter(|(_, entry)| entry.value.is_some())
            .map(|(key, _)| key)
            .take(limit)
            .collect()
    }

    /// An L1 hit known to be fresh without reading the clock: without stale grace no
    /// tier keeps an entry past its freshness deadline (see `keep_for`).
    fn fresh_memory_hit(&self, key: &str) -> Option<Entry<V>> {
        if self.config.stale_grace.is_some() {
            return None;
        }
        let entry = self.memory.as_ref()?.get(key)?;
        self.hits_by_tier[0].fetch_add(1, Ordering::Relaxed);
        Some(entry)
    }

    /// The entry from the highest tier that has one, fresh or not, promoted upward.
    pub(crate) async fn lookup(&self, key: &str) -> Option<Entry<V>> {
        let mut first_async_tier = 0;
        if let Some(memory) = &self.memory {
            if let Some(entry) = memory.get(key) {
                self.hits_by_tier[0].fetch_add(1, Ordering::Relaxed);
                return Some(entry);
            }
            first_async_tier = 1;
        }
        for (index, level) in self.levels.iter().enumerate().skip(first_async_tier) {
            match level.tier.get(key).await {
                Ok(Some(entry)) => {
                    self.hits_by_tier[index].fetch_add(1, Ordering::Relaxed);
                    if index > 0 && self.should_promote(key) {
                        self.promote(key, &entry, index).await;
                    }
                    return Some(entry);
                }
                Ok(None) => {}
                Err(error) => {
                    self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tier = level.tier.name(), %error, "cache tier read failed; treated as a miss");
                }
            }
        }
        None
    }

    fn should_promote(&self, key: &str) -> bool {
        match self.config.promotion {
            Promotion::Always => true,
            Promotion::Never => false,
            Promotion::AfterHits(needed) => {
                if self.lower_tier_reads.len() >= MAX_TRACKED_KEYS {
                    self.lower_tier_reads.clear();
                }
                let mut reads = self.lower_tier_reads.entry(key.to_string()).or_insert(0);
                *reads += 1;
                let promote = *reads >= needed;
                drop(reads);
                if promote {
                    self.lower_tier_reads.remove(key);
                }
                promote
            }
        }
    }

    /// How long `level` keeps `entry`: its own TTL, but never past the entry's freshness
    /// deadline plus the stale grace, when nothing may serve it any more. Because of this
    /// cap, an entry in the memory L1 is fresh whenever there is no grace, which lets
    /// `get` answer an L1 hit without reading the clock.
    fn keep_for(&self, level: &Level<V>, entry: &Entry<V>, now: u64) -> Option<Duration> {
        let grace = match entry.value {
            Some(_) => self.config.stale_grace.unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        };
        let useful =
            Duration::from_millis(entry.fresh_until.saturating_sub(now)).saturating_add(grace);
        Some(level.ttl.map_or(useful, |ttl| ttl.min(useful)))
    }

    async fn promote(&self, key: &str, entry: &Entry<V>, found_at: usize) {
        let upper = &self.levels[..found_at];
        let now = self.wall.unix_millis();
        let writes = upper
            .iter()
            .map(|level| level.tier.set(key, entry, self.keep_for(level, entry, now)));
        for (level, result) in upper.iter().zip(join_all(writes).await) {
            if let Err(error) = result {
                tracing::warn!(tier = level.tier.name(), %error, "promotion into cache tier failed");
            }
        }
        self.counters.promotions.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes a value (or a "not found" when `None`) to every tier with a fresh deadline.
    pub(crate) async fn write(&self, key: &str, value: Option<V>) -> Result<(), PartialWrite> {
        let fresh_for = match value {
            Some(_) => self.config.fresh_for,
            None => self.config.negative_ttl.unwrap_or(Duration::ZERO),
        };
        let now = self.wall.unix_millis();
        let entry = Entry {
            value,
            fresh_until: now.saturating_add(backstop_core::time::millis(fresh_for)),
        };
        let results = join_all(self.levels.iter().map(|level| {
            level
                .tier
                .set(key, &entry, self.keep_for(level, &entry, now))
        }))
        .await;
        self.collect(results)
    }

    fn collect<T>(&self, results: Vec<Result<T, TierError>>) -> Result<(), PartialWrite> {
        let failed: Vec<(String, TierError)> = self
            .levels
            .iter()
            .zip(results)
            .filter_map(|(level, result)| {
                result
                    .err()
                    .map(|error| (level.tier.name().to_string(), error))
            })
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        for (tier, error) in &failed {
            tracing::warn!(tier, %error, "cache tier write failed");
        }
        Err(PartialWrite {
            reached: self.levels.len() - failed.len(),
            total: self.levels.len(),
            failed,
        })
    }
}
