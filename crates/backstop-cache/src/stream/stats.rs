//! Counters of a [`StreamCache`](crate::StreamCache).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use backstop_dedup::StreamGroupStats;
use serde::Serialize;

/// A point-in-time snapshot of a [`StreamCache`](crate::StreamCache)'s counters, with its
/// group's (streams shared, followers, late joiners, bytes buffered, lagging readers).
/// Hits and misses per tier are in the underlying `TieredCache`'s stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamCacheStats {
    /// Calls answered by replaying a stored stream.
    pub replays: u64,
    /// Upstreams opened through the cache after a miss (one per shared stream).
    pub loads: u64,
    /// Streams that completed and were written to every tier.
    pub stored: u64,
    /// Streams not stored because they failed mid-way (an error item).
    pub not_stored_failed: u64,
    /// Streams not stored because every reader left before the end (cut).
    pub not_stored_cut: u64,
    /// Streams not stored because they passed `max_record_bytes` or the recording budget
    /// `max_recording_bytes` was spent (or the weigher panicked).
    pub not_stored_too_large: u64,
    /// Completed streams whose write failed in some tier (or panicked).
    pub store_failures: u64,
    /// Bytes held by recordings in flight right now.
    pub bytes_recording: u64,
    /// The counters of the group sharing in-flight streams.
    pub group: StreamGroupStats,
}

#[derive(Debug, Default)]
pub(crate) struct StreamCacheCounters {
    pub(crate) replays: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) not_stored_failed: AtomicU64,
    pub(crate) not_stored_cut: AtomicU64,
    pub(crate) not_stored_too_large: AtomicU64,
    pub(crate) store_failures: AtomicU64,
    pub(crate) bytes_recording: AtomicU64,
}

impl StreamCacheCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, group: StreamGroupStats) -> StreamCacheStats {
        StreamCacheStats {
            replays: self.replays.load(Relaxed),
            loads: self.loads.load(Relaxed),
            stored: self.stored.load(Relaxed),
            not_stored_failed: self.not_stored_failed.load(Relaxed),
            not_stored_cut: self.not_stored_cut.load(Relaxed),
            not_stored_too_large: self.not_stored_too_large.load(Relaxed),
            store_failures: self.store_failures.load(Relaxed),
            bytes_recording: self.bytes_recording.load(Relaxed),
            group,
        }
    }
}
