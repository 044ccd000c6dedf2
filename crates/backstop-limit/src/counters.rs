//! Admitted/rejected counters cheap enough for a check that costs about ten nanoseconds.
//!
//! One shared `fetch_add` per check cost as much as the GCRA decision itself (a second
//! locked instruction, and a cache line both threads fight over when contended). Instead
//! each thread owns a stripe: while a thread holds a stripe no other thread writes to it, so
//! an increment is a plain load and store on a line only that thread touches. Stripes are
//! leased per thread for the whole process (every limiter uses the same index) and returned
//! when the thread exits; threads beyond the stripe count share one last stripe with
//! `fetch_add`. `stats()` sums the stripes, so counts stay exact.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes a thread can own exclusively; more threads share the overflow stripe.
const EXCLUSIVE: usize = 16;
/// The index of the shared overflow stripe, also "no exclusive stripe".
const SHARED: usize = EXCLUSIVE;
const UNASSIGNED: usize = usize::MAX;

/// Stripe indices never handed out yet start here; returned ones wait in `FREE`.
static NEXT: AtomicUsize = AtomicUsize::new(0);
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

thread_local! {
    // Const and without a destructor, so reading it is one thread-local load and it stays
    // readable while the thread's other thread-locals are torn down.
    static STRIPE: Cell<usize> = const { Cell::new(UNASSIGNED) };
    static LEASE: RefCell<Option<Lease>> = const { RefCell::new(None) };
}

/// Returns a thread's exclusive stripe when the thread exits.
struct Lease(usize);

impl Drop for Lease {
    fn drop(&mut self) {
        // Checks made later in this thread's teardown go to the shared stripe.
        let _ = STRIPE.try_with(|s| s.set(SHARED));
        if let Ok(mut free) = FREE.lock() {
            free.push(self.0);
        }
    }
}

fn lease_stripe() -> usize {
    let reused = FREE.lock().ok().and_then(|mut free| free.pop());
    let index = reused.unwrap_or_else(|| {
        NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < EXCLUSIVE).then_some(n + 1)
        })
        .unwrap_or(SHARED)
    });
    if index == SHARED {
        return SHARED;
    }
    let registered = LEASE.try_with(|lease| *lease.borrow_mut() = Some(Lease(index)));
    if registered.is_err() {
        // The thread is exiting: nothing would return the stripe, so do not keep it.
        if let Ok(mut free) = FREE.lock() {
            free.push(index);
        }
        return SHARED;
    }
    index
}

#[inline]
fn current_stripe() -> usize {
    let index = STRIPE.try_with(Cell::get).unwrap_or(SHARED);
    if index != UNASSIGNED {
        return index;
    }
    let index = lease_stripe();
    let _ = STRIPE.try_with(|s| s.set(index));
    index
}

#[derive(Default)]
#[repr(align(64))]
struct Stripe {
    admitted: AtomicU64,
    rejected: AtomicU64,
}

/// Admitted/rejected counters shared by the limiters.
///
/// The stripes are inline rather than boxed: a check then touches no pointer besides the
/// limiter itself.
pub(crate) struct Counters {
    stripes: [Stripe; SHARED + 1],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            stripes: std::array::from_fn(|_| Stripe::default()),
        }
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counters")
            .field("admitted", &self.admitted())
            .field("rejected", &self.rejected())
            .finish()
    }
}

impl Counters {
    #[inline(always)]
    pub(crate) fn record<T, E>(&self, result: &Result<T, E>) {
        let index = current_stripe();
        let Some(stripe) = self.stripes.get(index) else {
            return;
        };
        let counter = if result.is_ok() {
            &stripe.admitted
        } else {
            &stripe.rejected
        };
        if index == SHARED {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            // Only this thread writes this stripe while it holds the lease, and the lease
            // changes hands through `FREE`'s lock, so no increment is lost.
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
    }

    pub(crate) fn admitted(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.admitted.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.rejected.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_are_exact_with_more_threads_than_stripes() {
        let counters = Arc::new(Counters::default());
        let threads = EXCLUSIVE * 2 + 3;
        let per_thread = 2_000u64;
        // Threads start and exit in waves so stripes are returned and leased again.
        for wave in 0..2 {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let counters = counters.clone();
                    std::thread::spawn(move || {
                        for i in 0..per_thread {
                            let result: Result<(), ()> = if (i + t as u64 + wave).is_multiple_of(3)
                            {
                                Err(())
                            } else {
                                Ok(())
                            };
                            counters.record(&result);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
        let total = 2 * threads as u64 * per_thread;
        assert_eq!(counters.admitted() + counters.rejected(), total);
        let rejected: u64 = (0..2u64)
            .flat_map(|wave| {
                (0..threads as u64)
                    .flat_map(move |t| (0..per_thread).filter(move |i| (i + t + wave) % 3 == 0))
            })
            .count() as u64;
        assert_eq!(counters.rejected(), rejected);
    }
}
