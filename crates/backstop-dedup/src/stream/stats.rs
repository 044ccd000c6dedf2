//! Counters of a [`StreamGroup`](crate::StreamGroup).

use serde::Serialize;

/// A point-in-time snapshot of a [`StreamGroup`](crate::StreamGroup)'s counters.
///
/// Counters are totals since the group was made; `in_flight`, `readers` and
/// `bytes_buffered` are gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamGroupStats {
    /// Upstream streams opened for shared use (one per key while in flight).
    pub streams: u64,
    /// Callers that joined a stream already in flight instead of opening one.
    pub followers: u64,
    /// Followers that joined after the stream had produced at least one chunk, and so
    /// first replayed the buffered chunks.
    pub late_joiners: u64,
    /// Calls served with an upstream of their own because `max_streams` streams were
    /// already shared.
    pub unshared: u64,
    /// Chunks read from upstreams.
    pub chunks: u64,
    /// Readers cut with a lag error because the buffer bound dropped chunks they still
    /// needed ([`LagPolicy::Fail`](crate::LagPolicy::Fail)).
    pub lagged: u64,
    /// Streams whose buffer reached the bound and were closed to new joiners.
    pub overflowed: u64,
    /// Upstreams that ended with an error (every reader got it after its chunks).
    pub failed: u64,
    /// Upstreams whose polling panicked (contained; every reader got the panic).
    pub panicked: u64,
    /// Upstreams dropped unfinished because every reader left.
    pub abandoned: u64,
    /// Keys with a shared stream open to joiners right now.
    pub in_flight: u64,
    /// Readers of shared streams right now.
    pub readers: u64,
    /// Bytes of chunks buffered right now, over every stream of the group.
    pub bytes_buffered: u64,
}

backstop_core::counter_set!(
    /// A [`StreamGroup`](crate::StreamGroup)'s counters and gauges, shared with its streams.
    pub(crate) struct StreamCounters => StreamGroupStats {
        streams,
        followers,
        late_joiners,
        unshared,
        chunks,
        lagged,
        overflowed,
        failed,
        panicked,
        abandoned,
        in_flight,
        readers,
        bytes_buffered,
    }
);
