//! A lock-free latency histogram for wait and call times (p50/p95/p99 without a lock).
//!
//! Values are recorded in microseconds into log-linear buckets: exact below 16 µs, then 16
//! buckets per power of two, so any quantile is within 1/16 (6.25 %) of the true value.
//! Recording is three relaxed atomic adds; the buckets cover up to about 19 hours and
//! longer values land in the last bucket.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BUCKET_BITS: u32 = 4;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
const MAX_EXPONENT: u32 = 36;
const BUCKETS: usize = (MAX_EXPONENT - SUB_BUCKET_BITS + 2) as usize * SUB_BUCKETS;
const MAX_MICROS: u64 = (1 << (MAX_EXPONENT + 1)) - 1;

fn bucket_of(micros: u64) -> usize {
    let micros = micros.min(MAX_MICROS);
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    let shift = exponent - SUB_BUCKET_BITS;
    let sub = (micros >> shift) as usize & (SUB_BUCKETS - 1);
    (shift as usize + 1) * SUB_BUCKETS + sub
}

/// The smallest value that falls into `bucket`.
fn bucket_floor(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let shift = (bucket / SUB_BUCKETS - 1) as u32;
    let sub = (bucket % SUB_BUCKETS) as u64;
    (SUB_BUCKETS as u64 + sub) << shift
}

/// The largest value that falls into `bucket` (the buckets are contiguous).
fn bucket_ceiling(bucket: usize) -> u64 {
    bucket_floor(bucket + 1) - 1
}

/// A concurrent histogram of durations; share it by reference or `Arc`.
///
/// ```
/// use backstop_core::Histogram;
/// use std::time::Duration;
///
/// let waits = Histogram::new();
/// for ms in 1..=100 {
///     waits.record(Duration::from_millis(ms));
/// }
/// let summary = waits.snapshot().summary();
/// assert_eq!(summary.count, 100);
/// let p95 = summary.p95.as_secs_f64();
/// assert!((0.095..=0.095 * 1.0625).contains(&p95), "{p95}");
/// ```
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram (about 4 KiB of counters).
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    /// Records one value, rounded down to whole microseconds.
    pub fn record(&self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// A copy of the counters. Taken without a lock, so under concurrent recording the
    /// total may lag the buckets by the few values recorded meanwhile.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|bucket| bucket.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
            max_micros: self.max_micros.load(Ordering::Relaxed),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Histogram")
            .field(&self.snapshot().summary())
            .finish()
    }
}

/// The counters of a [`Histogram`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    buckets: Vec<u64>,
    count: u64,
    sum_micros: u64,
    max_micros: u64,
}

/// The same as [`HistogramSnapshot::empty`].
impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self::empty()
    }
}

impl HistogramSnapshot {
    /// An empty histogram with the same buckets as [`Histogram`], recorded into through
    /// `&mut` by one owner: for values recorded under a lock the owner holds anyway,
    /// where plain adds are cheaper than [`Histogram`]'s atomic ones.
    ///
    /// ```
    /// use backstop_core::HistogramSnapshot;
    /// use std::time::Duration;
    ///
    /// let mut held = HistogramSnapshot::empty();
    /// held.record(Duration::from_millis(3));
    /// assert_eq!(held.summary().max, Duration::from_millis(3));
    /// ```
    pub fn empty() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_micros: 0,
            max_micros: 0,
        }
    }

    /// Records one value, rounded down to whole microseconds.
    pub fn record(&mut self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)] += 1;
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    /// Records `count` equal values at once: for a count kept elsewhere, such as a pool's
    /// checkouts that never waited (zero waits counted on a striped counter).
    ///
    /// ```
    /// use backstop_core::HistogramSnapshot;
    /// use std::time::Duration;
    ///
    /// let mut waits = HistogramSnapshot::empty();
    /// waits.record(Duration::from_millis(40));
    /// waits.record_many(Duration::ZERO, 99);
    /// assert_eq!((waits.count(), waits.quantile(0.5)), (100, Duration::ZERO));
    /// ```
    pub fn record_many(&mut self, value: Duration, count: u64) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        let bucket = &mut self.buckets[bucket_of(micros)];
        *bucket = bucket.saturating_add(count);
        self.count = self.count.saturating_add(count);
        self.sum_micros = self.sum_micros.saturating_add(micros.saturating_mul(count));
        if count > 0 {
            self.max_micros = self.max_micros.max(micros);
        }
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean of the recorded values; zero when empty.
    pub fn mean(&self) -> Duration {
        match self.sum_micros.checked_div(self.count) {
            Some(mean) => Duration::from_micros(mean),
            None => Duration::ZERO,
        }
    }

    /// The `q`-quantile (`q` in 0..=1, clamped), as the top of the bucket holding it, never
    /// above the largest value seen; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(bucket_ceiling(bucket).min(self.max_micros));
            }
        }
        Duration::from_micros(self.max_micros)
    }

    /// The `q`-quantile (`q` in 0..=1, clamped) interpolated linearly within the bucket
    /// holding it, as if that bucket's values were spread evenly over it (as Prometheus'
    /// `histogram_quantile` does), never above the largest value seen; zero when empty.
    ///
    /// [`quantile`](Self::quantile) answers with the bucket's top, up to 1/16 above the true
    /// value; this estimate moves through the bucket with `q`, for a decision taken on the
    /// value itself (a hedge delay) rather than a bound on it.
    ///
    /// ```
    /// use backstop_core::HistogramSnapshot;
    /// use std::time::Duration;
    ///
    /// let mut latencies = HistogramSnapshot::empty();
    /// for ms in 1..=1_000 {
    ///     latencies.record(Duration::from_millis(ms));
    /// }
    /// let p97 = latencies.quantile_interpolated(0.97).as_secs_f64();
    /// assert!((0.969..=0.971).contains(&p97), "{p97}");
    /// ```
    pub fn quantile_interpolated(&self, q: f64) -> Duration {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let position = q * total as f64;
        let mut below = 0;
        for (bucket, &count) in self.buckets.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= position {
                // Whole microseconds in [floor, ceiling]: the bucket spans up to ceiling + 1.
                let floor = bucket_floor(bucket) as f64;
                let width = (bucket_ceiling(bucket) + 1) as f64 - floor;
                let within = ((position - below as f64) / count as f64).clamp(0.0, 1.0);
                let micros = (floor + width * within).min(self.max_micros as f64);
                return Duration::from_secs_f64(micros / 1e6);
            }
            below += count;
        }
        Duration::from_micros(self.max_micros)
    }

    /// The values recorded after `earlier` was taken (both from the same histogram), for
    /// figures over a recent window rather than since start. The maximum is kept from
    /// `self`, as a maximum cannot be subtracted.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(now, before)| now.saturating_sub(*before))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
            max_micros: self.max_micros,
        }
    }

    /// Count, mean, p50, p95, p99 and max, ready to serialize.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            mean: self.mean(),
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: Duration::from_micros(self.max_micros),
        }
    }
}

/// The usual latency figures of a histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean value.
    #[serde(with = "crate::duration::human")]
    pub mean: Duration,
    /// Median.
    #[serde(with = "crate::duration::human")]
    pub p50: Duration,
    /// 95th percentile.
    #[serde(with = "crate::duration::human")]
    pub p95: Duration,
    /// 99th percentile.
    #[serde(with = "crate::duration::human")]
    pub p99: Duration,
    /// Largest value.
    #[serde(with = "crate::duration::human")]
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_histogram_reports_zeros() {
        let summary = Histogram::new().snapshot().summary();
        assert_eq!(summary, LatencySummary::default());
    }

    #[test]
    fn small_values_are_exact() {
        let histogram = Histogram::new();
        for micros in [3, 3, 7, 15] {
            histogram.record(Duration::from_micros(micros));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.quantile(0.5), Duration::from_micros(3));
        assert_eq!(snapshot.quantile(0.75), Duration::from_micros(7));
        assert_eq!(snapshot.quantile(1.0), Duration::from_micros(15));
        assert_eq!(snapshot.mean(), Duration::from_micros(7));
    }

    #[test]
    fn huge_values_saturate_into_the_last_bucket() {
        let histogram = Histogram::new();
        histogram.record(Duration::from_secs(365 * 86_400));
        assert_eq!(histogram.snapshot().count(), 1);
        assert!(histogram.snapshot().quantile(1.0) >= Duration::from_secs(19 * 3600));
    }

    #[test]
    fn since_keeps_only_the_newer_values() {
        let histogram = Histogram::new();
        histogram.record(Duration::from_secs(10));
        let before = histogram.snapshot();
        histogram.record(Duration::from_millis(1));
        let recent = histogram.snapshot().since(&before);
        assert_eq!(recent.count(), 1);
        let newest = recent.quantile(1.0);
        assert!(newest >= Duration::from_millis(1) && newest < Duration::from_micros(1063));
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let histogram = Histogram::new();
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let histogram = &histogram;
                scope.spawn(move || {
                    for i in 0..1000 {
                        histogram.record(Duration::from_micros(thread * 1000 + i));
                    }
                });
            }
        });
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 4000);
        assert_eq!(snapshot.buckets.iter().sum::<u64>(), 4000);
    }

    #[test]
    fn bucket_ceilings_are_increasing_and_contain_their_values() {
        for bucket in 1..BUCKETS {
            assert!(bucket_ceiling(bucket) > bucket_ceiling(bucket - 1));
            assert_eq!(bucket_of(bucket_ceiling(bucket)), bucket);
            assert_eq!(bucket_of(bucket_floor(bucket)), bucket);
            assert_eq!(bucket_of(bucket_floor(bucket) - 1), bucket - 1);
        }
        assert_eq!(bucket_ceiling(BUCKETS - 1), MAX_MICROS);
    }

    /// Records `values` (in microseconds) and sorts them; returns the snapshot and the true
    /// quantile `q`, the value at its rank.
    fn record_sorted(values: &mut [u64], q: f64) -> (HistogramSnapshot, u64) {
        let histogram = Histogram::new();
        for micros in values.iter() {
            histogram.record(Duration::from_micros(*micros));
        }
        values.sort_unstable();
        let rank = ((q * values.len() as f64).ceil() as usize).max(1);
        (histogram.snapshot(), values[rank - 1])
    }

    proptest! {
        /// Against a sorted list: the reported quantile is never below the true one and at
        /// most 1/16 above it.
        #[test]
        fn quantiles_match_a_sorted_reference(
            mut values in proptest::collection::vec(0u64..50_000_000, 1..300),
            q in 0.0f64..=1.0,
        ) {
            let (snapshot, truth) = record_sorted(&mut values, q);
            let reported = snapshot.quantile(q).as_micros() as u64;
            prop_assert!(reported >= truth, "reported {} < truth {}", reported, truth);
            prop_assert!(reported <= truth + truth / 16 + 1, "reported {} far above {}", reported, truth);
        }

        /// The interpolated quantile stays inside the bucket of the value at its rank (so
        /// within 1/16 of it) and never above the largest value.
        #[test]
        fn interpolated_quantiles_stay_in_the_bucket_of_the_true_value(
            mut values in proptest::collection::vec(0u64..50_000_000, 1..300),
            q in 0.0f64..=1.0,
        ) {
            let (snapshot, truth) = record_sorted(&mut values, q);
            let bucket = bucket_of(truth);
            let reported = snapshot.quantile_interpolated(q).as_secs_f64() * 1e6;
            let (low, high) = (bucket_floor(bucket) as f64, (bucket_ceiling(bucket) + 1) as f64);
            prop_assert!(reported >= low - 1e-3, "reported {} below bucket {}", reported, low);
            prop_assert!(reported <= high.min(values[values.len() - 1] as f64) + 1e-3, "reported {} above {}", reported, high);
        }
    }
}
