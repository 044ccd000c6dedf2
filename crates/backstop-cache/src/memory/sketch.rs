//! A count-min sketch of how often keys were asked for, used to decide whether a key
//! returning from the ghost queue deserves the main queue more than the entry it would
//! push out (the TinyLFU admission test, applied only at that one decision).
//!
//! It is written only under the shard's write lock: misses are counted when the missing
//! key is inserted, and hits are folded in lazily when the eviction hand passes over an
//! entry with its access bits set, so the lock-free hit path never touches it.

/// Odd multipliers that spread one key hash over the four rows.
const SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x85EB_CA77_C2B2_AE63,
];

/// Entries per shard the sketch is sized for at most (a megabyte of counters).
const MAX_ENTRIES: u64 = 1 << 18;

/// Counters per expected entry (a power of two).
const WIDTH_PER_ENTRY: u64 = 4;

/// Additions per entry the sketch is sized for after which every counter is halved.
/// Every key back from the ghost queue into a full shard is tested against main's
/// victim (see `Shard::admit`), so how long old popularity lasts decides how soon a new
/// hot set gets in. On the shifting Zipf workload (1 shard, seeded) aging after 40
/// additions per entry (ten per counter, the earlier setting) scored 0.674, after 10
/// (TinyLFU's sample) 0.686, after 5 0.692 and after 2 0.702; below that it fell again
/// (0.699 after 1.25), and after 0.625 the ARC paper's P2 trace at 50,000 lost a point.
/// The loop keeps its ties at all of these, every counter being halved at once.
const AGE_AFTER_PER_ENTRY: u64 = 2;

/// Counters saturate here (four bits, as in TinyLFU).
const MAX_COUNT: u8 = 15;

#[derive(Debug)]
pub(crate) struct Sketch {
    /// Entries the sketch is sized for.
    entries: u64,
    counters: Vec<u8>,
    shift: u32,
    additions: u64,
    /// After this many additions every counter is halved, so old popularity fades.
    sample: u64,
}

impl Sketch {
    /// A sketch sized for about `entries` live entries (at least 16, at most
    /// `MAX_ENTRIES`).
    pub(crate) fn new(entries: u64) -> Self {
        let entries = entries.clamp(16, MAX_ENTRIES).next_power_of_two();
        // Four counters per entry keep collisions between the keys of a full cache rare
        // enough that ties (a loop's keys) stay ties.
        let width = entries * WIDTH_PER_ENTRY;
        Self {
            entries,
            counters: vec![0; width as usize],
            shift: 64 - width.trailing_zeros(),
            additions: 0,
            sample: entries * AGE_AFTER_PER_ENTRY,
        }
    }

    /// Grows the sketch (forgetting its counts) once the shard holds more than
    /// `entries`. Sizing by what is held rather than by capacity keeps a weight-based
    /// capacity (bytes, tokens) from allocating counters per unit of weight.
    ///
    /// Runs on every insert of a new key; the check is inlined and the growth, which
    /// happens a few times in a shard's life, kept out of line.
    #[inline]
    pub(crate) fn fit(&mut self, entries: u64) {
        if entries > self.entries && self.entries < MAX_ENTRIES {
            self.grow(entries);
        }
    }

    #[cold]
    fn grow(&mut self, entries: u64) {
        *self = Self::new(entries);
    }

    /// The counter of `hash` in each row.
    #[inline]
    fn indices(&self, hash: u64) -> [usize; 4] {
        SEEDS.map(|seed| (hash.wrapping_mul(seed) >> self.shift) as usize)
    }

    /// The estimated number of recent requests for `hash`.
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        self.min_of(&self.indices(hash))
    }

    fn min_of(&self, indices: &[usize; 4]) -> u8 {
        indices.iter().map(|&i| self.counters[i]).min().unwrap_or(0)
    }

    /// Records `count` requests for `hash` (conservative update: only the smallest
    /// counters grow, which keeps over-estimates down). The row indices are computed
    /// once for reading and writing: this runs for every entry the eviction hand gives a
    /// second chance.
    pub(crate) fn add(&mut self, hash: u64, count: u8) {
        if count == 0 {
            return;
        }
        let indices = self.indices(hash);
        let target = self.min_of(&indices).saturating_add(count).min(MAX_COUNT);
        // A store of the larger value rather than a branch: which counters are below the
        // target is a coin toss, and the mispredicted branch cost more than the store.
        for i in indices {
            self.counters[i] = self.counters[i].max(target);
        }
        self.additions += u64::from(count);
        if self.additions >= self.sample {
            self.additions = 0;
            for c in &mut self.counters {
                *c /= 2;
            }
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.counters.fill(0);
        self.additions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_and_age() {
        let mut s = Sketch::new(16);
        assert_eq!(s.frequency(42), 0);
        for _ in 0..20 {
            s.add(42, 1);
        }
        assert_eq!(s.frequency(42), MAX_COUNT);
        // Enough other additions to cross the sample size halve every counter.
        for h in 0..s.sample {
            s.add(h.wrapping_mul(0x2545_F491_4F6C_DD1D), 1);
        }
        assert!(s.frequency(42) < MAX_COUNT);
        s.clear();
        assert_eq!(s.frequency(42), 0);
    }

    #[test]
    fn halves_after_two_additions_per_entry() {
        let mut s = Sketch::new(16);
        for _ in 0..MAX_COUNT {
            s.add(42, 1);
        }
        let others = 16 * AGE_AFTER_PER_ENTRY - u64::from(MAX_COUNT);
        for h in 1..others {
            s.add(h.wrapping_mul(0x2545_F491_4F6C_DD1D), 1);
        }
        assert_eq!(s.frequency(42), MAX_COUNT);
        s.add(7, 1);
        assert_eq!(s.frequency(42), MAX_COUNT / 2);
    }

    #[test]
    fn grows_with_the_entries_held_up_to_a_bound() {
        let mut s = Sketch::new(16);
        s.fit(16);
        assert_eq!(s.counters.len(), 64);
        s.fit(100);
        assert_eq!(s.counters.len(), 128 * 4);
        s.fit(u64::MAX);
        assert_eq!(s.counters.len() as u64, MAX_ENTRIES * 4);
    }

    #[test]
    fn frequent_keys_estimate_higher_than_rare_ones() {
        let mut s = Sketch::new(1024);
        for round in 0..8u64 {
            s.add(7, 1);
            s.add(1000 + round, 1);
        }
        assert!(s.frequency(7) > s.frequency(1000));
    }
}
