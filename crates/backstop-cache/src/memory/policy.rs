//! The admission and eviction policy: S3-FIFO's three queues (a tiny probationary FIFO,
//! a main FIFO with a second chance per access, a ghost queue of recently evicted key
//! hashes) with TinyLFU's frequency test at the one point where S3-FIFO is blind.
//!
//! Why S3-FIFO rather than W-TinyLFU: a hit in S3-FIFO only bumps counters in one byte
//! of the entry, so `get` needs nothing but a shared read lock and at most one relaxed
//! store. W-TinyLFU reorders an LRU list and bumps a sketch on every hit, which forces
//! either a write lock or moka's read buffers that are drained later (and drop hits
//! under contention).
//!
//! Where plain S3-FIFO loses is a working set slightly over capacity (a loop): every key
//! that returns from the ghost queue displaces a main entry that is just as popular, and
//! main churns (0.77 against moka's 0.90 on the hit-ratio bench). So a key back from
//! the ghost queue enters main only if a count-min sketch says it was asked for more
//! often than main's victim (see `sketch.rs`); otherwise it starts over on
//! probation. The sketch is written only under the shard's write lock: misses count
//! when inserted, and hits are folded in from the entry's byte when the eviction hand
//! passes it, so the hit path stays as it was.
//!
//! The probationary queue is tiny (0.2% of capacity, Caffeine's window is 1%): with the
//! ghost queue and the admission test doing the recency and frequency work, a larger
//! probationary queue only held one-hit wonders, and every traced workload lost hit
//! ratio as it grew (sweep of 0.2%–30% with `HIT_RATIO_POLICY`, see the bench). The
//! ghost queue remembers half as many hashes as there are entries, for the same reason.

/// An entry's access bits, kept in one byte so a hit costs one relaxed load and at most
/// one relaxed store. The low two bits are S3-FIFO's saturating access count, spent one
/// per second chance; the next two count hits not yet folded into the frequency
/// sketch, which the eviction hand adds when it passes the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access(pub(crate) u8);

impl Access {
    const MAX_CHANCES: u8 = 3;
    /// Hits counted for the sketch between two passes of the hand. Up to 15 were
    /// counted once, and then a hot entry kept writing its byte for 15 hits after every
    /// pass: under eviction, whether a hit found the byte saturated became a coin toss,
    /// and the mispredicted branch on it cost 3 ns of `cache_mixed`'s 25 (quick_cache:
    /// 18.5). Counting up to 2 brought that to 22.4 ns, and moved no hit-ratio row by
    /// more than 0.3 points (most rose); counting 1 gained another 1.7 ns but let the
    /// shard count move the ARC paper's P2 at 10,000 entries by 0.54 points.
    const MAX_UNFOLDED: u8 = 2;

    /// The bits after one more hit (both counts saturate). Each count below its maximum
    /// is incremented in place, which cannot carry into the next field, so the hit path
    /// spends two compares and an add instead of unpacking and repacking both fields.
    #[inline]
    pub(crate) fn hit(self) -> Self {
        let chances = u8::from(self.chances() < Self::MAX_CHANCES);
        let unfolded = u8::from(self.unfolded() < Self::MAX_UNFOLDED) << 2;
        Self(self.0 + unfolded + chances)
    }

    /// Whether both counts are at their maximum, so that a hit changes nothing.
    #[inline]
    pub(crate) fn saturated(self) -> bool {
        self.0 == Self::MAX_UNFOLDED << 2 | Self::MAX_CHANCES
    }

    /// Second chances left.
    #[inline]
    pub(crate) fn chances(self) -> u8 {
        self.0 & 0b11
    }

    /// Hits not yet counted in the sketch.
    #[inline]
    pub(crate) fn unfolded(self) -> u8 {
        self.0 >> 2
    }

    /// The bits after a second chance: one chance spent, the hits folded.
    pub(crate) fn second_chance(self) -> Self {
        Self(self.chances().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_bits_saturate_and_fold() {
        let mut a = Access(0);
        for _ in 0..20 {
            a = a.hit();
        }
        assert_eq!((a.chances(), a.unfolded()), (3, Access::MAX_UNFOLDED));
        assert!(a.saturated() && a.hit() == a);
        let a = a.second_chance();
        assert!(!a.saturated());
        assert_eq!((a.chances(), a.unfolded()), (2, 0));
        assert_eq!(a.hit().unfolded(), 1);
        assert_eq!(Access(0).second_chance(), Access(0));
    }
}
