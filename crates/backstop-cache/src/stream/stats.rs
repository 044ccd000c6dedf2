//! Counters of a [`StreamCache`](crate::StreamCache).

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

backstop_core::counter_set!(
    /// A [`StreamCache`](crate::StreamCache)'s counters and its `bytes_recording` gauge.
    pub(crate) struct StreamCacheCounters => StreamCacheStats {
        replays,
        loads,
        stored,
        not_stored_failed,
        not_stored_cut,
        not_stored_too_large,
        store_failures,
        bytes_recording,
    }
);

impl StreamCacheCounters {
    pub(crate) fn snapshot(&self, group: StreamGroupStats) -> StreamCacheStats {
        self.read_into(StreamCacheStats {
            group,
            ..StreamCacheStats::default()
        })
    }
}
