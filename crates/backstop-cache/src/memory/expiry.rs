//! Per-entry expiry: the user hook and the per-shard timer queue that reclaims expired
//! entries without scanning the shard.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A deadline that never comes.
pub(crate) const NEVER: u64 = u64::MAX;

/// Chooses how long each entry lives, overriding the cache-wide time to live.
///
/// Returning `None` falls back to the cache-wide `ttl` (or no expiry if none is set).
/// Time to idle, when configured, applies on top of whatever this returns.
///
/// ```
/// use std::time::{Duration, Instant};
/// use backstop_cache::Expiry;
///
/// /// Errors are cached briefly, answers for an hour.
/// struct ByOutcome;
/// impl Expiry<String, Result<String, String>> for ByOutcome {
///     fn expire_after_create(&self, _: &String, v: &Result<String, String>, _: Instant) -> Option<Duration> {
///         Some(if v.is_ok() { Duration::from_secs(3600) } else { Duration::from_secs(5) })
///     }
/// }
/// ```
pub trait Expiry<K, V>: Send + Sync + 'static {
    /// Time to live of an entry inserted for a key that was absent.
    fn expire_after_create(&self, key: &K, value: &V, now: Instant) -> Option<Duration>;

    /// Time to live of an entry that replaces a present one; defaults to
    /// [`expire_after_create`](Expiry::expire_after_create).
    fn expire_after_update(&self, key: &K, value: &V, now: Instant) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

/// A min-heap of `(deadline, slot, generation)`. Entries are invalidated lazily: the
/// shard checks on pop that the slot still holds the same generation and is still
/// queued under that deadline, so removals and updates never search the heap.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl TimerQueue {
    pub(crate) fn push(&mut self, deadline: u64, idx: u32, generation: u32) {
        self.heap.push(Reverse((deadline, idx, generation)));
    }

    /// Pops the earliest timer if it is due at `now`. Inlined: every write asks, and a
    /// cache without expiry never has a timer.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, u32, u32)> {
        match self.heap.peek() {
            Some(Reverse((d, _, _))) if *d <= now => self.heap.pop().map(|Reverse(t)| t),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_only_due_timers_in_order() {
        let mut q = TimerQueue::default();
        q.push(30, 3, 0);
        q.push(10, 1, 0);
        q.push(20, 2, 0);
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(25), Some((10, 1, 0)));
        assert_eq!(q.pop_due(25), Some((20, 2, 0)));
        assert_eq!(q.pop_due(25), None);
        assert_eq!(q.len(), 1);
    }
}
