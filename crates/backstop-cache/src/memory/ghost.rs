//! Recently evicted key hashes: a key that comes back soon after it was evicted from
//! the probationary queue has proven itself (see `Shard::admit`).
//!
//! A table of buckets, each four records of a hash's upper 36 bits and the insertion
//! number that remembered it; a record is alive while fewer than `capacity` insertions
//! followed it. An insertion overwrites its bucket's oldest record, so forgetting costs
//! nothing, and a lookup reads one 32-byte bucket. The earlier ghost, a hash set beside
//! a queue of insertion order, kept exact books at four times the cost: 148
//! instructions of an evicting insert's 787 against 38 of 696 now (callgrind, uniform
//! inserts into a full cache), in a hash table insert, a queue push and the removal of
//! the oldest hash.
//!
//! The table holds two records for every hash it must remember (up to four, being a
//! power of two). With one to two live records per bucket on average, a bucket now and
//! then holds four live records when a fifth arrives and the oldest goes early: of the
//! hashes it should remember, the ghost keeps 99.5 % at one live record per bucket and
//! 96 % at two (random hashes, see the tests). Four to eight records per hash, as first
//! built, kept 99.5 % or more, but then the table was the largest structure of a
//! churning cache: 86 bytes per entry in all against 78 now (the `cache_memory` line of
//! the hit-ratio bench, which fills a cache three times over; the budget is 83), and
//! evicting inserts were about 5 % slower, missing on a table as large as the L2 cache.
//! No line of the hit-ratio bench moved by more than 0.14 points between the two. The
//! bits kept, less those the bucket and the shard imply, leave a lookup of an absent
//! hash about a one-in-100,000 chance of a false match (a ghost of 16,000 hashes in one
//! of 8 shards); that only touches the policy's precision.

/// Records per bucket: four `u64`, half a cache line.
const WAYS: usize = 4;

/// Bits of the insertion number kept in a record; the hash keeps the other 36, of
/// which the bucket index takes the low ones.
const SEQ_BITS: u32 = 28;

/// The insertion numbers run from `FIRST` to `SEQ_MAX`; when they run out, the ghost
/// starts over empty, once every 252 million insertions.
const SEQ_MAX: u32 = (1 << SEQ_BITS) - 1;

/// The most hashes one ghost remembers (its table then takes half a gigabyte).
const MAX_CAPACITY: u32 = 1 << 24;

/// The number before the first insertion's. An empty record (all zeros) then reads as
/// older than any capacity, so a lookup never needs to tell it apart.
const FIRST: u32 = MAX_CAPACITY;

#[derive(Debug)]
pub(crate) struct Ghost {
    buckets: Vec<[u64; WAYS]>,
    /// The latest insertion's number (`FIRST` before the first): every record's is at
    /// most this, so a record's age is the difference and an empty record is the oldest.
    seq: u32,
    /// How many of the latest insertions are remembered.
    capacity: u32,
}

impl Default for Ghost {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            seq: FIRST,
            capacity: 0,
        }
    }
}

impl Ghost {
    /// Remembers `hash` among the latest `capacity` hashes.
    pub(crate) fn insert(&mut self, hash: u64, capacity: usize) {
        self.capacity = capacity.min(MAX_CAPACITY as usize) as u32;
        if self.capacity == 0 {
            return;
        }
        if self.buckets.len() * WAYS < 2 * self.capacity as usize {
            self.grow();
        }
        if self.seq == SEQ_MAX {
            self.clear();
        }
        self.seq += 1;
        self.place((hash >> SEQ_BITS) << SEQ_BITS | u64::from(self.seq));
    }

    /// Forgets `hash`, returning whether it was remembered.
    pub(crate) fn remove(&mut self, hash: u64) -> bool {
        self.take(hash).is_some()
    }

    /// Forgets `hash`, returning how many hashes were remembered after it (0 for the
    /// latest), or `None` if it was not remembered.
    pub(crate) fn take(&mut self, hash: u64) -> Option<u64> {
        let (seq, capacity) = (self.seq, self.capacity);
        let fingerprint = hash >> SEQ_BITS;
        let bucket = self.bucket_mut(fingerprint)?;
        bucket.iter_mut().find_map(|record| {
            if *record >> SEQ_BITS != fingerprint {
                return None;
            }
            let age = seq - number(*record);
            (age < capacity).then(|| {
                *record = 0;
                u64::from(age)
            })
        })
    }

    /// Forgets everything. Cold: an insertion calls it only once its numbers run out,
    /// and inlined there it put a vectorised fill of the table on the insert path.
    #[cold]
    pub(crate) fn clear(&mut self) {
        self.buckets.fill([0; WAYS]);
        self.seq = FIRST;
    }

    fn bucket_mut(&mut self, fingerprint: u64) -> Option<&mut [u64; WAYS]> {
        let mask = self.buckets.len().checked_sub(1)?;
        self.buckets.get_mut(fingerprint as usize & mask)
    }

    /// Writes `record` over the oldest (or an empty) record of its bucket.
    fn place(&mut self, record: u64) {
        let Some(bucket) = self.bucket_mut(record >> SEQ_BITS) else {
            return;
        };
        // Written out rather than `min_by_key`, which took 46 instructions for four.
        let mut oldest = 0;
        for i in 1..WAYS {
            if number(bucket[i]) < number(bucket[oldest]) {
                oldest = i;
            }
        }
        bucket[oldest] = record;
    }

    /// Grows the table to two records (up to four, a power of two) per remembered
    /// hash, moving the live records: their bucket comes from the kept bits of their
    /// hash.
    #[cold]
    fn grow(&mut self) {
        let buckets = (self.capacity as usize)
            .div_ceil(2)
            .next_power_of_two()
            .max(4);
        let old = std::mem::replace(&mut self.buckets, vec![[0; WAYS]; buckets]);
        let (seq, capacity) = (self.seq, self.capacity);
        for record in old.into_iter().flatten() {
            if seq - number(record) < capacity {
                self.place(record);
            }
        }
    }
}

/// The insertion number of `record` (0 for an empty one, older than any live).
#[inline]
fn number(record: u64) -> u32 {
    (record & u64::from(SEQ_MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spread-out hashes, as the cache's hasher gives.
    fn h(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn ghost_is_bounded_and_forgets_oldest() {
        let mut g = Ghost::default();
        for i in 0..10 {
            g.insert(h(i), 4);
        }
        assert!(!g.remove(h(5)));
        assert!(g.remove(h(6)));
        assert!(g.remove(h(9)));
        assert!(!g.remove(h(9)));
    }

    #[test]
    fn ghost_tells_how_long_ago_a_hash_was_remembered() {
        let mut g = Ghost::default();
        for i in 0..10 {
            g.insert(h(i), 100);
        }
        assert_eq!(g.take(h(9)), Some(0));
        assert_eq!(g.take(h(2)), Some(7));
        assert_eq!(g.take(h(2)), None);
        assert_eq!(g.take(h(10)), None);
    }

    #[test]
    fn ghost_with_zero_capacity_remembers_nothing() {
        let mut g = Ghost::default();
        g.insert(1, 0);
        assert!(!g.remove(1));
    }

    #[test]
    fn growing_keeps_what_is_remembered() {
        let mut g = Ghost::default();
        for i in 0..100 {
            g.insert(h(i), 100);
        }
        g.insert(h(100), 5_000);
        let kept = (0..=100).filter(|&i| g.remove(h(i))).count();
        assert!(kept >= 99, "kept {kept} of 101");
    }

    /// Hashes as random as the cache's hasher makes them (splitmix64's finalizer);
    /// [`h`]'s multiples of the golden ratio spread sequential numbers over the buckets
    /// more evenly than any hasher would.
    fn random(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn few_live_records_are_lost_to_full_buckets() {
        let mut g = Ghost::default();
        // The fullest table: two live records per bucket on average.
        let n = 16_384;
        for i in 0..n {
            g.insert(random(i), n as usize);
        }
        let kept = (0..n).filter(|&i| g.remove(random(i))).count();
        assert!(kept as f64 >= 0.95 * n as f64, "kept {kept} of {n}");
    }

    #[test]
    fn running_out_of_insertion_numbers_starts_over_empty() {
        let mut g = Ghost::default();
        g.insert(h(1), 8);
        g.seq = SEQ_MAX - 1;
        g.insert(h(2), 8);
        assert_eq!(g.take(h(1)), None, "older than the capacity");
        g.insert(h(3), 8);
        assert_eq!(g.seq, FIRST + 1);
        assert_eq!(g.take(h(2)), None, "cleared");
        assert_eq!(g.take(h(3)), Some(0));
    }

    #[test]
    fn an_empty_record_never_matches() {
        let mut g = Ghost::default();
        g.insert(h(1), 8);
        assert_eq!(g.take(0), None);
    }
}
