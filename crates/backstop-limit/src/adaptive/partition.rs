//! Priority classes: each holds a share of the current limit against lower classes.
//!
//! Admission of class `i` needs a free permit that is not held for a higher class:
//! `in_flight + Σ_{j < i} max(0, guaranteed_j − in_flight_j) < limit`. The highest class
//! can therefore take every free permit; a lower class can never take the idle share of a
//! higher one, so a critical caller always finds its share free, and as the limit shrinks
//! the lowest class is the first to find nothing left. The total is exact (one
//! compare-and-swap); the reservation is read without a lock, so two racing admissions may
//! each see the other's class before its count moved, erring by at most a permit per race.

use super::config::PriorityClassConfig;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// One priority class of an [`AdaptiveLimiter`](super::AdaptiveLimiter), found by name
/// with [`AdaptiveLimiter::class`](super::AdaptiveLimiter::class). A small `Copy` index;
/// a class of another limiter with more classes counts as this limiter's lowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PriorityClass(pub(crate) u8);

impl PriorityClass {
    /// The class's position, 0 for the highest priority.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[derive(Debug)]
pub(crate) struct ClassState {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) share: f64,
    pub(crate) max_queued: usize,
    pub(crate) queue_timeout: Option<Duration>,
    pub(crate) guaranteed: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) queued: AtomicUsize,
    pub(crate) admitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) notify: Notify,
}

impl ClassState {
    fn new(config: &PriorityClassConfig, limit: u64) -> Self {
        Self {
            name: config.name.as_str().into(),
            share: config.share,
            max_queued: config.max_queued,
            queue_timeout: config.queue_timeout,
            guaranteed: AtomicU64::new(guaranteed(limit, config.share)),
            in_flight: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }
}

/// Permits held for a class of `share` under `limit`: rounded down, so the shares of all
/// classes never hold more than the limit.
fn guaranteed(limit: u64, share: f64) -> u64 {
    (limit as f64 * share).floor() as u64
}

#[derive(Debug)]
pub(crate) struct Partitions {
    pub(crate) classes: Box<[ClassState]>,
}

impl Partitions {
    pub(crate) fn new(configs: &[PriorityClassConfig], limit: u64) -> Self {
        Self {
            classes: configs.iter().map(|c| ClassState::new(c, limit)).collect(),
        }
    }

    /// The class's index, the lowest class for an index out of range.
    #[inline]
    pub(crate) fn index(&self, class: PriorityClass) -> usize {
        class.index().min(self.classes.len() - 1)
    }

    /// Idle permits held for classes above `class`.
    #[inline]
    pub(crate) fn reserved_above(&self, class: usize) -> u64 {
        self.classes[..class]
            .iter()
            .map(|c| {
                c.guaranteed
                    .load(Ordering::Relaxed)
                    .saturating_sub(c.in_flight.load(Ordering::Relaxed))
            })
            .fold(0, u64::saturating_add)
    }

    /// Recomputes every class's guaranteed permits for a new limit.
    pub(crate) fn set_limit(&self, limit: u64) {
        for class in self.classes.iter() {
            class
                .guaranteed
                .store(guaranteed(limit, class.share), Ordering::Relaxed);
        }
    }

    /// Wakes one queued caller of every class that has one, highest class first.
    pub(crate) fn wake(&self) {
        for class in self.classes.iter() {
            if class.queued.load(Ordering::Acquire) > 0 {
                class.notify.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(shares: &[f64], limit: u64) -> Partitions {
        let configs: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| PriorityClassConfig::new(format!("c{i}"), *s))
            .collect();
        Partitions::new(&configs, limit)
    }

    #[test]
    fn guarantees_round_down_and_follow_the_limit() {
        let p = partitions(&[0.5, 0.3, 0.2], 11);
        let g: Vec<u64> = p
            .classes
            .iter()
            .map(|c| c.guaranteed.load(Ordering::Relaxed))
            .collect();
        assert_eq!(g, [5, 3, 2]);
        p.set_limit(100);
        assert_eq!(p.classes[0].guaranteed.load(Ordering::Relaxed), 50);
    }

    #[test]
    fn only_idle_shares_of_higher_classes_are_reserved() {
        let p = partitions(&[0.5, 0.3, 0.2], 100);
        assert_eq!(p.reserved_above(0), 0);
        assert_eq!(p.reserved_above(1), 50);
        assert_eq!(p.reserved_above(2), 80);
        p.classes[0].in_flight.store(60, Ordering::Relaxed);
        p.classes[1].in_flight.store(10, Ordering::Relaxed);
        assert_eq!(
            p.reserved_above(2),
            20,
            "class 0 over its share reserves nothing"
        );
    }

    #[test]
    fn foreign_class_indices_fall_to_the_lowest() {
        let p = partitions(&[0.5, 0.5], 10);
        assert_eq!(p.index(PriorityClass(7)), 1);
        assert_eq!(p.index(PriorityClass(0)), 0);
    }
}
