//! The key cap every keyed store shares: bounded memory under a flood of new keys, at
//! O(1) amortized cost per refused key.
//!
//! A full map can only make room by sweeping keys that decide like new ones, and a sweep
//! visits every entry. Sweeping on every refused key made a flood cost O(cap) per call
//! (190,000 sweeps of 10,000 entries in one run). Instead, once the map is full, a sweep
//! runs on the first new key and then again only after another `cap / 8` new keys have
//! been refused (at least one): each sweep's O(cap) work is spread over `cap / 8`
//! refusals, so a refusal costs O(1) amortized. The price is that a key gone idle in the
//! meantime is reclaimed a few refusals later rather than at once; decisions for tracked
//! keys never change.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A full map sweeps again once this fraction of its cap has been refused since the last
/// sweep (`cap / SWEEP_DIVISOR` refusals, at least one).
pub(crate) const SWEEP_DIVISOR: usize = 8;

/// The cap on a keyed store's map, and when a full map may sweep.
#[derive(Debug)]
pub(crate) struct KeyCap {
    // `usize::MAX` when unbounded. Atomic so that a limiter handle (shared through an
    // `Arc`) takes its cap from a builder method without a `&mut`.
    max_keys: AtomicUsize,
    // New keys refused at the cap since the last cap-triggered sweep; starts one short of
    // the threshold so that the first new key at a full map sweeps.
    refused: AtomicUsize,
    sweeps: AtomicU64,
}

impl KeyCap {
    /// No cap: the map grows until swept explicitly.
    pub(crate) fn unbounded() -> Self {
        Self {
            max_keys: AtomicUsize::new(usize::MAX),
            refused: AtomicUsize::new(0),
            sweeps: AtomicU64::new(0),
        }
    }

    /// At most `max_keys` keys (`0` is treated as 1).
    #[cfg(test)]
    pub(crate) fn at_most(max_keys: usize) -> Self {
        let cap = Self::unbounded();
        cap.set_max_keys(max_keys);
        cap
    }

    /// Caps the map at `max_keys` keys (`0` is treated as 1).
    pub(crate) fn set_max_keys(&self, max_keys: usize) {
        let max_keys = max_keys.max(1);
        self.refused
            .store(sweep_every(max_keys) - 1, Ordering::Relaxed);
        self.max_keys.store(max_keys, Ordering::Relaxed);
    }

    /// The cap (`usize::MAX` when unbounded).
    pub(crate) fn max_keys(&self) -> usize {
        self.max_keys.load(Ordering::Relaxed)
    }

    /// Sweeps the cap has run since creation.
    pub(crate) fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Relaxed)
    }

    /// Whether a new key may be added to a map holding `len()` keys. A full map runs
    /// `sweep` when its turn has come (see the module docs) and then looks again.
    #[inline]
    pub(crate) fn has_room(&self, len: impl Fn() -> usize, sweep: impl FnOnce()) -> bool {
        let max_keys = self.max_keys();
        if max_keys == usize::MAX || len() < max_keys {
            return true;
        }
        let threshold = sweep_every(max_keys);
        let refused = self
            .refused
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        // One racing caller wins the reset and sweeps; the others are refused at once.
        if refused >= threshold
            && self
                .refused
                .compare_exchange(refused, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweeps.fetch_add(1, Ordering::Relaxed);
            sweep();
            if len() < max_keys {
                return true;
            }
        }
        tracing::debug!(target: "backstop_limit", max_keys, "key cap reached; new key refused");
        false
    }
}

fn sweep_every(max_keys: usize) -> usize {
    (max_keys / SWEEP_DIVISOR).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_full_map_sweeps_once_per_eighth_of_its_cap() {
        let cap = KeyCap::at_most(800);
        let sweeps = Cell::new(0u32);
        let refusals = 10_000;
        for _ in 0..refusals {
            assert!(!cap.has_room(|| 800, || sweeps.set(sweeps.get() + 1)));
        }
        // The first refusal sweeps, then one sweep per 100 refusals.
        assert_eq!(sweeps.get(), 1 + (refusals - 1) / 100);
        assert_eq!(cap.sweeps(), u64::from(sweeps.get()));
        assert!(cap.has_room(|| 799, || unreachable!("room without a sweep")));
        assert!(KeyCap::unbounded().has_room(|| usize::MAX, || unreachable!()));
    }

    #[test]
    fn a_sweep_that_frees_room_admits_the_key() {
        let cap = KeyCap::at_most(0);
        let len = Cell::new(1);
        assert!(cap.has_room(|| len.get(), || len.set(0)));
    }
}
