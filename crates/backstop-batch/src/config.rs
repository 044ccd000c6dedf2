//! How batches are formed, queued and dispatched.

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_count, ensure_duration, ensure_positive_duration,
};
use serde::Deserialize;
use std::time::Duration;

/// The largest `max_batch_size` (and so the largest batch): 2^20 items.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// What happens to queued items when the batcher is closed or dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseMode {
    /// Dispatch everything already queued at once, without waiting for `max_delay`.
    #[default]
    Flush,
    /// Fail every queued item with [`BatchError::Closed`](crate::BatchError::Closed).
    Fail,
}

/// Adaptive mode: the batcher lowers its effective maximum batch size while handler calls
/// take longer than `target_latency`, and raises it again (up to `max_batch_size`) while
/// full batches stay under it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveBatchConfig {
    /// The handler latency per batch to stay under.
    #[serde(with = "backstop_core::duration::human")]
    pub target_latency: Duration,
    /// The effective batch size never goes below this.
    #[serde(default = "one")]
    pub min_batch_size: usize,
}

fn one() -> usize {
    1
}

/// Configuration of a [`Batcher`](crate::Batcher); durations deserialize from human
/// strings such as `"5ms"`.
///
/// Bounds checked by validation: `max_batch_size` is at most [`MAX_BATCH_SIZE`], and every
/// duration at most [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (one year).
///
/// ```
/// use backstop_batch::BatchConfig;
///
/// let config: BatchConfig = serde_json::from_str(r#"{
///     "max_batch_size": 64, "max_delay": "10ms", "preferred_batch_sizes": [32],
///     "queue_timeout": "2s", "priority_levels": 3, "priority_aging": "50ms"
/// }"#).unwrap();
/// assert_eq!(config.max_concurrent_batches, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Largest batch handed to the handler; a key whose queue reaches it dispatches at once.
    pub max_batch_size: usize,
    /// Longest the oldest item of a key waits for its batch to fill before a smaller batch
    /// is dispatched.
    #[serde(with = "backstop_core::duration::human")]
    pub max_delay: Duration,
    /// Sizes the backend handles best (e.g. powers of two). When a key holds at least one
    /// of them, the largest such batch is dispatched without waiting for `max_delay`.
    pub preferred_batch_sizes: Vec<usize>,
    /// Items queued across all keys before `submit` waits and `try_submit` fails.
    pub queue_capacity: usize,
    /// An item still queued after this long is rejected with `QueueTimeout`.
    #[serde(with = "backstop_core::duration::human_option")]
    pub queue_timeout: Option<Duration>,
    /// Batches running in the handler at once; further batches keep filling meanwhile.
    pub max_concurrent_batches: usize,
    /// Number of priority levels; `0` is the lowest, higher levels dispatch first.
    pub priority_levels: usize,
    /// Each time an item has waited this long its effective priority rises one level, so a
    /// steady stream of high-priority work cannot starve lower levels. `None` = strict.
    #[serde(with = "backstop_core::duration::human_option")]
    pub priority_aging: Option<Duration>,
    /// What `close()` and dropping the batcher do with queued items.
    pub on_close: CloseMode,
    /// Adjust the effective batch size toward a handler latency target; `None` = fixed.
    pub adaptive: Option<AdaptiveBatchConfig>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_delay: Duration::from_millis(5),
            preferred_batch_sizes: Vec::new(),
            queue_capacity: 1024,
            queue_timeout: None,
            max_concurrent_batches: 1,
            priority_levels: 1,
            priority_aging: Some(Duration::from_millis(100)),
            on_close: CloseMode::Flush,
            adaptive: None,
        }
    }
}

impl Validate for BatchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_count("max_batch_size", self.max_batch_size, 1, MAX_BATCH_SIZE)?;
        ensure_duration("max_delay", self.max_delay)?;
        if let Some(timeout) = self.queue_timeout {
            ensure_positive_duration("queue_timeout", timeout)?;
        }
        if let Some(aging) = self.priority_aging {
            ensure_positive_duration("priority_aging", aging)?;
        }
        ensure(
            (1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&self.queue_capacity),
            "queue_capacity",
            "must be at least 1 and at most 2^61",
        )?;
        ensure(
            self.max_concurrent_batches > 0,
            "max_concurrent_batches",
            "must be at least 1",
        )?;
        ensure(
            (1..=256).contains(&self.priority_levels),
            "priority_levels",
            "must be between 1 and 256",
        )?;
        ensure(
            self.preferred_batch_sizes
                .iter()
                .all(|size| (1..=self.max_batch_size).contains(size)),
            "preferred_batch_sizes",
            "must each be between 1 and max_batch_size",
        )?;
        if let Some(adaptive) = &self.adaptive {
            ensure_positive_duration("adaptive.target_latency", adaptive.target_latency)?;
            ensure(
                (1..=self.max_batch_size).contains(&adaptive.min_batch_size),
                "adaptive.min_batch_size",
                "must be between 1 and max_batch_size",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        BatchConfig::default().validate().unwrap();
    }

    #[test]
    fn each_rule_names_its_field() {
        type Breaks = fn(&mut BatchConfig);
        let cases: Vec<(Breaks, &str)> = vec![
            (|c| c.max_batch_size = 0, "max_batch_size"),
            (|c| c.max_batch_size = 1 << 40, "max_batch_size"),
            (|c| c.max_batch_size = MAX_BATCH_SIZE + 1, "max_batch_size"),
            (|c| c.max_delay = Duration::MAX, "max_delay"),
            (|c| c.queue_timeout = Some(Duration::MAX), "queue_timeout"),
            (|c| c.priority_aging = Some(Duration::MAX), "priority_aging"),
            (
                |c| {
                    c.adaptive = Some(AdaptiveBatchConfig {
                        target_latency: Duration::MAX,
                        min_batch_size: 1,
                    })
                },
                "adaptive.target_latency",
            ),
            (|c| c.queue_capacity = 0, "queue_capacity"),
            (|c| c.max_concurrent_batches = 0, "max_concurrent_batches"),
            (|c| c.priority_levels = 0, "priority_levels"),
            (|c| c.priority_levels = 300, "priority_levels"),
            (
                |c| c.preferred_batch_sizes = vec![64],
                "preferred_batch_sizes",
            ),
            (
                |c| c.preferred_batch_sizes = vec![0],
                "preferred_batch_sizes",
            ),
            (|c| c.queue_timeout = Some(Duration::ZERO), "queue_timeout"),
            (
                |c| c.priority_aging = Some(Duration::ZERO),
                "priority_aging",
            ),
        ];
        for (breaks, field) in cases {
            let mut config = BatchConfig::default();
            breaks(&mut config);
            assert_eq!(config.validate().unwrap_err().field(), field);
        }
    }

    #[test]
    fn deserializes_human_durations_and_rejects_unknown_fields() {
        let config: BatchConfig = serde_json::from_str(
            r#"{"max_delay": "250us", "queue_timeout": "1s", "on_close": "fail",
                "adaptive": {"target_latency": "40ms"}}"#,
        )
        .unwrap();
        assert_eq!(config.max_delay, Duration::from_micros(250));
        assert_eq!(config.queue_timeout, Some(Duration::from_secs(1)));
        assert_eq!(config.on_close, CloseMode::Fail);
        assert_eq!(config.adaptive.map(|a| a.min_batch_size), Some(1));
        assert!(serde_json::from_str::<BatchConfig>(r#"{"max_size": 3}"#).is_err());
    }
}
