//! How busy a component is, in one shape every autoscaling policy can read.

use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A point-in-time reading of a component's load.
///
/// Pools, batchers and concurrency limiters report this so that `backstop-scale` can size
/// the replicas behind them without knowing what they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LoadSnapshot {
    /// Work currently being served (checked-out connections, running calls, batches).
    pub in_flight: u64,
    /// Work waiting for capacity.
    pub queued: u64,
    /// How much work can be in flight at once; `None` when unbounded.
    pub capacity: Option<u64>,
    /// Mean time a unit of work waited before being served.
    #[serde(with = "crate::duration::human")]
    pub mean_wait: Duration,
    /// 95th-percentile wait.
    #[serde(with = "crate::duration::human")]
    pub p95_wait: Duration,
}

impl LoadSnapshot {
    /// In-flight work as a fraction of capacity (may exceed 1.0 when a component has been
    /// resized below its current use); `None` when capacity is unbounded or zero.
    ///
    /// ```
    /// use backstop_core::LoadSnapshot;
    ///
    /// let load = LoadSnapshot { in_flight: 3, capacity: Some(4), ..Default::default() };
    /// assert_eq!(load.utilization(), Some(0.75));
    /// ```
    pub fn utilization(&self) -> Option<f64> {
        match self.capacity {
            Some(capacity) if capacity > 0 => Some(self.in_flight as f64 / capacity as f64),
            _ => None,
        }
    }
}

/// A component that can report how loaded it is.
pub trait LoadSignal: Send + Sync {
    /// The current reading. Cheap: counters are read, nothing is locked for long.
    fn load(&self) -> LoadSnapshot;
}

impl<T: LoadSignal + ?Sized> LoadSignal for Arc<T> {
    fn load(&self) -> LoadSnapshot {
        (**self).load()
    }
}

impl<T: LoadSignal + ?Sized> LoadSignal for &T {
    fn load(&self) -> LoadSnapshot {
        (**self).load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_needs_a_bounded_nonzero_capacity() {
        let mut load = LoadSnapshot {
            in_flight: 5,
            ..Default::default()
        };
        assert_eq!(load.utilization(), None);
        load.capacity = Some(0);
        assert_eq!(load.utilization(), None);
        load.capacity = Some(4);
        assert_eq!(load.utilization(), Some(1.25));
    }

    #[test]
    fn serializes_waits_as_human_durations() {
        let load = LoadSnapshot {
            in_flight: 1,
            queued: 2,
            capacity: Some(8),
            mean_wait: Duration::from_millis(3),
            p95_wait: Duration::from_millis(12),
        };
        assert_eq!(
            serde_json::to_string(&load).unwrap(),
            r#"{"in_flight":1,"queued":2,"capacity":8,"mean_wait":"3ms","p95_wait":"12ms"}"#
        );
    }

    #[test]
    fn shared_components_report_through_arc() {
        struct Fixed;
        impl LoadSignal for Fixed {
            fn load(&self) -> LoadSnapshot {
                LoadSnapshot {
                    queued: 7,
                    ..Default::default()
                }
            }
        }
        let signals: Vec<Arc<dyn LoadSignal>> = vec![Arc::new(Fixed)];
        assert_eq!(signals[0].load().queued, 7);
    }
}
