//! The one writer behind every publisher: a snapshot lists its values by series, and the
//! catalogue, not the publisher, says whether a series is a counter or a gauge.

use super::catalogue;
use super::catalogue::Kind;
use std::time::Duration;

/// A value read from a snapshot, before its series' kind decides how it is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// A whole number: a counter's total or a gauge's count.
    Whole(u64),
    /// A measure (seconds, a ratio), for gauges only.
    Real(f64),
    /// An optional stat not known yet: nothing is written.
    Absent,
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Self::Whole(value)
    }
}

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Self::Whole(value as u64)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Self::Whole(value.into())
    }
}

/// A one-hot flag: 1 or 0.
impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Whole(value.into())
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Self::Real(value)
    }
}

/// In seconds, the base unit.
impl From<Duration> for Value {
    fn from(value: Duration) -> Self {
        Self::Real(value.as_secs_f64())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Absent, Into::into)
    }
}

/// `&[(key, Value)]` from `key => value` rows, each value converted with [`Value::from`]:
/// the table a publisher hands to [`Labels::publish`] (keys are series) or
/// [`Labels::publish_by`] (keys are label values).
macro_rules! values {
    ($($key:expr => $value:expr),* $(,)?) => {
        &[$(($key, $crate::metrics::write::Value::from($value))),*]
    };
}
pub(crate) use values;

/// The labels shared by a group of series: `name`, then any dimensions (`tier`, `class`…).
#[derive(Debug, Clone)]
pub(crate) struct Labels(Vec<(&'static str, String)>);

impl Labels {
    /// The `name` label alone.
    pub(crate) fn named(name: &str) -> Self {
        Self(vec![("name", name.to_owned())])
    }

    /// Writes each `(series, value)` under these labels.
    pub(crate) fn publish(&self, values: &[(&'static str, Value)]) {
        for &(metric, value) in values {
            write(metric, &self.0, value);
        }
    }
}

/// Dimensions beyond `name`, for the publishers that have some.
#[cfg(any(
    feature = "batch",
    feature = "breaker",
    feature = "cache",
    feature = "limit",
    feature = "pool",
    feature = "route"
))]
impl Labels {
    /// These labels and `key="value"`.
    pub(crate) fn with(&self, key: &'static str, value: impl Into<String>) -> Self {
        let mut labels = self.clone();
        labels.0.push((key, value.into()));
        labels
    }

    /// Writes the one series `metric` split by `dimension`: each `(label value, value)`
    /// under these labels and `dimension="label value"`.
    pub(crate) fn publish_by(
        &self,
        metric: &'static str,
        dimension: &'static str,
        values: &[(&str, Value)],
    ) {
        for &(label, value) in values {
            self.with(dimension, label).publish(&[(metric, value)]);
        }
    }
}

/// Writes `value` to the series `metric` as the catalogue's kind for it says.
fn write(metric: &'static str, labels: &[(&'static str, String)], value: Value) {
    match (catalogue::kind(metric), value) {
        (_, Value::Absent) => {}
        (Some(Kind::Counter), Value::Whole(total)) => {
            ::metrics::counter!(metric, labels).absolute(total);
        }
        (Some(Kind::Gauge), Value::Whole(count)) => {
            ::metrics::gauge!(metric, labels).set(count as f64);
        }
        (Some(Kind::Gauge), Value::Real(measure)) => {
            ::metrics::gauge!(metric, labels).set(measure);
        }
        // A publisher naming a series the catalogue lacks, or a counter read as a measure:
        // a bug the metrics tests catch, not something to publish half-right.
        (kind, value) => debug_assert!(false, "{metric} ({kind:?}) cannot take {value:?}"),
    }
}
