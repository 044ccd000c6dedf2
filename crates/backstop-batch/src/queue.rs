//! Per-key, per-priority FIFO queues and the rules that turn them into batches.
//!
//! Kept free of channels and tasks so the batch-forming rules can be tested directly.

use crate::config::BatchConfig;
use backstop_core::time::clamp;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;
use tokio::time::Instant;

/// Why a batch was dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchReason {
    /// The key's queue reached `max_batch_size`.
    Full,
    /// The key's queue reached a preferred batch size.
    Preferred,
    /// The key's oldest item waited `max_delay`.
    Timeout,
    /// The batcher was closing and flushed what was queued.
    Flush,
}

/// One queued item with what the queue needs to order it.
#[derive(Debug)]
pub(crate) struct Queued<T> {
    pub(crate) id: u64,
    pub(crate) enqueued: Instant,
    pub(crate) item: T,
}

struct KeyQueue<T> {
    /// One FIFO per priority level; ids increase from front to back.
    levels: Vec<VecDeque<Queued<T>>>,
    len: usize,
}

impl<T> KeyQueue<T> {
    fn oldest(&self) -> Option<Instant> {
        self.levels
            .iter()
            .filter_map(|level| level.front().map(|queued| queued.enqueued))
            .min()
    }

    /// The level whose front item goes next: highest effective priority, then oldest.
    fn next_level(&self, now: Instant, aging: Option<Duration>) -> Option<(usize, Rank)> {
        self.levels
            .iter()
            .enumerate()
            .filter_map(|(level, queue)| {
                queue
                    .front()
                    .map(|front| (level, Rank::of(level, front, now, aging)))
            })
            .max_by(|a, b| a.1.cmp(&b.1))
    }
}

/// Orders candidates: higher effective level first, then earlier arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    effective_level: u128,
    arrival: std::cmp::Reverse<u64>,
}

impl Rank {
    fn of<T>(level: usize, queued: &Queued<T>, now: Instant, aging: Option<Duration>) -> Self {
        let boost = match aging {
            Some(aging) => {
                now.saturating_duration_since(queued.enqueued).as_nanos() / aging.as_nanos()
            }
            None => 0,
        };
        Self {
            effective_level: level as u128 + boost,
            arrival: std::cmp::Reverse(queued.id),
        }
    }
}

/// A batch chosen for dispatch: which key, how many items, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pick<K> {
    pub(crate) key: K,
    pub(crate) size: usize,
    pub(crate) reason: DispatchReason,
}

/// Every queued item, grouped by batch key and priority level.
pub(crate) struct Queues<K, T> {
    keys: HashMap<K, KeyQueue<T>>,
    levels: usize,
    len: usize,
}

impl<K, T> Queues<K, T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties every queue.
    pub(crate) fn drain(&mut self) -> Vec<Queued<T>> {
        self.len = 0;
        self.keys
            .drain()
            .flat_map(|(_, queue)| queue.levels.into_iter().flatten())
            .collect()
    }
}

impl<K: Hash + Eq + Clone, T> Queues<K, T> {
    pub(crate) fn new(levels: usize) -> Self {
        Self {
            keys: HashMap::new(),
            levels: levels.max(1),
            len: 0,
        }
    }

    /// Appends an item and returns how many items its key now holds. `id`s must increase
    /// across calls; `level` is clamped to the configured levels.
    pub(crate) fn push(&mut self, key: K, level: usize, queued: Queued<T>) -> usize {
        let levels = self.levels;
        let queue = self.keys.entry(key).or_insert_with(|| KeyQueue {
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            len: 0,
        });
        queue.levels[level.min(levels - 1)].push_back(queued);
        queue.len += 1;
        self.len += 1;
        queue.len
    }

    /// Removes a still-queued item (its caller went away); `None` once dispatched.
    pub(crate) fn remove(&mut self, key: &K, level: usize, id: u64) -> Option<T> {
        let queue = self.keys.get_mut(key)?;
        let fifo = &mut queue.levels[level.min(self.levels - 1)];
        let index = fifo.binary_search_by_key(&id, |queued| queued.id).ok()?;
        let removed = fifo.remove(index)?;
        queue.len -= 1;
        self.len -= 1;
        if queue.len == 0 {
            self.keys.remove(key);
        }
        Some(removed.item)
    }

    /// Takes out every item enqueued at or before `now - timeout`. Only fronts are checked:
    /// in a FIFO with one timeout, deadlines grow from front to back.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Queued<T>> {
        let mut expired = Vec::new();
        self.keys.retain(|_, queue| {
            for fifo in &mut queue.levels {
                while fifo
                    .front()
                    .is_some_and(|front| now.saturating_duration_since(front.enqueued) >= timeout)
                {
                    expired.extend(fifo.pop_front());
                    queue.len -= 1;
                }
            }
            queue.len > 0
        });
        self.len -= expired.len();
        expired
    }

    /// The earliest moment something may change without a new arrival: a key's delay
    /// running out (only when `can_dispatch`) or an item's queue timeout. Waits are
    /// clamped, so even a duration that skipped validation cannot overflow the `Instant`.
    pub(crate) fn next_deadline(
        &self,
        config: &BatchConfig,
        can_dispatch: bool,
    ) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |at: Instant| {
            earliest = Some(earliest.map_or(at, |current| current.min(at)));
        };
        for queue in self.keys.values() {
            let Some(oldest) = queue.oldest() else {
                continue;
            };
            if can_dispatch {
                consider(oldest + clamp(config.max_delay));
            }
            if let Some(timeout) = config.queue_timeout {
                consider(oldest + clamp(timeout));
            }
        }
        earliest
    }

    /// The batch to dispatch now, if any key is ready: among ready keys, the one whose
    /// next item ranks highest (priority with aging, then age). `limit` is the effective
    /// maximum batch size (`max_batch_size` unless adaptive mode lowered it).
    pub(crate) fn pick(
        &self,
        now: Instant,
        config: &BatchConfig,
        flush: bool,
        limit: usize,
    ) -> Option<Pick<K>> {
        let mut best: Option<(Rank, Pick<K>)> = None;
        for (key, queue) in &self.keys {
            let Some((size, reason)) = ready(queue, now, config, flush, limit) else {
                continue;
            };
            let Some((_, rank)) = queue.next_level(now, config.priority_aging) else {
                continue;
            };
            if best.as_ref().is_none_or(|(best_rank, _)| rank > *best_rank) {
                let pick = Pick {
                    key: key.clone(),
                    size,
                    reason,
                };
                best = Some((rank, pick));
            }
        }
        best.map(|(_, pick)| pick)
    }

    /// Takes up to `size` items of `key` in dispatch order.
    pub(crate) fn take(
        &mut self,
        key: &K,
        size: usize,
        now: Instant,
        aging: Option<Duration>,
    ) -> Vec<Queued<T>> {
        let Some(queue) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        let mut batch = Vec::with_capacity(size.min(queue.len));
        while batch.len() < size {
            let Some((level, _)) = queue.next_level(now, aging) else {
                break;
            };
            batch.extend(queue.levels[level].pop_front());
        }
        queue.len -= batch.len();
        self.len -= batch.len();
        if queue.len == 0 {
            self.keys.remove(key);
        }
        batch
    }
}

/// Whether `queue` should dispatch now, and how many items.
fn ready<T>(
    queue: &KeyQueue<T>,
    now: Instant,
    config: &BatchConfig,
    flush: bool,
    limit: usize,
) -> Option<(usize, DispatchReason)> {
    let len = queue.len;
    if len == 0 {
        return None;
    }
    if len >= limit {
        return Some((limit, DispatchReason::Full));
    }
    if let Some(preferred) = config
        .preferred_batch_sizes
        .iter()
        .copied()
        .filter(|size| *size <= len && *size <= limit)
        .max()
    {
        return Some((preferred, DispatchReason::Preferred));
    }
    if flush {
        return Some((len, DispatchReason::Flush));
    }
    let oldest = queue.oldest()?;
    (now.saturating_duration_since(oldest) >= config.max_delay)
        .then_some((len, DispatchReason::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(max: usize, delay_ms: u64) -> BatchConfig {
        BatchConfig {
            max_batch_size: max,
            max_delay: Duration::from_millis(delay_ms),
            ..BatchConfig::default()
        }
    }

    /// What the dispatcher, not flushing and at the configured maximum, sends at `now`.
    fn pick_at(queues: &Queues<u8, u64>, now: Instant, config: &BatchConfig) -> Option<Pick<u8>> {
        queues.pick(now, config, false, config.max_batch_size)
    }

    fn push(queues: &mut Queues<u8, u64>, key: u8, level: usize, id: u64, at: Instant) -> usize {
        queues.push(
            key,
            level,
            Queued {
                id,
                enqueued: at,
                item: id,
            },
        )
    }

    #[test]
    fn full_key_is_ready_at_once_and_others_wait_for_delay() {
        let start = Instant::now();
        let config = config(2, 10);
        let mut queues = Queues::new(1);
        push(&mut queues, 1, 0, 0, start);
        assert_eq!(pick_at(&queues, start, &config), None);
        push(&mut queues, 1, 0, 1, start);
        let pick = pick_at(&queues, start, &config).unwrap();
        assert_eq!((pick.size, pick.reason), (2, DispatchReason::Full));
        push(&mut queues, 2, 0, 2, start);
        let taken = queues.take(&1, 2, start, None);
        assert_eq!(taken.iter().map(|q| q.item).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(pick_at(&queues, start, &config), None);
        assert_eq!(
            queues.next_deadline(&config, true),
            Some(start + Duration::from_millis(10))
        );
        let later = start + Duration::from_millis(10);
        let pick = pick_at(&queues, later, &config).unwrap();
        assert_eq!((pick.key, pick.reason), (2, DispatchReason::Timeout));
    }

    #[test]
    fn next_deadline_saturates_for_durations_that_skipped_validation() {
        let start = Instant::now();
        let config = BatchConfig {
            max_delay: Duration::MAX,
            queue_timeout: Some(Duration::MAX),
            ..config(8, 10)
        };
        let mut queues = Queues::new(1);
        push(&mut queues, 0, 0, 0, start);
        let deadline = queues.next_deadline(&config, true).unwrap();
        assert_eq!(deadline, start + backstop_core::time::MAX_WAIT);
        assert_eq!(pick_at(&queues, start, &config), None);
    }

    #[test]
    fn largest_preferred_size_that_fits_is_chosen() {
        let start = Instant::now();
        let config = BatchConfig {
            preferred_batch_sizes: vec![2, 4],
            ..config(8, 10)
        };
        let mut queues = Queues::new(1);
        for id in 0..5 {
            push(&mut queues, 0, 0, id, start);
        }
        let pick = pick_at(&queues, start, &config).unwrap();
        assert_eq!((pick.size, pick.reason), (4, DispatchReason::Preferred));
    }

    #[test]
    fn higher_level_goes_first_until_aging_lifts_the_low_one() {
        let start = Instant::now();
        let aging = Some(Duration::from_millis(100));
        let mut queues = Queues::new(3);
        push(&mut queues, 0, 0, 0, start);
        let later = start + Duration::from_millis(150);
        push(&mut queues, 0, 2, 1, later);
        push(&mut queues, 0, 1, 2, later);
        let order: Vec<u64> = queues
            .take(&0, 3, later, aging)
            .into_iter()
            .map(|q| q.item)
            .collect();
        // Level 2 first; the level-0 item has aged one level, ties with the level-1
        // item and wins as the older one.
        assert_eq!(order, [1, 0, 2]);
    }

    #[test]
    fn among_ready_keys_the_highest_priority_goes_first() {
        let start = Instant::now();
        let config = BatchConfig {
            priority_levels: 2,
            priority_aging: None,
            ..config(8, 10)
        };
        let mut queues = Queues::new(2);
        push(&mut queues, 1, 0, 0, start);
        push(&mut queues, 2, 1, 1, start + Duration::from_millis(5));
        let later = start + Duration::from_millis(20);
        let first = pick_at(&queues, later, &config).unwrap();
        assert_eq!((first.key, first.reason), (2, DispatchReason::Timeout));
        queues.take(&first.key, first.size, later, None);
        assert_eq!(pick_at(&queues, later, &config).unwrap().key, 1);
    }

    #[test]
    fn remove_and_expire_keep_counts_right() {
        let start = Instant::now();
        let mut queues = Queues::new(2);
        for id in 0..4 {
            push(&mut queues, (id % 2) as u8, (id % 2) as usize, id, start);
        }
        assert_eq!(queues.remove(&1, 1, 3), Some(3));
        assert_eq!(queues.remove(&1, 1, 3), None);
        assert_eq!(queues.len(), 3);
        push(&mut queues, 0, 0, 9, start + Duration::from_secs(2));
        let expired = queues.expire(start + Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(expired.len(), 3);
        assert_eq!(queues.len(), 1);
        assert_eq!(queues.drain().len(), 1);
        assert!(queues.is_empty());
    }

    proptest! {
        /// Against a plain list: whatever is pushed, removed and taken, every item leaves
        /// exactly once, batches never exceed the pick size nor mix keys.
        #[test]
        fn items_leave_exactly_once(ops in proptest::collection::vec((0u8..3, 0usize..3, 0u8..4), 1..200)) {
            let start = Instant::now();
            let config = BatchConfig { priority_levels: 3, ..config(4, 5) };
            let mut queues: Queues<u8, u64> = Queues::new(3);
            let mut model: Vec<(u8, usize, u64)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (id, (key, level, op)) in ops.into_iter().enumerate() {
                let id = id as u64;
                let now = start + Duration::from_millis(id);
                match op {
                    0 | 1 => {
                        push(&mut queues, key, level, id, now);
                        model.push((key, level, id));
                    }
                    2 => {
                        if let Some(&(k, l, i)) = model.first() {
                            prop_assert_eq!(queues.remove(&k, l, i), Some(i));
                            model.remove(0);
                            seen.insert(i);
                        }
                    }
                    _ => {
                        if let Some(pick) = pick_at(&queues, now, &config) {
                            let batch = queues.take(&pick.key, pick.size, now, config.priority_aging);
                            prop_assert!(!batch.is_empty() && batch.len() <= config.max_batch_size);
                            for queued in batch {
                                let position = model.iter().position(|m| m.2 == queued.item);
                                let position = position.expect("taken item was queued");
                                prop_assert_eq!(model[position].0, pick.key);
                                model.remove(position);
                                prop_assert!(seen.insert(queued.item));
                            }
                        }
                    }
                }
                prop_assert_eq!(queues.len(), model.len());
            }
            for queued in queues.drain() {
                prop_assert!(seen.insert(queued.item));
            }
        }
    }
}
