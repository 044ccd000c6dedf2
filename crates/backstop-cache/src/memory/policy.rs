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

use std::collections::VecDeque;

use hashbrown::HashTable;

/// An entry's access bits, kept in one byte so a hit costs one relaxed load and at most
/// one relaxed store. The low two bits are S3-FIFO's saturating access count, spent one
/// per second chance; the next four count hits not yet folded into the frequency
/// sketch, which the eviction hand adds when it passes the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access(pub(crate) u8);

impl Access {
    const MAX_CHANCES: u8 = 3;
    const MAX_UNFOLDED: u8 = 15;

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

/// Recently evicted key hashes: a key that comes back soon after it was evicted from
/// the probationary queue has proven itself and goes straight to the main queue.
///
/// The members are key hashes, already uniformly spread, so they index the table as
/// they are instead of being hashed a second time.
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    /// `(hash, seq)` of each remembered hash, `seq` telling its latest record apart.
    members: HashTable<(u64, u64)>,
    order: VecDeque<(u64, u64)>,
    seq: u64,
}

impl Ghost {
    /// Remembers `hash`, forgetting the oldest hashes beyond `capacity`.
    pub(crate) fn insert(&mut self, hash: u64, capacity: usize) {
        if capacity == 0 {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        // Only evicted keys arrive here, and a key entering the cache always leaves the
        // ghost first, so the hash is not a member; no lookup is needed before inserting.
        self.members.insert_unique(hash, (hash, seq), |&(h, _)| h);
        self.order.push_back((hash, seq));
        while self.members.len() > capacity {
            let Some((h, s)) = self.order.pop_front() else {
                break;
            };
            if let Ok(m) = self.members.find_entry(h, |&(mh, ms)| mh == h && ms == s) {
                m.remove();
            }
        }
        // Re-inserted and removed hashes leave stale records behind; drop them in bulk
        // so the queue stays proportional to the live set.
        if self.order.len() > 2 * self.members.len() + 64 {
            let members = &self.members;
            self.order
                .retain(|&(h, s)| members.find(h, |&(mh, ms)| mh == h && ms == s).is_some());
        }
    }

    /// Forgets `hash`, returning whether it was remembered.
    pub(crate) fn remove(&mut self, hash: u64) -> bool {
        self.take(hash).is_some()
    }

    /// Forgets `hash`, returning how many hashes were remembered after it (0 for the
    /// latest), or `None` if it was not remembered.
    pub(crate) fn take(&mut self, hash: u64) -> Option<u64> {
        match self.members.find_entry(hash, |&(h, _)| h == hash) {
            Ok(m) => {
                let ((_, seq), _) = m.remove();
                Some(self.seq - seq)
            }
            Err(_) => None,
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.members.clear();
        self.order.clear();
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
        assert_eq!((a.chances(), a.unfolded()), (3, 15));
        assert!(a.saturated() && a.hit() == a);
        let a = a.second_chance();
        assert!(!a.saturated());
        assert_eq!((a.chances(), a.unfolded()), (2, 0));
        assert_eq!(a.hit().unfolded(), 1);
        assert_eq!(Access(0).second_chance(), Access(0));
    }

    #[test]
    fn ghost_is_bounded_and_forgets_oldest() {
        let mut g = Ghost::default();
        for h in 0..10 {
            g.insert(h, 4);
        }
        assert!(!g.remove(5));
        assert!(g.remove(6));
        assert!(g.remove(9));
        assert!(!g.remove(9));
    }

    #[test]
    fn ghost_tells_how_long_ago_a_hash_was_remembered() {
        let mut g = Ghost::default();
        for h in 0..10 {
            g.insert(h, 100);
        }
        assert_eq!(g.take(9), Some(0));
        assert_eq!(g.take(2), Some(7));
        assert_eq!(g.take(2), None);
    }

    #[test]
    fn ghost_with_zero_capacity_remembers_nothing() {
        let mut g = Ghost::default();
        g.insert(1, 0);
        assert!(!g.remove(1));
    }
}
