//! The samples of one window, gathered with plain atomics on every release and summarised
//! once per window for the algorithm.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one window measured: the input of every limit algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowSummary {
    /// Mean latency of the window's successful and failed calls, in nanoseconds.
    pub(crate) mean_rtt: f64,
    /// Calls the backend reported as overloaded, or that were cancelled.
    pub(crate) drops: u64,
    /// The most calls in flight when any of the window's calls started.
    pub(crate) max_in_flight: u64,
}

impl WindowSummary {
    /// Whether the window used less than half of `limit`: the caller, not the limit, held
    /// concurrency down, so the latency says nothing about a higher limit.
    pub(crate) fn app_limited(&self, limit: f64) -> bool {
        (self.max_in_flight as f64) * 2.0 < limit
    }
}

/// A window's summary, for the algorithms' tests.
#[cfg(test)]
pub(crate) fn window(mean_rtt: f64, drops: u64, max_in_flight: u64) -> WindowSummary {
    WindowSummary {
        mean_rtt,
        drops,
        max_in_flight,
    }
}

/// Accumulators for the window in progress.
#[derive(Debug, Default)]
pub(crate) struct WindowSamples {
    count: AtomicU64,
    rtt_sum: AtomicU64,
    drops: AtomicU64,
    max_in_flight: AtomicU64,
}

impl WindowSamples {
    #[inline]
    pub(crate) fn record_rtt(&self, rtt_nanos: u64, in_flight: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.rtt_sum.fetch_add(rtt_nanos, Ordering::Relaxed);
        self.note_in_flight(in_flight);
    }

    #[inline]
    pub(crate) fn record_drop(&self, in_flight: u64) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        self.note_in_flight(in_flight);
    }

    #[inline]
    fn note_in_flight(&self, in_flight: u64) {
        // A load first: the peak rarely moves, and a load is cheaper than a read-modify-write.
        if in_flight > self.max_in_flight.load(Ordering::Relaxed) {
            self.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        }
    }

    /// Samples gathered so far (latencies and drops).
    pub(crate) fn len(&self) -> u64 {
        self.count
            .load(Ordering::Relaxed)
            .saturating_add(self.drops.load(Ordering::Relaxed))
    }

    /// The window's summary, resetting the accumulators for the next window. A sample
    /// racing with the reset lands in one window or the next, never in neither.
    pub(crate) fn take(&self) -> WindowSummary {
        let count = self.count.swap(0, Ordering::Relaxed);
        let rtt_sum = self.rtt_sum.swap(0, Ordering::Relaxed);
        let drops = self.drops.swap(0, Ordering::Relaxed);
        let max_in_flight = self.max_in_flight.swap(0, Ordering::Relaxed);
        WindowSummary {
            mean_rtt: if count == 0 {
                0.0
            } else {
                rtt_sum as f64 / count as f64
            },
            drops,
            max_in_flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_and_resets() {
        let samples = WindowSamples::default();
        samples.record_rtt(10, 3);
        samples.record_rtt(30, 7);
        samples.record_drop(5);
        assert_eq!(samples.len(), 3);
        let summary = samples.take();
        assert_eq!(
            summary,
            WindowSummary {
                mean_rtt: 20.0,
                drops: 1,
                max_in_flight: 7
            }
        );
        assert_eq!(samples.len(), 0);
        assert_eq!(samples.take().mean_rtt, 0.0);
    }

    #[test]
    fn app_limited_below_half_the_limit() {
        let w = |max_in_flight| WindowSummary {
            mean_rtt: 1.0,
            drops: 0,
            max_in_flight,
        };
        assert!(w(4).app_limited(10.0));
        assert!(!w(5).app_limited(10.0));
    }
}
