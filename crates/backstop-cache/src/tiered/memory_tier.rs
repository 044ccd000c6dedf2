//! The in-memory cache as a [`Tier`], the usual L1.

use async_trait::async_trait;
use std::time::Duration;

use backstop_core::ConfigError;

use super::tier::ensure_prefix;
use crate::{MemoryCache, Tier, TierError, TierStats};

/// A [`MemoryCache`] keyed by strings, seen as a [`Tier`].
///
/// Give it to [`TieredCacheBuilder::memory`](crate::TieredCacheBuilder::memory) as the
/// first tier and the tiered cache reads it synchronously, without the boxed future of a
/// `dyn Tier` call, so an L1 hit costs little more than the bare cache.
#[derive(Clone, Debug)]
pub struct MemoryTier<V> {
    cache: MemoryCache<String, V>,
}

impl<V: Clone + Send + Sync + 'static> MemoryTier<V> {
    /// Wraps an existing cache (its capacity, policy, weigher and listener apply).
    pub fn new(cache: MemoryCache<String, V>) -> Self {
        Self { cache }
    }

    /// A cache of at most `entries` entries with default settings.
    pub fn with_capacity(entries: u64) -> Result<Self, ConfigError> {
        Ok(Self {
            cache: MemoryCache::builder().max_capacity(entries).build()?,
        })
    }

    /// The wrapped cache.
    pub fn cache(&self) -> &MemoryCache<String, V> {
        &self.cache
    }
}

#[async_trait]
impl<V: Clone + Send + Sync + 'static> Tier<V> for MemoryTier<V> {
    fn name(&self) -> &str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<V>, TierError> {
        Ok(self.cache.get(key))
    }

    async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), TierError> {
        match ttl {
            Some(ttl) => self
                .cache
                .insert_with_ttl(key.to_string(), value.clone(), ttl),
            None => self.cache.insert(key.to_string(), value.clone()),
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), TierError> {
        self.cache.remove(key);
        Ok(())
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        ensure_prefix(prefix)?;
        let before = self.cache.len();
        self.cache.invalidate_prefix(prefix);
        Ok(before.saturating_sub(self.cache.len()))
    }

    async fn invalidate_all(&self) -> Result<u64, TierError> {
        let before = self.cache.len();
        self.cache.invalidate_all();
        Ok(before.saturating_sub(self.cache.len()))
    }

    fn stats(&self) -> TierStats {
        let stats = self.cache.stats();
        TierStats {
            hits: stats.hits,
            misses: stats.misses,
            sets: stats.insertions + stats.updates,
            deletes: stats.removals.explicit,
            invalidated: stats.removals.expired,
            errors: stats.rejected_oversize,
        }
    }
}
