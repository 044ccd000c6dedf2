//! Admitted/rejected counts for a check that costs about ten nanoseconds, on the one
//! striped counter implementation in `backstop_core` (a plain load and store per check on
//! a cache line only the calling thread writes).

use backstop_core::StripedCounters;

const ADMITTED: usize = 0;
const REJECTED: usize = 1;

/// Admitted/rejected counters shared by the limiters.
#[derive(Default, Debug)]
pub(crate) struct Counters(StripedCounters<2>);

impl Counters {
    #[inline(always)]
    pub(crate) fn record<T, E>(&self, result: &Result<T, E>) {
        self.0.add(if result.is_ok() { ADMITTED } else { REJECTED });
    }

    pub(crate) fn admitted(&self) -> u64 {
        self.0.get(ADMITTED)
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.0.get(REJECTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_apart() {
        let counters = Counters::default();
        counters.record(&Ok::<(), ()>(()));
        counters.record(&Ok::<(), ()>(()));
        counters.record(&Err::<(), ()>(()));
        assert_eq!((counters.admitted(), counters.rejected()), (2, 1));
    }
}
