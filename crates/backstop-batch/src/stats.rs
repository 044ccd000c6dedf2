//! Counters and histograms behind `Batcher::stats()`.

use backstop_core::{Histogram, HistogramSnapshot, LatencySummary};
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How far back the queue wait reported through `LoadSignal` looks: between one and two
/// windows, so an autoscaler sees today's waits, not the average since start.
pub(crate) const LOAD_WINDOW: Duration = Duration::from_secs(10);

/// Baselines of the wait histogram at the start of the previous and current windows.
struct WaitWindow {
    started: Instant,
    previous: HistogramSnapshot,
    current: HistogramSnapshot,
}

use crate::queue::DispatchReason;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) rejected_timeout: AtomicU64,
    pub(crate) rejected_closed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) dispatched_full: AtomicU64,
    pub(crate) dispatched_preferred: AtomicU64,
    pub(crate) dispatched_timeout: AtomicU64,
    pub(crate) dispatched_flush: AtomicU64,
    pub(crate) handler_errors: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    pub(crate) callback_panics: AtomicU64,
    pub(crate) dispatcher_panics: AtomicU64,
    pub(crate) result_count_mismatches: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub(crate) struct Recorder {
    pub(crate) counters: Counters,
    pub(crate) queue_wait: Histogram,
    pub(crate) handler_time: Histogram,
    batch_sizes: SizeCounts,
    wait_window: Mutex<WaitWindow>,
}

impl Recorder {
    pub(crate) fn new(max_batch_size: usize) -> Self {
        let queue_wait = Histogram::new();
        let empty = queue_wait.snapshot();
        Self {
            wait_window: Mutex::new(WaitWindow {
                started: Instant::now(),
                previous: empty.clone(),
                current: empty,
            }),
            counters: Counters::default(),
            queue_wait,
            handler_time: Histogram::new(),
            batch_sizes: SizeCounts::new(max_batch_size),
        }
    }

    /// Queue waits recorded over the last one to two [`LOAD_WINDOW`]s.
    pub(crate) fn recent_waits(&self, now: Instant) -> HistogramSnapshot {
        let latest = self.queue_wait.snapshot();
        let mut window = self.wait_window.lock();
        let age = now.saturating_duration_since(window.started);
        if age >= LOAD_WINDOW {
            window.previous = if age >= LOAD_WINDOW * 2 {
                latest.clone()
            } else {
                std::mem::replace(&mut window.current, latest.clone())
            };
            window.current = latest.clone();
            window.started = now;
        }
        latest.since(&window.previous)
    }

    pub(crate) fn dispatched(&self, size: usize, reason: DispatchReason) {
        let counters = &self.counters;
        bump(&counters.batches, 1);
        bump(
            match reason {
                DispatchReason::Full => &counters.dispatched_full,
                DispatchReason::Preferred => &counters.dispatched_preferred,
                DispatchReason::Timeout => &counters.dispatched_timeout,
                DispatchReason::Flush => &counters.dispatched_flush,
            },
            1,
        );
        self.batch_sizes.record(size);
    }

    pub(crate) fn snapshot(&self, effective_max_batch_size: usize) -> BatchStats {
        let c = &self.counters;
        let queue_wait = self.queue_wait.snapshot();
        let handler_time = self.handler_time.snapshot();
        BatchStats {
            submitted: read(&c.submitted),
            succeeded: read(&c.succeeded),
            failed: read(&c.failed),
            rejected_full: read(&c.rejected_full),
            rejected_timeout: read(&c.rejected_timeout),
            rejected_closed: read(&c.rejected_closed),
            cancelled: read(&c.cancelled),
            discarded: read(&c.discarded),
            batches: read(&c.batches),
            dispatch_reasons: DispatchCounts {
                full: read(&c.dispatched_full),
                preferred: read(&c.dispatched_preferred),
                timeout: read(&c.dispatched_timeout),
                flush: read(&c.dispatched_flush),
            },
            handler_errors: read(&c.handler_errors),
            handler_panics: read(&c.handler_panics),
            callback_panics: read(&c.callback_panics),
            dispatcher_panics: read(&c.dispatcher_panics),
            result_count_mismatches: read(&c.result_count_mismatches),
            queued: read(&c.queued),
            in_flight_batches: read(&c.in_flight),
            effective_max_batch_size,
            batch_size: self.batch_sizes.summary(),
            queue_wait: queue_wait.summary(),
            handler_latency: handler_time.summary(),
            queue_wait_histogram: queue_wait,
            handler_histogram: handler_time,
        }
    }
}

/// Sizes counted one by one up to this; above it, one bucket per power of two.
const EXACT_SIZES: usize = 1_024;
/// Power-of-two buckets above [`EXACT_SIZES`]: `(2^10, 2^11]` up to `(2^20, 2^21]`, the last
/// also taking anything larger.
const LOG_BUCKETS: usize = 11;

/// Dispatched batches by size, in memory bounded whatever `max_batch_size` is: exact for
/// the sizes nearly every backend uses, power-of-two buckets beyond (so percentiles above
/// 1,024 are rounded up to the bucket's bound; mean and max stay exact).
struct SizeCounts {
    /// `exact[n]` counts batches of `n` items.
    exact: Box<[AtomicU64]>,
    large: [AtomicU64; LOG_BUCKETS],
    items: AtomicU64,
    max: AtomicUsize,
}

impl SizeCounts {
    fn new(max_batch_size: usize) -> Self {
        Self {
            exact: (0..=max_batch_size.min(EXACT_SIZES))
                .map(|_| AtomicU64::new(0))
                .collect(),
            large: Default::default(),
            items: AtomicU64::new(0),
            max: AtomicUsize::new(0),
        }
    }

    /// The bucket of a size above [`EXACT_SIZES`].
    fn large_bucket(size: usize) -> usize {
        let bits = (usize::BITS - (size - 1).leading_zeros()) as usize;
        bits.saturating_sub(11).min(LOG_BUCKETS - 1)
    }

    fn record(&self, size: usize) {
        let slot = match self.exact.get(size) {
            Some(slot) => slot,
            None => &self.large[Self::large_bucket(size.max(EXACT_SIZES + 1))],
        };
        bump(slot, 1);
        bump(&self.items, size as u64);
        self.max.fetch_max(size, Ordering::Relaxed);
    }

    fn summary(&self) -> BatchSizeSummary {
        let max = self.max.load(Ordering::Relaxed);
        let exact = self
            .exact
            .iter()
            .enumerate()
            .map(|(size, n)| (size, read(n)));
        let large = self
            .large
            .iter()
            .enumerate()
            .map(|(bucket, n)| ((1usize << (bucket + 11)).min(max), read(n)));
        let buckets: Vec<(usize, u64)> = exact.chain(large).collect();
        BatchSizeSummary::from_buckets(&buckets, read(&self.items), max)
    }
}

/// Batches dispatched, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DispatchCounts {
    /// The key's queue reached `max_batch_size`.
    pub full: u64,
    /// A preferred batch size was reached.
    pub preferred: u64,
    /// The oldest item waited `max_delay`.
    pub timeout: u64,
    /// Flushed on close.
    pub flush: u64,
}

/// Distribution of dispatched batch sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BatchSizeSummary {
    /// Mean items per batch.
    pub mean: f64,
    /// Median batch size.
    pub p50: usize,
    /// 95th-percentile batch size.
    pub p95: usize,
    /// 99th-percentile batch size.
    pub p99: usize,
    /// Largest batch dispatched.
    pub max: usize,
}

impl BatchSizeSummary {
    #[cfg(test)]
    fn from_counts(counts: &[u64]) -> Self {
        let buckets: Vec<(usize, u64)> = counts.iter().copied().enumerate().collect();
        let items = buckets.iter().map(|(size, n)| *size as u64 * n).sum();
        let max = counts.iter().rposition(|n| *n > 0).unwrap_or(0);
        Self::from_buckets(&buckets, items, max)
    }

    /// From `(size, batches)` pairs in increasing size, the total items and the largest
    /// batch.
    fn from_buckets(buckets: &[(usize, u64)], items: u64, max: usize) -> Self {
        let total: u64 = buckets.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Self::default();
        }
        let quantile = |q: f64| {
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for &(size, n) in buckets {
                seen += n;
                if seen >= rank {
                    return size;
                }
            }
            max
        };
        Self {
            mean: items as f64 / total as f64,
            p50: quantile(0.5),
            p95: quantile(0.95),
            p99: quantile(0.99),
            max,
        }
    }
}

/// A point-in-time view of a batcher, ready to serialize.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BatchStats {
    /// Items accepted into the queue.
    pub submitted: u64,
    /// Items that received a response.
    pub succeeded: u64,
    /// Items whose batch failed (handler error, panic or wrong result count).
    pub failed: u64,
    /// `try_submit` calls rejected because the queue was full.
    pub rejected_full: u64,
    /// Items rejected after waiting longer than `queue_timeout`.
    pub rejected_timeout: u64,
    /// Items rejected because the batcher was closed.
    pub rejected_closed: u64,
    /// Items removed from the queue because their caller went away before dispatch.
    pub cancelled: u64,
    /// Results dropped because their caller went away after dispatch.
    pub discarded: u64,
    /// Batches dispatched.
    pub batches: u64,
    /// Batches dispatched, by reason.
    pub dispatch_reasons: DispatchCounts,
    /// Batches the handler failed with an error.
    pub handler_errors: u64,
    /// Batches whose handler panicked.
    pub handler_panics: u64,
    /// Items refused because their key or priority closure panicked.
    pub callback_panics: u64,
    /// Dispatcher iterations that panicked (user `Hash`/`Eq` of the key); each was caught
    /// and logged, and the dispatcher kept running.
    pub dispatcher_panics: u64,
    /// Batches whose handler returned the wrong number of results.
    pub result_count_mismatches: u64,
    /// Items queued now.
    pub queued: u64,
    /// Batches in the handler now.
    pub in_flight_batches: u64,
    /// The batch size limit in force: `max_batch_size`, or lower in adaptive mode.
    pub effective_max_batch_size: usize,
    /// Sizes of dispatched batches.
    pub batch_size: BatchSizeSummary,
    /// Time items waited in the queue before dispatch.
    pub queue_wait: LatencySummary,
    /// Time the handler took per batch.
    pub handler_latency: LatencySummary,
    /// Every queue wait since creation, bucketed: what a metrics exporter publishes as a
    /// histogram (`queue_wait` summarises it). Not serialized.
    #[serde(skip)]
    pub queue_wait_histogram: HistogramSnapshot,
    /// Every handler call's duration since creation, bucketed (`handler_latency`
    /// summarises it). Not serialized.
    #[serde(skip)]
    pub handler_histogram: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_waits_forget_windows_older_than_two() {
        let recorder = Recorder::new(4);
        let start = Instant::now();
        recorder.queue_wait.record(Duration::from_secs(5));
        assert_eq!(recorder.recent_waits(start).count(), 1);
        // Rotated once: the old value is still inside the previous window.
        recorder.queue_wait.record(Duration::from_millis(1));
        let one_window = recorder.recent_waits(start + LOAD_WINDOW);
        assert_eq!(one_window.count(), 2);
        // Rotated again: only what came after the first rotation remains.
        let two_windows = recorder.recent_waits(start + LOAD_WINDOW * 2);
        assert_eq!(two_windows.count(), 0);
        recorder.queue_wait.record(Duration::from_millis(2));
        let later = recorder.recent_waits(start + LOAD_WINDOW * 5);
        assert_eq!(later.count(), 0);
        recorder.queue_wait.record(Duration::from_millis(3));
        let recent = recorder.recent_waits(start + LOAD_WINDOW * 5);
        assert_eq!(
            (recent.count(), recent.mean()),
            (1, Duration::from_millis(3))
        );
    }

    #[test]
    fn size_counts_stay_small_for_the_largest_batch_size() {
        let counts = SizeCounts::new(crate::config::MAX_BATCH_SIZE);
        assert_eq!(counts.exact.len(), EXACT_SIZES + 1);
        for size in [3, 3, 5_000, 1 << 20] {
            counts.record(size);
        }
        let summary = counts.summary();
        assert_eq!(summary.max, 1 << 20);
        assert_eq!(summary.p50, 3);
        assert_eq!(summary.p99, 1 << 20);
        assert_eq!(summary.mean, (6 + 5_000 + (1 << 20)) as f64 / 4.0);
        // A size past every bound (a config that skipped validation) lands in the last
        // bucket instead of out of range.
        counts.record(usize::MAX / 2);
        assert_eq!(counts.summary().max, usize::MAX / 2);
        assert_eq!(SizeCounts::large_bucket(1_025), 0);
        assert_eq!(SizeCounts::large_bucket(2_049), 1);
    }

    #[test]
    fn batch_size_summary_reads_the_counts() {
        // Two batches of 1, one of 4, one of 8.
        let summary = BatchSizeSummary::from_counts(&[0, 2, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(summary.mean, 3.5);
        assert_eq!((summary.p50, summary.p95, summary.max), (1, 8, 8));
        assert_eq!(
            BatchSizeSummary::from_counts(&[0, 0]),
            BatchSizeSummary::default()
        );
    }
}
