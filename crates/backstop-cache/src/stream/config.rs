//! Settings of a [`StreamCache`](crate::StreamCache).

use backstop_core::config::{ConfigError, Validate, ensure, ensure_at_most};
use serde::{Deserialize, Serialize};

use super::record::ReplayPacing;

/// The largest `max_record_bytes` and `max_recording_bytes`: 1 GiB.
pub const MAX_STREAM_RECORD_BYTES: usize = 1 << 30;

/// How streams are recorded and replayed by a [`StreamCache`](crate::StreamCache).
///
/// Recording memory is bounded twice: one stream is recorded up to `max_record_bytes`
/// (a longer one is passed through but not stored), and all recordings in flight together
/// hold at most `max_recording_bytes` (a recording that would pass it is dropped, and its
/// stream not stored). Bytes are counted by the cache's weigher.
///
/// ```
/// use backstop_cache::{ReplayPacing, StreamCacheConfig};
///
/// let config: StreamCacheConfig =
///     serde_json::from_str(r#"{ "pacing": "original", "max_record_bytes": 1048576 }"#).unwrap();
/// assert_eq!(config.pacing, ReplayPacing::Original);
/// assert!(config.record_timing);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamCacheConfig {
    /// Largest stream stored (1 to [`MAX_STREAM_RECORD_BYTES`]). Default 4 MiB.
    pub max_record_bytes: usize,
    /// Most bytes held by all recordings in flight together (1 to
    /// [`MAX_STREAM_RECORD_BYTES`]). Default 256 MiB.
    pub max_recording_bytes: usize,
    /// Whether the delay before each chunk is stored (needed for
    /// [`ReplayPacing::Original`]). Default `true`.
    pub record_timing: bool,
    /// How hits are replayed. Default [`ReplayPacing::Instant`].
    pub pacing: ReplayPacing,
}

impl Default for StreamCacheConfig {
    fn default() -> Self {
        Self {
            max_record_bytes: 4 << 20,
            max_recording_bytes: 256 << 20,
            record_timing: true,
            pacing: ReplayPacing::Instant,
        }
    }
}

impl Validate for StreamCacheConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_record_bytes", self.max_record_bytes),
            ("max_recording_bytes", self.max_recording_bytes),
        ] {
            ensure(value > 0, field, "must be at least 1")?;
            ensure_at_most(field, value as u64, MAX_STREAM_RECORD_BYTES as u64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_name_the_field() {
        assert!(StreamCacheConfig::default().validate().is_ok());
        let config = StreamCacheConfig {
            max_recording_bytes: MAX_STREAM_RECORD_BYTES + 1,
            ..StreamCacheConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().field(),
            "max_recording_bytes"
        );
        let config = StreamCacheConfig {
            max_record_bytes: 0,
            ..StreamCacheConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), "max_record_bytes");
    }
}
