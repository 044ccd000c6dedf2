//! What the tiered cache stores: the value (or a remembered "not found") and until when
//! it is fresh, so staleness means the same thing in every process sharing a tier.

use backstop_core::Clock;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A cached value with its freshness deadline, as written into every tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<V> {
    /// The value; `None` records that the loader found nothing (negative caching).
    pub value: Option<V>,
    /// Unix time in milliseconds after which the entry is stale.
    pub fresh_until: u64,
}

impl<V> Entry<V> {
    /// Whether the entry is still fresh at `now` (Unix milliseconds).
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fresh_until
    }
}

/// Wall-clock milliseconds read through a [`Clock`], so freshness deadlines can be shared
/// between processes (they are Unix times) and still driven by a `ManualClock` in tests.
///
/// The Unix time is read once, when this is created; after that it advances with the
/// clock, so it never jumps when the system time is adjusted.
#[derive(Debug, Clone)]
pub struct WallClock<C> {
    clock: C,
    anchor: Instant,
    anchor_unix_millis: u64,
}

impl<C: Clock> WallClock<C> {
    /// Anchors `clock` to the current Unix time.
    pub fn new(clock: C) -> Self {
        let anchor_unix_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(backstop_core::time::millis)
            .unwrap_or(0);
        let anchor = clock.now();
        Self {
            clock,
            anchor,
            anchor_unix_millis,
        }
    }

    /// The underlying clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Now, in Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.anchor);
        self.anchor_unix_millis
            .saturating_add(backstop_core::time::millis(elapsed))
    }

    /// `now + after`, in Unix milliseconds.
    pub fn deadline(&self, after: Duration) -> u64 {
        self.unix_millis()
            .saturating_add(backstop_core::time::millis(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::ManualClock;

    #[test]
    fn wall_time_follows_the_clock() {
        let clock = ManualClock::new();
        let wall = WallClock::new(clock.clone());
        let start = wall.unix_millis();
        clock.advance(Duration::from_millis(1500));
        assert_eq!(wall.unix_millis(), start + 1500);
        assert_eq!(wall.deadline(Duration::from_secs(1)), start + 2500);
    }

    #[test]
    fn freshness_ends_at_the_deadline() {
        let entry = Entry {
            value: Some(1),
            fresh_until: 10,
        };
        assert!(entry.is_fresh(9));
        assert!(!entry.is_fresh(10));
    }
}
