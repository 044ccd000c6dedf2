//! A `backstop_core::Histogram` published as a real histogram through the facade.

use backstop_core::HistogramSnapshot;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Bucket bounds, in seconds, for Backstop's latency histograms: Prometheus's client
/// defaults (5 ms to 10 s) extended to 2 minutes, because a model call or a queue in front
/// of one takes tens of seconds.
///
/// Histogram buckets belong to the exporter, not to the facade; set these (or your own)
/// on it, e.g. with `metrics_exporter_prometheus`:
///
/// ```
/// use backstop::metrics::LATENCY_BUCKETS;
/// use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
///
/// let builder = PrometheusBuilder::new()
///     .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?;
/// # let _ = builder;
/// # Ok::<_, metrics_exporter_prometheus::BuildError>(())
/// ```
///
/// Without buckets, that exporter renders every histogram as a summary instead.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// One histogram series fed from snapshots of a `backstop_core::Histogram`.
///
/// Each [`publish`](Self::publish) records the values added since the previous one as
/// observations (one `record_many` per occupied bucket of the source), so the exporter's
/// buckets, sum and count grow like those of a histogram recorded at every event, and
/// the recorded values never go twice. A value is recorded at the top of its source
/// bucket (within 1/16 above the true value), so a latency is never under-reported.
#[derive(Debug)]
pub struct LatencyHistogram {
    metric: &'static str,
    previous: Mutex<Option<HistogramSnapshot>>,
}

impl LatencyHistogram {
    /// A series named `metric` (in seconds), with nothing published yet.
    pub fn new(metric: &'static str) -> Self {
        Self {
            metric,
            previous: Mutex::new(None),
        }
    }

    /// The series name.
    pub fn metric(&self) -> &'static str {
        self.metric
    }

    /// Records what `current` holds beyond the previous publish, labelled `name`.
    pub fn publish(&self, name: &str, current: &HistogramSnapshot) {
        let mut previous = self.previous.lock().unwrap_or_else(PoisonError::into_inner);
        let delta = match previous.as_ref() {
            Some(earlier) => current.since(earlier),
            None => current.clone(),
        };
        let histogram = ::metrics::histogram!(self.metric, "name" => name.to_owned());
        for (value, count) in observations(&delta) {
            histogram.record_many(value.as_secs_f64(), count);
        }
        *previous = Some(current.clone());
    }
}

/// The values of `histogram` as (value, how many), smallest first.
///
/// Only quantiles are public on a snapshot, so each run of equal values is found by a
/// binary search over ranks: O(occupied buckets × log count) quantile reads.
fn observations(histogram: &HistogramSnapshot) -> Vec<(Duration, usize)> {
    let total = histogram.count();
    // The value of rank `r` (1-based): the quantile whose rank rounds up to exactly `r`.
    let at = |rank: u64| histogram.quantile((rank as f64 - 0.5) / total as f64);
    let mut runs = Vec::new();
    let mut rank = 1;
    while rank <= total {
        let value = at(rank);
        let (mut low, mut high) = (rank, total);
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            if at(middle) == value {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        runs.push((value, usize::try_from(low - rank + 1).unwrap_or(usize::MAX)));
        rank = low + 1;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::Histogram;

    #[test]
    fn observations_keep_every_value_within_its_bucket() {
        let histogram = Histogram::new();
        let values = [3u64, 3, 40, 900, 900, 900, 25_000, 1_000_000];
        for micros in values {
            histogram.record(Duration::from_micros(micros));
        }
        let runs = observations(&histogram.snapshot());
        let total: usize = runs.iter().map(|(_, count)| count).sum();
        assert_eq!(total, values.len());
        let counts: Vec<usize> = runs.iter().map(|(_, count)| *count).collect();
        assert_eq!(counts, [2, 1, 3, 1, 1]);
        for ((value, _), micros) in runs.iter().zip([3u64, 40, 900, 25_000, 1_000_000]) {
            let value = value.as_micros() as f64;
            assert!(
                (micros as f64..=micros as f64 * 1.0625).contains(&value),
                "{value} for {micros}"
            );
        }
    }

    #[test]
    fn an_empty_histogram_has_no_observations() {
        assert!(observations(&HistogramSnapshot::empty()).is_empty());
    }
}
