//! Why an entry left the cache, and the listener that hears about it.

use std::sync::Arc;

use serde::Serialize;

/// Why an entry was removed from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RemovalCause {
    /// Evicted to stay within capacity, or refused because it alone is larger than the
    /// share of capacity one shard holds (see [`CacheStats::rejected_oversize`](crate::CacheStats)).
    Size,
    /// Its time to live or time to idle passed.
    Expired,
    /// Removed by `remove`, `compute`, `invalidate_*`.
    Explicit,
    /// Overwritten by a newer value for the same key.
    Replaced,
}

impl RemovalCause {
    /// Whether the cache removed the entry on its own (size or expiry).
    pub fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Size | RemovalCause::Expired)
    }
}

/// Called once for every entry that leaves the cache, after the shard lock is released,
/// so it may use the cache itself.
pub type EvictionListener<K, V> = Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;
