//! Online tuning of the probationary queue's share from ghost hits, as ARC sizes its
//! recency side.
//!
//! No fixed share wins everywhere: Zipf traffic wants a tiny probationary queue (its
//! one-hit wonders leave at once, and the ghost queue plus the admission test pick the
//! keepers), while block-I/O traces with weak locality want a larger one (a key needs
//! time to show a second access before it is judged). The cache measures which side is
//! short: a key asked for again soon after it left probation (within a window of
//! evictions) would have hit had probation been that much longer, and a key asked for
//! again soon after it left main would have hit had main been longer. Each such miss
//! moves the share a small geometric step towards the side that missed it (a key back
//! from probation that then loses the admission test, a smaller one), so the share
//! settles where both sides lose hits at the same rate at the margin, which is where
//! moving capacity between them stops paying.
//!
//! Why not hill climbing on the hit ratio (Caffeine's window): it compares consecutive
//! samples, and real traces change phase faster than a sample of ten lookups per entry;
//! on the ARC traces and on a loop the climber chased those swings across the whole
//! range and lost up to three points against a fixed share. Ghost hits compare the two
//! sides within the same stretch of traffic, and a loop longer than the cache, which
//! brings nothing back within the window, leaves the share where it is.
//!
//! There is one share per cache, shared by every shard, so it does not depend on the
//! shard count. Shards read it with one relaxed load when they evict and nudge it, on
//! the insert path only, with one compare-and-swap.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The smallest and largest share of capacity the probationary queue is tuned within.
pub(crate) const MIN_SMALL_SHARE: f64 = 0.001;
pub(crate) const MAX_SMALL_SHARE: f64 = 0.5;

/// The window, as a share of a shard's capacity: a key that comes back within this many
/// evictions of its queue counts as that queue's miss.
pub(crate) const WINDOW_SHARE: f64 = 0.05;

/// The ghost queue grows as the probationary share to this power: 50 times the share
/// (0.002 to 0.1) gives 4 times the ghost.
const GHOST_EXPONENT: f64 = 0.354;

/// The probationary queue's share of capacity, tuned online or fixed.
#[derive(Debug)]
pub(crate) struct Tuning {
    /// The share as `f64` bits.
    small_share: AtomicU64,
    adaptive: bool,
    /// Doublings of the share per ghost hit.
    step: f64,
    /// The configured share, where the ghost queue has its configured length.
    initial: f64,
}

impl Tuning {
    /// A share starting at `small_share`, moved by ghost hits when `adaptive`, for a
    /// cache of `capacity`.
    ///
    /// A ghost hit moves the share by one window's worth of a doubling: a window's
    /// worth of unanswered misses on one side doubles or halves it. Traffic comes in
    /// phases that favour one side for thousands of requests; a fixed step per hit (one
    /// in 64 was tried) swung the share from bound to bound within a phase of the ARC
    /// traces at 50,000 entries, while steps that shrink with the window keep the
    /// share where the two sides balance on average.
    pub(crate) fn new(small_share: f64, adaptive: bool, capacity: u64) -> Self {
        let share = if adaptive {
            small_share.clamp(MIN_SMALL_SHARE, MAX_SMALL_SHARE)
        } else {
            small_share
        };
        Self {
            small_share: AtomicU64::new(share.to_bits()),
            adaptive,
            step: 1.0 / (capacity as f64 * WINDOW_SHARE).max(64.0),
            initial: share,
        }
    }

    /// The probationary queue's current share of capacity (shards read it through
    /// [`ShareView`]).
    #[cfg(test)]
    pub(crate) fn small_share(&self) -> f64 {
        f64::from_bits(self.small_share.load(Relaxed))
    }

    /// How much longer than configured the ghost queue is at probationary share
    /// `share`: it grows with the share (×4 at a share of 0.1 from the default 0.002),
    /// because traffic that needs a longer probation also brings keys back later.
    fn ghost_scale_at(&self, share: f64) -> f64 {
        if !self.adaptive {
            return 1.0;
        }
        (share / self.initial).powf(GHOST_EXPONENT).clamp(1.0, 8.0)
    }

    /// A key came back soon after leaving probation: grow probation, by `weight` of a
    /// full step (1 for a key that earns its place in main, less for one that loses the
    /// admission test, see `Shard::admit`).
    pub(crate) fn probation_missed(&self, weight: f64) {
        self.nudge(self.step * weight);
    }

    /// A key came back soon after leaving main: grow main.
    pub(crate) fn main_missed(&self) {
        self.nudge(-self.step);
    }

    fn nudge(&self, doublings: f64) {
        if !self.adaptive {
            return;
        }
        let factor = doublings.exp2();
        // Never fails: the closure always returns a value.
        let _ = self.small_share.fetch_update(Relaxed, Relaxed, |bits| {
            let share = (f64::from_bits(bits) * factor).clamp(MIN_SMALL_SHARE, MAX_SMALL_SHARE);
            Some(share.to_bits())
        });
    }
}

/// A shard's copy of what it derives from [`Tuning`]'s share: probation's target and
/// the ghost queue's length, recomputed only when the share (or, for the ghost, the
/// shard's entry count) has moved since. The share moves on ghost hits, while these are
/// read on every eviction, where `powf` was a tenth of an insert's cost and the float
/// conversions of the target and the ghost length another 28 instructions (callgrind,
/// uniform inserts into a full cache).
#[derive(Debug)]
pub(crate) struct ShareView {
    /// The share (as `f64` bits) the fields below were computed at; `u64::MAX`, a NaN
    /// no share takes, before the first read.
    share_bits: u64,
    capacity: u64,
    /// The configured ghost length per entry.
    ghost_ratio: f64,
    small_target: u64,
    /// `ghost_ratio` times the ghost scale at the share.
    scaled_ratio: f64,
    /// The entry count `ghost_len` was computed for, `usize::MAX` when stale.
    entries: usize,
    ghost_len: usize,
}

impl ShareView {
    /// The view of a shard of `capacity` whose ghost queue is configured at
    /// `ghost_ratio` hashes per entry.
    pub(crate) fn new(capacity: u64, ghost_ratio: f64) -> Self {
        Self {
            share_bits: u64::MAX,
            capacity,
            ghost_ratio,
            small_target: 0,
            scaled_ratio: ghost_ratio,
            entries: usize::MAX,
            ghost_len: 0,
        }
    }

    #[inline]
    fn refresh(&mut self, tuning: &Tuning) {
        let bits = tuning.small_share.load(Relaxed);
        if bits != self.share_bits {
            self.recompute(tuning, bits);
        }
    }

    #[cold]
    fn recompute(&mut self, tuning: &Tuning, bits: u64) {
        let share = f64::from_bits(bits);
        self.share_bits = bits;
        self.small_target = (self.capacity as f64 * share) as u64;
        self.scaled_ratio = self.ghost_ratio * tuning.ghost_scale_at(share);
        self.entries = usize::MAX;
    }

    /// The probationary queue's target at `tuning`'s current share.
    #[inline]
    pub(crate) fn small_target(&mut self, tuning: &Tuning) -> u64 {
        self.refresh(tuning);
        self.small_target
    }

    /// How many hashes the ghost queue keeps for a shard holding `entries`, at
    /// `tuning`'s current share (at least as many as for 16 entries).
    #[inline]
    pub(crate) fn ghost_len(&mut self, tuning: &Tuning, entries: usize) -> usize {
        self.refresh(tuning);
        if entries != self.entries {
            self.entries = entries;
            self.ghost_len = (entries.max(16) as f64 * self.scaled_ratio) as usize;
        }
        self.ghost_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adaptive tuning starting at a 1 % share, after `misses` probation misses of
    /// `weight` each.
    fn adaptive_after_probation_misses(misses: usize, weight: f64) -> Tuning {
        let t = Tuning::new(0.01, true, 1_000);
        for _ in 0..misses {
            t.probation_missed(weight);
        }
        t
    }

    fn assert_share(t: &Tuning, expected: f64) {
        assert!(
            (t.small_share() - expected).abs() < 1e-9,
            "{}",
            t.small_share()
        );
    }

    #[test]
    fn a_fixed_share_never_moves() {
        let t = Tuning::new(0.002, false, 1_000);
        for _ in 0..100 {
            t.probation_missed(1.0);
        }
        assert_eq!(t.small_share(), 0.002);
        assert_eq!(ShareView::new(10_000, 0.5).small_target(&t), 20);
    }

    #[test]
    fn the_ghost_grows_with_the_share_and_never_below_its_configured_length() {
        let t = Tuning::new(0.002, true, 1_000);
        let mut view = ShareView::new(1_000, 1.0);
        assert_eq!(view.ghost_len(&t, 1_000), 1_000);
        assert_eq!(view.small_target(&t), 2);
        t.small_share.store(0.1f64.to_bits(), Relaxed);
        let grown = view.ghost_len(&t, 1_000);
        assert!(grown.abs_diff(4_000) < 50, "{grown}");
        assert_eq!(view.small_target(&t), 100);
        assert_eq!(view.ghost_len(&t, 10), grown * 16 / 1_000);
        t.small_share.store(0.001f64.to_bits(), Relaxed);
        assert_eq!(view.ghost_len(&t, 1_000), 1_000);
        let fixed = Tuning::new(0.2, false, 1_000);
        fixed.small_share.store(0.4f64.to_bits(), Relaxed);
        assert_eq!(ShareView::new(1_000, 1.0).ghost_len(&fixed, 1_000), 1_000);
    }

    #[test]
    fn misses_move_the_share_towards_the_side_that_missed() {
        let t = adaptive_after_probation_misses(64, 1.0);
        assert_share(&t, 0.02);
        for _ in 0..128 {
            t.main_missed();
        }
        assert_share(&t, 0.005);
    }

    #[test]
    fn a_weighted_miss_moves_the_share_by_its_part_of_a_step() {
        let t = adaptive_after_probation_misses(128, 0.5);
        assert_share(&t, 0.02);
    }

    #[test]
    fn the_share_settles_where_both_sides_miss_equally_and_stays_in_bounds() {
        // Probation misses at a rate falling with its share, main at a rate rising:
        // they balance at a share of 0.1.
        let t = Tuning::new(0.002, true, 1_000);
        let mut trace = Vec::new();
        for i in 0..20_000u64 {
            let s = t.small_share();
            let probation_rate = 0.1 / (s + 0.1);
            let main_rate = s / (s + 0.1);
            // A deterministic stand-in for drawing each side's misses at its rate.
            let u = ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64) / (1u64 << 53) as f64;
            if u < probation_rate {
                t.probation_missed(1.0);
            }
            if u < main_rate {
                t.main_missed();
            }
            trace.push(t.small_share());
        }
        for s in &trace[10_000..] {
            assert!(
                (s.log2() - 0.1f64.log2()).abs() < 1.0,
                "share {s} far from 0.1"
            );
        }
        let t = Tuning::new(0.4, true, 1_000);
        for _ in 0..1_000 {
            t.probation_missed(1.0);
        }
        assert_eq!(t.small_share(), MAX_SMALL_SHARE);
        for _ in 0..10_000 {
            t.main_missed();
        }
        assert_eq!(t.small_share(), MIN_SMALL_SHARE);
    }
}
