//! Settings of a [`StreamGroup`](crate::StreamGroup): how much it may buffer and what a
//! reader that falls behind that bound gets.

use backstop_core::config::{ConfigError, Validate, ensure, ensure_at_most, ensure_count};
use serde::{Deserialize, Serialize};

/// The largest `max_buffered_bytes` of one shared stream: 1 GiB.
pub const MAX_STREAM_BUFFER_BYTES: usize = 1 << 30;

/// The largest `max_streams`: 2^20 shared streams in flight at once.
pub const MAX_SHARED_STREAMS: usize = 1 << 20;

/// What happens to a reader so far behind that keeping its next chunk would take a shared
/// stream's buffer past `max_buffered_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LagPolicy {
    /// The oldest chunks are dropped and the reader that still needed them gets a typed
    /// lag error as its next item (a [`Rejected`](backstop_core::Rejected) with
    /// [`RejectKind::QueueFull`](backstop_core::RejectKind::QueueFull)), then the end of
    /// its stream. Every other reader, and the upstream, go on at their own pace.
    #[default]
    Fail,
    /// The upstream is not read further until the slowest reader frees room: nobody is
    /// ever cut, but the slowest reader sets the pace of all (backpressure).
    Wait,
}

/// Configuration of a [`StreamGroup`](crate::StreamGroup).
///
/// Memory for chunks is bounded: one shared stream buffers at most `max_buffered_bytes`
/// (as counted by the group's weigher; a single chunk larger than that is still held
/// alone), and at most `max_streams` streams are shared at once, so the whole group holds
/// at most `max_streams × max_buffered_bytes`. A call beyond `max_streams` is served
/// unshared: it reads its own upstream and buffers nothing.
///
/// ```
/// use backstop_dedup::{LagPolicy, StreamShareConfig};
///
/// let config: StreamShareConfig =
///     serde_json::from_str(r#"{ "max_buffered_bytes": 65536, "lag": "wait" }"#).unwrap();
/// assert_eq!(config.lag, LagPolicy::Wait);
/// assert_eq!(config.max_streams, StreamShareConfig::default().max_streams);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamShareConfig {
    /// Most bytes one shared stream buffers (1 to [`MAX_STREAM_BUFFER_BYTES`]). While
    /// under it, the whole stream is kept so a late joiner replays it from the start; past
    /// it, the stream is closed to new joiners (the next identical call starts its own
    /// upstream) and only what readers still need is kept. Default 4 MiB.
    pub max_buffered_bytes: usize,
    /// What a reader that falls behind the bound gets. Default [`LagPolicy::Fail`].
    pub lag: LagPolicy,
    /// Most streams shared at once (1 to [`MAX_SHARED_STREAMS`]). Default 10,000.
    pub max_streams: usize,
}

impl Default for StreamShareConfig {
    fn default() -> Self {
        Self {
            max_buffered_bytes: 4 << 20,
            lag: LagPolicy::Fail,
            max_streams: 10_000,
        }
    }
}

impl Validate for StreamShareConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.max_buffered_bytes > 0,
            "max_buffered_bytes",
            "must be at least 1",
        )?;
        ensure_at_most(
            "max_buffered_bytes",
            self.max_buffered_bytes as u64,
            MAX_STREAM_BUFFER_BYTES as u64,
        )?;
        ensure_count("max_streams", self.max_streams, 1, MAX_SHARED_STREAMS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_and_named() {
        assert!(StreamShareConfig::default().validate().is_ok());
        let too_big = StreamShareConfig {
            max_buffered_bytes: MAX_STREAM_BUFFER_BYTES + 1,
            ..StreamShareConfig::default()
        };
        assert_eq!(
            too_big.validate().unwrap_err().field(),
            "max_buffered_bytes"
        );
        let zero = StreamShareConfig {
            max_streams: 0,
            ..StreamShareConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().field(), "max_streams");
    }
}
