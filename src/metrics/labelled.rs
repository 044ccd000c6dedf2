//! Writers for the primitives' counters and their `name` labels, compiled with the
//! primitives that use them (the autoscaler publishes gauges only).

use super::Labels;

/// Sets a monotonically increasing count read from a snapshot.
pub(crate) fn counter(metric: &'static str, labels: &Labels<'_>, value: u64) {
    ::metrics::counter!(metric, labels).absolute(value);
}

/// The `name` label alone.
#[cfg(any(feature = "dedup", feature = "retry", feature = "route"))]
pub(crate) fn named(name: &str) -> [(&'static str, String); 1] {
    [("name", name.to_owned())]
}
