//! Sliding windows of call outcomes: a lock-free count-based ring and a bucketed
//! time-based window.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::BreakerWindow;
use crate::config::{MAX_COUNT_WINDOW, MAX_TIME_WINDOW_SECONDS};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// One recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

impl Sample {
    pub(crate) const SUCCESS: Self = Self {
        failed: false,
        slow: false,
    };

    // 0 marks an empty slot, so every recorded sample has bit 0 set.
    fn bits(self) -> u8 {
        1 | (u8::from(self.failed) << 1) | (u8::from(self.slow) << 2)
    }
}

fn failed_bit(bits: u8) -> i64 {
    i64::from((bits >> 1) & 1)
}

fn slow_bit(bits: u8) -> i64 {
    i64::from((bits >> 2) & 1)
}

/// Aggregate of the calls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Totals {
    pub(crate) fn failure_rate(&self) -> f64 {
        rate(self.failures, self.calls)
    }

    pub(crate) fn slow_rate(&self) -> f64 {
        rate(self.slow, self.calls)
    }
}

fn rate(part: u64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        part as f64 * 100.0 / calls as f64
    }
}

pub(crate) enum Window {
    Count(CountWindow),
    Time(Mutex<TimeWindow>),
}

impl Window {
    /// Sizes are clamped to the documented bounds as well as validated, so a config that
    /// skipped validation still cannot allocate in proportion to an unbounded value.
    pub(crate) fn new(config: BreakerWindow, minimum_calls: u32) -> Self {
        let config = match config {
            BreakerWindow::Count { size } => BreakerWindow::Count {
                size: size.clamp(1, MAX_COUNT_WINDOW),
            },
            BreakerWindow::Time { seconds } => BreakerWindow::Time {
                seconds: seconds.clamp(1, MAX_TIME_WINDOW_SECONDS),
            },
        };
        match config {
            BreakerWindow::Count { size } => Self::Count(CountWindow::new(size, minimum_calls)),
            BreakerWindow::Time { seconds } => Self::Time(Mutex::new(TimeWindow::new(seconds))),
        }
    }

    /// Records `sample` and returns the window's totals when they may now call for a
    /// decision (a failure or slow call, or the window just reached `minimum_calls`).
    #[inline]
    pub(crate) fn record(&self, sample: Sample, now_nanos: u64) -> Option<Totals> {
        match self {
            Self::Count(window) => window.record(sample),
            Self::Time(window) => Some(record_timed(window, sample, now_nanos)),
        }
    }

    pub(crate) fn totals(&self, now_nanos: u64) -> Totals {
        match self {
            Self::Count(window) => window.totals(),
            Self::Time(window) => window.lock().totals(now_nanos),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Self::Count(window) => window.reset(),
            Self::Time(window) => window.lock().reset(),
        }
    }

    /// Whether recording needs the time of the call's end.
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self, Self::Time(_))
    }
}

/// Out of line so the lock stays out of the count window's inlined path.
#[inline(never)]
fn record_timed(window: &Mutex<TimeWindow>, sample: Sample, now_nanos: u64) -> Totals {
    window.lock().record(sample, now_nanos)
}

/// The last `size` outcomes in a ring of one byte per call. Recording claims a position
/// with one `fetch_add` and, only when the slot's previous outcome differs, swaps it and
/// adjusts the failure and slow counters. Once the ring is full of successes a further
/// success writes nothing at all (three relaxed loads), so a healthy circuit's closed
/// path shares no written cache line between threads.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    failures: AtomicI64,
    slow: AtomicI64,
    minimum_calls: u64,
    slot_of: SlotIndex,
}

impl CountWindow {
    fn new(size: u32, minimum_calls: u32) -> Self {
        Self {
            slots: (0..size.max(1)).map(|_| AtomicU8::new(0)).collect(),
            cursor: AtomicU64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
            minimum_calls: u64::from(minimum_calls),
            slot_of: SlotIndex::new(size.max(1)),
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    #[inline]
    fn record(&self, sample: Sample) -> Option<Totals> {
        if sample == Sample::SUCCESS && self.full_of_successes() {
            // Writing a success over a success changes nothing but which equal slot
            // goes next, so a healthy circuit's calls write no shared memory at all.
            // Racing a failure's write, the skip reads as this success landing just
            // before it, at worst keeping that failure one call longer.
            return None;
        }
        let position = self.cursor.fetch_add(1, Relaxed);
        let slot = &self.slots[self.slot_of.get(position)];
        let new = sample.bits();
        if slot.load(Relaxed) != new {
            let old = slot.swap(new, Relaxed);
            let failed = failed_bit(new) - failed_bit(old);
            if failed != 0 {
                self.failures.fetch_add(failed, Relaxed);
            }
            let slow = slow_bit(new) - slow_bit(old);
            if slow != 0 {
                self.slow.fetch_add(slow, Relaxed);
            }
        }
        if sample.failed || sample.slow || position + 1 == self.minimum_calls {
            Some(self.totals())
        } else {
            None
        }
    }

    #[inline]
    fn full_of_successes(&self) -> bool {
        self.failures.load(Relaxed) == 0
            && self.slow.load(Relaxed) == 0
            && self.cursor.load(Relaxed) >= self.len()
    }

    fn totals(&self) -> Totals {
        // Counters can dip below zero for an instant while racing writers swap the same
        // slot; clamp rather than report nonsense.
        Totals {
            calls: self.cursor.load(Relaxed).min(self.len()),
            failures: self.failures.load(Relaxed).max(0) as u64,
            slow: self.slow.load(Relaxed).max(0) as u64,
        }
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Relaxed);
        }
        self.failures.store(0, Relaxed);
        self.slow.store(0, Relaxed);
        self.cursor.store(0, Relaxed);
    }
}

/// Maps a cursor position to its ring slot without a division instruction, which on
/// the closed path's budget is expensive (tens of cycles on common server CPUs): Lemire's
/// direct remainder, `((M * x) mod 2^64) * d >> 64` with `M = ceil(2^64 / d)`, exact for
/// every 32-bit `x` and `d`. The position is taken modulo 2^32 first, so once every 2^32
/// calls the ring starts a lap early; the window still holds `d` recent outcomes.
struct SlotIndex {
    divisor: u64,
    magic: u64,
}

impl SlotIndex {
    fn new(divisor: u32) -> Self {
        let divisor = u64::from(divisor);
        Self {
            divisor,
            magic: (u64::MAX / divisor).wrapping_add(1),
        }
    }

    fn get(&self, position: u64) -> usize {
        let low = self.magic.wrapping_mul(u64::from(position as u32));
        ((u128::from(low) * u128::from(self.divisor)) >> 64) as usize
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    calls: u64,
    failures: u64,
    slow: u64,
}

/// The calls of the last `seconds` whole seconds, one bucket per second, with a running
/// total so reading it is O(1) apart from expiring old buckets.
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    /// The second the newest bucket belongs to.
    newest: u64,
    total: Totals,
}

impl TimeWindow {
    fn new(seconds: u32) -> Self {
        Self {
            buckets: vec![Bucket::default(); seconds.max(1) as usize].into_boxed_slice(),
            newest: 0,
            total: Totals::default(),
        }
    }

    fn advance(&mut self, now_nanos: u64) {
        let second = now_nanos / NANOS_PER_SEC;
        if second <= self.newest {
            return;
        }
        let len = self.buckets.len() as u64;
        let steps = (second - self.newest).min(len);
        for offset in 1..=steps {
            let index = ((self.newest + offset) % len) as usize;
            let expired = std::mem::take(&mut self.buckets[index]);
            self.total.calls -= expired.calls;
            self.total.failures -= expired.failures;
            self.total.slow -= expired.slow;
        }
        self.newest = second;
    }

    fn record(&mut self, sample: Sample, now_nanos: u64) -> Totals {
        self.advance(now_nanos);
        let len = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(self.newest % len) as usize];
        bucket.calls += 1;
        bucket.failures += u64::from(sample.failed);
        bucket.slow += u64::from(sample.slow);
        self.total.calls += 1;
        self.total.failures += u64::from(sample.failed);
        self.total.slow += u64::from(sample.slow);
        self.total
    }

    fn totals(&mut self, now_nanos: u64) -> Totals {
        self.advance(now_nanos);
        self.total
    }

    fn reset(&mut self) {
        self.buckets.fill(Bucket::default());
        self.total = Totals::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(calls: u64, failures: u64, slow: u64) -> Totals {
        Totals {
            calls,
            failures,
            slow,
        }
    }

    const OK: Sample = Sample {
        failed: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failed: true,
        slow: false,
    };
    const SLOW: Sample = Sample {
        failed: false,
        slow: true,
    };

    proptest::proptest! {
        #[test]
        fn slot_index_is_the_remainder(divisor in 1u32.., position: u64) {
            let expected = u64::from(position as u32) % u64::from(divisor);
            proptest::prop_assert_eq!(SlotIndex::new(divisor).get(position) as u64, expected);
        }
    }

    #[test]
    fn slot_index_is_exact_at_the_edges() {
        for divisor in [1, 2, 3, 7, 100, 1_000, u32::MAX - 1, u32::MAX] {
            let index = SlotIndex::new(divisor);
            for position in [0, 1, 99, 100, 101, u64::from(u32::MAX), u64::MAX] {
                let expected = u64::from(position as u32) % u64::from(divisor);
                assert_eq!(
                    index.get(position) as u64,
                    expected,
                    "{position} % {divisor}"
                );
            }
        }
    }

    #[test]
    fn successes_skipped_on_a_healthy_ring_still_evict_a_failure_on_time() {
        let window = Window::new(BreakerWindow::Count { size: 3 }, 1);
        for _ in 0..10 {
            window.record(OK, 0);
        }
        window.record(FAIL, 0);
        window.record(OK, 0);
        window.record(OK, 0);
        assert_eq!(
            window.totals(0).failures,
            1,
            "the failure is one of the last 3"
        );
        window.record(OK, 0);
        assert_eq!(
            window.totals(0).failures,
            0,
            "three successes later it is gone"
        );
        assert_eq!(window.totals(0).calls, 3);
    }

    #[test]
    fn count_window_keeps_only_the_last_calls() {
        let window = Window::new(BreakerWindow::Count { size: 3 }, 1);
        window.record(FAIL, 0);
        window.record(FAIL, 0);
        window.record(OK, 0);
        assert_eq!(window.totals(0), counts(3, 2, 0));
        window.record(SLOW, 0);
        window.record(OK, 0);
        assert_eq!(window.totals(0), counts(3, 0, 1));
        window.reset();
        assert_eq!(window.totals(0), Totals::default());
    }

    #[test]
    fn count_window_asks_for_a_decision_on_bad_calls_and_at_minimum() {
        let window = Window::new(BreakerWindow::Count { size: 10 }, 3);
        assert!(window.record(OK, 0).is_none());
        assert!(window.record(OK, 0).is_none());
        assert!(window.record(OK, 0).is_some());
        assert!(window.record(OK, 0).is_none());
        assert!(window.record(FAIL, 0).is_some());
    }

    #[test]
    fn time_window_expires_whole_seconds() {
        let second = NANOS_PER_SEC;
        let window = Window::new(BreakerWindow::Time { seconds: 2 }, 1);
        window.record(FAIL, 0);
        window.record(OK, second / 2);
        window.record(OK, second);
        assert_eq!(window.totals(second).calls, 3);
        assert_eq!(window.totals(2 * second).calls, 1);
        assert_eq!(window.totals(2 * second).failures, 0);
        assert_eq!(window.totals(10 * second), Totals::default());
        window.record(SLOW, 10 * second);
        assert_eq!(window.totals(11 * second).slow, 1);
    }

    #[test]
    fn count_window_is_consistent_after_concurrent_writers() {
        let window = std::sync::Arc::new(Window::new(BreakerWindow::Count { size: 64 }, 1));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let window = window.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000u32 {
                        let sample = if (i + t) % 3 == 0 { FAIL } else { OK };
                        window.record(sample, 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let Window::Count(ring) = &*window else {
            unreachable!()
        };
        let failed_slots = ring
            .slots
            .iter()
            .filter(|slot| slot.load(Relaxed) & 2 != 0)
            .count() as u64;
        let totals = window.totals(0);
        assert_eq!(totals.calls, 64);
        assert_eq!(totals.failures, failed_slots);
    }

    proptest::proptest! {
        #[test]
        fn windows_match_a_naive_list_of_calls(
            size in 1u32..6,
            calls in proptest::collection::vec((0u64..1_500, 0u8..4), 0..80),
        ) {
            let count = Window::new(BreakerWindow::Count { size }, 1);
            let time = Window::new(BreakerWindow::Time { seconds: size }, 1);
            let mut now = 0;
            let mut all: Vec<(u64, Sample)> = Vec::new();
            for (advance_ms, kind) in calls {
                now += advance_ms * 1_000_000;
                let sample = Sample { failed: kind & 1 != 0, slow: kind & 2 != 0 };
                count.record(sample, now);
                time.record(sample, now);
                all.push((now, sample));

                let totals = |calls: &[&(u64, Sample)]| Totals {
                    calls: calls.len() as u64,
                    failures: calls.iter().filter(|c| c.1.failed).count() as u64,
                    slow: calls.iter().filter(|c| c.1.slow).count() as u64,
                };
                let last: Vec<_> = all.iter().rev().take(size as usize).collect();
                proptest::prop_assert_eq!(count.totals(now), totals(&last));
                let second = now / NANOS_PER_SEC;
                let recent: Vec<_> = all
                    .iter()
                    .filter(|(at, _)| at / NANOS_PER_SEC + u64::from(size) > second)
                    .collect();
                proptest::prop_assert_eq!(time.totals(now), totals(&recent));
            }
        }
    }
}
