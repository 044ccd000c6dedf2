//! Event counters cheap enough for a check that costs about ten nanoseconds: the one
//! counter implementation every Backstop primitive's `stats()` reads.
//!
//! One shared `fetch_add` per check cost as much as a limiter's GCRA decision itself (a
//! second locked instruction, and a cache line both threads fight over when contended). Instead
//! each thread owns a stripe: while a thread holds a stripe no other thread writes to it, so
//! an increment is a plain load and store on a line only that thread touches. Stripes are
//! leased per thread for the whole process (every counter set uses the same index) and returned
//! when the thread exits; threads beyond the stripe count share one last stripe with
//! `fetch_add`. Reading sums the stripes, so counts stay exact.
//!
//! Counters off the hot path — events that each cost a Redis round trip, a loader run or a
//! stream chunk, and gauges that go down as well as up — need no stripes: they are a
//! [`counter_set!`](crate::counter_set), one named `AtomicU64` per event. Both kinds end the
//! same way, read into the `stats()` snapshot field named for the event.

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

#[repr(align(64))]
struct Stripe<const N: usize>([AtomicU64; N]);

/// `N` event counters (admitted, rejected, panics…), striped per thread.
///
/// Increments are exact and cost a plain load and store on a cache line only the calling
/// thread writes; [`get`](Self::get) sums the stripes. The stripes are inline rather than
/// boxed, so a counter set touches no pointer besides its owner.
///
/// ```
/// use backstop_core::StripedCounters;
///
/// const ADMITTED: usize = 0;
/// const REJECTED: usize = 1;
/// let counters = StripedCounters::<2>::new();
/// counters.add(ADMITTED);
/// counters.add(ADMITTED);
/// counters.add(REJECTED);
/// assert_eq!((counters.get(ADMITTED), counters.get(REJECTED)), (2, 1));
/// ```
pub struct StripedCounters<const N: usize> {
    stripes: [Stripe<N>; SHARED + 1],
}

impl<const N: usize> StripedCounters<N> {
    /// `N` counters at zero.
    pub fn new() -> Self {
        Self {
            stripes: std::array::from_fn(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }

    /// Adds one to counter `index` (an index of `N` or more is ignored).
    #[inline(always)]
    pub fn add(&self, index: usize) {
        let stripe = current_stripe();
        let Some(counter) = self.stripes.get(stripe).and_then(|s| s.0.get(index)) else {
            return;
        };
        if stripe == SHARED {
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

    /// Counter `index`'s total over every thread (0 for an index of `N` or more).
    pub fn get(&self, index: usize) -> u64 {
        self.stripes
            .iter()
            .filter_map(|s| s.0.get(index))
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl<const N: usize> Default for StripedCounters<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for StripedCounters<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries((0..N).map(|i| self.get(i))).finish()
    }
}

/// Declares a set of named event counters and how they fill a stats snapshot.
///
/// Each name becomes an `AtomicU64` field, and `read_into(stats)` copies every counter into
/// the field of the same name of the snapshot it is given, so one list of names writes both
/// halves and a counter cannot be added without reaching the snapshot. `bump` adds one to a
/// counter; gauges and larger steps use the atomic's own `fetch_add` and `fetch_sub`.
/// The visibility written before `struct` applies to the type and its fields.
///
/// This is the counter set for events off the hot path (a Redis call, a load, a chunk); a
/// check costing nanoseconds counts with [`StripedCounters`](crate::StripedCounters).
///
/// ```
/// use std::sync::atomic::Ordering;
///
/// #[derive(Debug, Default, PartialEq)]
/// pub struct LoaderStats {
///     pub loads: u64,
///     pub failures: u64,
///     pub in_flight: u64,
///     pub name: &'static str,
/// }
///
/// backstop_core::counter_set! {
///     /// A loader's counters.
///     pub struct LoaderCounters => LoaderStats { loads, failures, in_flight }
/// }
///
/// let counters = LoaderCounters::default();
/// LoaderCounters::bump(&counters.loads);
/// LoaderCounters::bump(&counters.loads);
/// counters.in_flight.fetch_add(3, Ordering::Relaxed);
/// let stats = counters.read_into(LoaderStats { name: "users", ..LoaderStats::default() });
/// assert_eq!(stats, LoaderStats { loads: 2, failures: 0, in_flight: 3, name: "users" });
/// ```
#[macro_export]
macro_rules! counter_set {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident => $stats:ident { $($field:ident),+ $(,)? }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $(
                #[doc = concat!("Fills [`", stringify!($stats), "::", stringify!($field), "`].")]
                $vis $field: ::std::sync::atomic::AtomicU64,
            )+
        }

        impl $name {
            /// Adds one to `counter`.
            #[allow(dead_code)]
            $vis fn bump(counter: &::std::sync::atomic::AtomicU64) {
                counter.fetch_add(1, ::std::sync::atomic::Ordering::Relaxed);
            }

            /// `stats` with each counter's current value in the field of its name.
            $vis fn read_into(&self, mut stats: $stats) -> $stats {
                $(stats.$field = self.$field.load(::std::sync::atomic::Ordering::Relaxed);)+
                stats
            }
        }
    };
}

/// Declares the indices of a [`StripedCounters`] set as `pub(crate)` constants, numbered
/// in the order listed, and `COUNTERS`, how many there are: a counter is added by its name
/// alone, with no number to keep unique and no total to keep in step.
///
/// ```
/// use backstop_core::StripedCounters;
///
/// backstop_core::counter_indices! {
///     ADMITTED,
///     /// Refused for any reason.
///     REJECTED,
/// }
///
/// let counters = StripedCounters::<COUNTERS>::new();
/// counters.add(REJECTED);
/// assert_eq!((ADMITTED, REJECTED, COUNTERS), (0, 1, 2));
/// assert_eq!((counters.get(ADMITTED), counters.get(REJECTED)), (0, 1));
/// ```
#[macro_export]
macro_rules! counter_indices {
    (@from $index:expr; $(#[$attr:meta])* $name:ident $(, $(#[$rest_attr:meta])* $rest:ident)*) => {
        $(#[$attr])*
        pub(crate) const $name: usize = $index;
        $crate::counter_indices!(@from $index + 1; $($(#[$rest_attr])* $rest),*);
    };
    (@from $index:expr;) => {
        /// How many counters there are.
        pub(crate) const COUNTERS: usize = $index;
    };
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        $crate::counter_indices!(@from 0; $($(#[$attr])* $name),+);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_are_exact_with_more_threads_than_stripes() {
        let counters = Arc::new(StripedCounters::<2>::new());
        let threads = EXCLUSIVE * 2 + 3;
        let per_thread = 2_000u64;
        // Threads start and exit in waves so stripes are returned and leased again.
        for wave in 0..2 {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let counters = counters.clone();
                    std::thread::spawn(move || {
                        for i in 0..per_thread {
                            counters.add(usize::from((i + t as u64 + wave).is_multiple_of(3)));
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
        let total = 2 * threads as u64 * per_thread;
        assert_eq!(counters.get(0) + counters.get(1), total);
        let second: u64 = (0..2u64)
            .flat_map(|wave| {
                (0..threads as u64)
                    .flat_map(move |t| (0..per_thread).filter(move |i| (i + t + wave) % 3 == 0))
            })
            .count() as u64;
        assert_eq!(counters.get(1), second);
        assert_eq!(counters.get(2), 0);
    }
}
