//! The hedge delay: the observed percentile latency over a sliding window of attempts.

use crate::config::HedgeConfig;
use backstop_core::{Histogram, HistogramSnapshot};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Records successful attempts' latencies; every `window` of them, recomputes the
/// percentile over that window (older windows drop out, so the delay follows the service).
#[derive(Debug)]
pub(crate) struct HedgeDelay {
    config: HedgeConfig,
    latencies: Histogram,
    /// The histogram when the current window began.
    window_start: Mutex<HistogramSnapshot>,
    recorded: AtomicU64,
    /// The current delay in nanoseconds; zero until the first window is full.
    delay_nanos: AtomicU64,
}

impl HedgeDelay {
    pub(crate) fn new(config: HedgeConfig) -> Self {
        Self {
            config,
            latencies: Histogram::new(),
            window_start: Mutex::new(HistogramSnapshot::empty()),
            recorded: AtomicU64::new(0),
            delay_nanos: AtomicU64::new(0),
        }
    }

    /// The delay after which a hedge starts, once a window has been observed.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.delay_nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        self.latencies.record(latency);
        let window = u64::from(self.config.window);
        if self.recorded.fetch_add(1, Ordering::Relaxed) + 1 < window {
            return;
        }
        // One recorder rotates the window; the others carry on without waiting.
        let Some(mut start) = self.window_start.try_lock() else {
            return;
        };
        let now = self.latencies.snapshot();
        let recent = now.since(&start);
        if recent.count() < window {
            return;
        }
        // Interpolated within the bucket holding the percentile: a bucket is 1/16 of its
        // value wide, and its top or middle would fire hedges late or early by up to that.
        let delay = recent
            .quantile_interpolated(self.config.percentile)
            .max(self.config.min_delay)
            .max(Duration::from_nanos(1));
        self.delay_nanos
            .store(backstop_core::time::nanos(delay).max(1), Ordering::Relaxed);
        *start = now;
        self.recorded.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_the_percentile_of_the_latest_full_window() {
        let hedge = HedgeDelay::new(HedgeConfig {
            percentile: 0.9,
            window: 100,
            ..HedgeConfig::default()
        });
        for ms in 1..100 {
            hedge.record(Duration::from_millis(ms));
        }
        assert_eq!(hedge.delay(), None);
        hedge.record(Duration::from_millis(100));
        // Interpolated within its 4 ms bucket: the 90th of 100 values 1..=100 ms.
        let first = hedge.delay().unwrap();
        assert!(
            (Duration::from_millis(89)..=Duration::from_millis(91)).contains(&first),
            "{first:?}"
        );
        // The service got faster: the next window's delay follows it.
        for _ in 0..100 {
            hedge.record(Duration::from_millis(5));
        }
        let second = hedge.delay().unwrap();
        assert!(second <= Duration::from_micros(5_400), "{second:?}");
    }
}
