//! Adaptive batch size: additive increase, multiplicative decrease toward a latency target.

use crate::config::AdaptiveBatchConfig;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The effective maximum batch size, moved after every batch by how long the handler took.
///
/// Handler latency grows with batch size on every batched backend (`a + b·n`), so the
/// largest batch that keeps a call under the target is found the way TCP finds a window:
/// a call over the target shrinks the limit by a quarter, a full batch under it grows the
/// limit by one. Batches smaller than the limit say nothing about a larger one.
pub(crate) struct AdaptiveLimit {
    target: Duration,
    min: usize,
    max: usize,
    current: AtomicUsize,
}

impl AdaptiveLimit {
    pub(crate) fn new(config: &AdaptiveBatchConfig, max: usize) -> Self {
        Self {
            target: config.target_latency,
            min: config.min_batch_size,
            max,
            current: AtomicUsize::new(max),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Records one finished batch; returns the new limit when it changed.
    pub(crate) fn observe(&self, size: usize, latency: Duration) -> Option<usize> {
        let update = |current: usize| {
            let next = if latency > self.target {
                (current * 3 / 4)
                    .min(current.saturating_sub(1))
                    .max(self.min)
            } else if size >= current {
                (current + 1).min(self.max)
            } else {
                current
            };
            (next != current).then_some(next)
        };
        self.current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update)
            .ok()
            .and_then(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: usize, min: usize) -> AdaptiveLimit {
        let config = AdaptiveBatchConfig {
            target_latency: Duration::from_millis(10),
            min_batch_size: min,
        };
        AdaptiveLimit::new(&config, max)
    }

    #[test]
    fn shrinks_by_a_quarter_over_target_and_grows_by_one_when_full() {
        let adaptive = limit(64, 2);
        assert_eq!(adaptive.observe(64, Duration::from_millis(30)), Some(48));
        assert_eq!(adaptive.observe(10, Duration::from_millis(5)), None);
        assert_eq!(adaptive.observe(48, Duration::from_millis(5)), Some(49));
        for _ in 0..40 {
            adaptive.observe(1, Duration::from_millis(30));
        }
        assert_eq!(adaptive.limit(), 2);
        for _ in 0..100 {
            adaptive.observe(adaptive.limit(), Duration::from_millis(1));
        }
        assert_eq!(adaptive.limit(), 64);
    }

    #[test]
    fn a_limit_of_one_stays_at_one() {
        let adaptive = limit(1, 1);
        assert_eq!(adaptive.observe(1, Duration::from_secs(1)), None);
        assert_eq!(adaptive.observe(1, Duration::ZERO), None);
        assert_eq!(adaptive.limit(), 1);
    }
}
