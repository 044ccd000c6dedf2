//! Always-on per-shard counters and their serializable snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::listener::RemovalCause;

/// Per-shard counters: relaxed atomics on the shard the operation already touches, so
/// counting costs no extra cache-line traffic between shards.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) insertions: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) size: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) explicit: AtomicU64,
    pub(crate) replaced: AtomicU64,
}

impl Counters {
    pub(crate) fn removed(&self, cause: RemovalCause) {
        let c = match cause {
            RemovalCause::Size => &self.size,
            RemovalCause::Expired => &self.expired,
            RemovalCause::Explicit => &self.explicit,
            RemovalCause::Replaced => &self.replaced,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_to(&self, s: &mut CacheStats) {
        s.hits += self.hits.load(Relaxed);
        s.misses += self.misses.load(Relaxed);
        s.insertions += self.insertions.load(Relaxed);
        s.updates += self.updates.load(Relaxed);
        s.rejected_oversize += self.rejected.load(Relaxed);
        s.removals.size += self.size.load(Relaxed);
        s.removals.expired += self.expired.load(Relaxed);
        s.removals.explicit += self.explicit.load(Relaxed);
        s.removals.replaced += self.replaced.load(Relaxed);
    }
}

/// Removals by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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
