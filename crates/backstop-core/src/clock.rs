//! Monotonic time sources that sync hot paths read instead of calling `Instant::now()`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic source of [`Instant`]s.
///
/// Limiters, breakers and policies read time through a `Clock` so that tests and
/// simulations can drive time by hand with [`ManualClock`] while production code uses the
/// zero-sized [`SystemClock`]. `now()` is called on hot paths, so implementations must be
/// cheap and never block.
///
/// ```
/// use backstop_core::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now() - start, Duration::from_millis(250));
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current instant. Successive calls never go backwards.
    fn now(&self) -> Instant;

    /// The current time as nanoseconds since an origin of the clock's choosing, for hot
    /// paths that keep time in one integer (a GCRA cell in an `AtomicU64`). Only
    /// differences between readings of one clock mean anything. Counter-based clocks
    /// override it to skip building an `Instant`.
    fn now_nanos(&self) -> u64 {
        // Far enough back that no reading of any clock in this process falls before it
        // (a paused tokio clock can read earlier than the moment this is first called).
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(|| {
            let now = Instant::now();
            [86_400 * 365, 86_400, 3_600]
                .into_iter()
                .find_map(|secs| now.checked_sub(std::time::Duration::from_secs(secs)))
                .unwrap_or(now)
        });
        u64::try_from(self.now().saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The operating system's monotonic clock (`Instant::now()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Tokio's clock (`tokio::time::Instant::now()`), feature `tokio`: it stops while a test
/// pauses Tokio time and jumps when the test advances it, so a primitive that keeps
/// timestamps through a [`Clock`] and sleeps on Tokio timers sees one time line in
/// `#[tokio::test(start_paused = true)]` tests. Outside paused tests it reads the OS clock.
///
/// ```
/// use backstop_core::{Clock, TokioClock};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let start = TokioClock.now();
/// tokio::time::sleep(Duration::from_secs(3600)).await;
/// assert_eq!(TokioClock.now() - start, Duration::from_secs(3600));
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokioClock;

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// The clock a primitive reads when none is given: `QuantaClock` when this crate's
/// `quanta` feature is on (as governor defaults to quanta), else [`SystemClock`].
///
/// It is one type whichever the feature, so code naming it builds the same either way;
/// only its source changes. Paths that read the time on every call (an open breaker's
/// rejection, a limiter's check) spend most of their budget on the clock, and the
/// counter read is about 2.5 times cheaper than the OS clock's.
///
/// ```
/// use backstop_core::{Clock, DefaultClock};
///
/// let clock = DefaultClock::default();
/// let start = clock.now_nanos();
/// assert!(clock.now_nanos() >= start);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DefaultClock {
    #[cfg(feature = "quanta")]
    source: QuantaClock,
    #[cfg(not(feature = "quanta"))]
    source: SystemClock,
}

impl Clock for DefaultClock {
    #[inline]
    fn now(&self) -> Instant {
        self.source.now()
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        self.source.now_nanos()
    }
}

/// A clock that only moves when told to; clones share one time line.
///
/// Cloning is an `Arc` bump, so one `ManualClock` can be handed to every component of a
/// test or simulation and advanced once for all of them. Reading it is one atomic load.
///
/// ```
/// use backstop_core::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.elapsed(), Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualClockState>,
}

struct ManualClockState {
    origin: Instant,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at an arbitrary origin instant; it stays there until advanced.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ManualClockState {
                origin: Instant::now(),
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves time forward by `by` for this clock and every clone of it.
    ///
    /// Saturates instead of wrapping after roughly 584 years of simulated time.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let mut current = self.inner.offset_nanos.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(by);
            match self.inner.offset_nanos.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// How far this clock has been advanced since it was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.offset_nanos.load(Ordering::Acquire))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Instant {
        self.inner.origin + self.elapsed()
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        self.inner.offset_nanos.load(Ordering::Acquire)
    }
}

/// A clock read from the CPU's time-stamp counter through `quanta` (feature `quanta`),
/// about 2.5 times cheaper to read than [`SystemClock`] (see `cargo bench --bench core`,
/// group `clock_now`); it is the clock governor and moka use.
///
/// Its instants are anchored to `Instant::now()` when the clock is created and then
/// advance with the calibrated counter, so they may drift from the OS clock by the
/// calibration error (parts per million) over a long uptime. Use it where only
/// differences between its own readings matter, such as a limiter's or breaker's
/// windows; use [`SystemClock`] where instants are compared with the OS clock.
/// `quanta` falls back to the OS clock on machines without a reliable counter.
///
/// ```
/// use backstop_core::{Clock, QuantaClock};
///
/// let clock = QuantaClock::new();
/// let start = clock.now();
/// assert!(clock.now() >= start);
/// ```
#[cfg(feature = "quanta")]
#[derive(Clone)]
pub struct QuantaClock {
    counter: quanta::Clock,
    counter_origin: quanta::Instant,
    /// The same moment as `counter_origin`, unscaled: `now_nanos` scales only the delta.
    raw_origin: u64,
    /// Nanoseconds per 2^32 counter ticks, read once from quanta's calibration, so that
    /// `now_nanos` scales a delta with one widening multiply and no call into quanta.
    nanos_per_2_32_ticks: u64,
    origin: Instant,
}

#[cfg(feature = "quanta")]
impl QuantaClock {
    /// Calibrates the counter (once per process, inside `quanta`) and anchors it to now.
    pub fn new() -> Self {
        let counter = quanta::Clock::new();
        let raw_origin = counter.raw();
        let counter_origin = counter.scaled(raw_origin);
        Self {
            nanos_per_2_32_ticks: counter.delta_as_nanos(0, 1 << 32),
            counter,
            counter_origin,
            raw_origin,
            origin: Instant::now(),
        }
    }
}

#[cfg(feature = "quanta")]
impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "quanta")]
impl fmt::Debug for QuantaClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantaClock").finish_non_exhaustive()
    }
}

#[cfg(feature = "quanta")]
impl Clock for QuantaClock {
    #[inline]
    fn now(&self) -> Instant {
        self.origin + self.counter.now().duration_since(self.counter_origin)
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        // One counter read and one widening multiply; no `Duration` in between. A counter
        // read behind the origin (another core's counter, slightly behind) counts as 0.
        let ticks = self.counter.raw().saturating_sub(self.raw_origin);
        ((u128::from(ticks) * u128::from(self.nanos_per_2_32_ticks)) >> 32) as u64
    }
}

// A shared or boxed clock reads the clock it points to.
macro_rules! forward_clock {
    ($($pointer:ty),+) => {$(
        impl<C: Clock + ?Sized> Clock for $pointer {
            #[inline]
            fn now(&self) -> Instant {
                (**self).now()
            }

            #[inline]
            fn now_nanos(&self) -> u64 {
                (**self).now_nanos()
            }
        }
    )+};
}

forward_clock!(Arc<C>, Box<C>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_stands_still_until_advanced() {
        let clock = ManualClock::new();
        let first = clock.now();
        assert_eq!(clock.now(), first);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(clock.now() - first, Duration::from_nanos(1));
    }

    #[test]
    fn clones_share_one_time_line() {
        let clock = ManualClock::new();
        let clone = clock.clone();
        let start = clone.now();
        clock.advance(Duration::from_secs(3));
        clone.advance(Duration::from_secs(4));
        assert_eq!(clock.now() - start, Duration::from_secs(7));
        assert_eq!(clone.elapsed(), Duration::from_secs(7));
    }

    #[test]
    fn advance_saturates_instead_of_wrapping() {
        let clock = ManualClock::new();
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn concurrent_advances_are_all_counted() {
        let clock = ManualClock::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let clock = clock.clone();
                scope.spawn(move || {
                    for _ in 0..1000 {
                        clock.advance(Duration::from_micros(1));
                    }
                });
            }
        });
        assert_eq!(clock.elapsed(), Duration::from_millis(4));
    }

    #[test]
    fn nanos_advance_with_the_clock() {
        let manual = ManualClock::new();
        let start = manual.now_nanos();
        manual.advance(Duration::from_micros(3));
        assert_eq!(manual.now_nanos() - start, 3_000);
        let system = SystemClock;
        let (a, b) = (system.now_nanos(), system.now_nanos());
        assert!(b >= a);
    }

    #[cfg(feature = "quanta")]
    #[test]
    fn quanta_nanos_track_its_instants() {
        let clock = QuantaClock::new();
        let (nanos, instant) = (clock.now_nanos(), clock.now());
        for _ in 0..1000 {
            std::hint::black_box(clock.now());
        }
        let nanos_elapsed = clock.now_nanos() - nanos;
        let instant_elapsed = clock.now() - instant;
        let skew = Duration::from_nanos(nanos_elapsed).abs_diff(instant_elapsed);
        assert!(skew < Duration::from_millis(1), "skew {skew:?}");
    }

    #[test]
    fn default_nanos_do_not_freeze_for_instants_before_the_first_call() {
        // Like a paused tokio clock: readings from before this process first asked.
        struct Behind(ManualClock, Instant);
        impl Clock for Behind {
            fn now(&self) -> Instant {
                self.1 + self.0.elapsed()
            }
        }
        let _ = SystemClock.now_nanos();
        let manual = ManualClock::new();
        let behind = Behind(manual.clone(), Instant::now() - Duration::from_secs(60));
        let first = behind.now_nanos();
        manual.advance(Duration::from_micros(5));
        assert_eq!(behind.now_nanos() - first, 5_000);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock;
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }

    #[cfg(feature = "quanta")]
    #[test]
    fn quanta_clock_tracks_the_system_clock() {
        let fast = QuantaClock::new();
        let (fast_start, system_start) = (fast.now(), Instant::now());
        let mut previous = fast_start;
        for _ in 0..10_000 {
            let now = fast.now();
            assert!(now >= previous);
            previous = now;
        }
        let fast_elapsed = fast.now() - fast_start;
        let system_elapsed = system_start.elapsed();
        let skew = fast_elapsed.abs_diff(system_elapsed);
        assert!(skew < Duration::from_millis(5), "skew {skew:?}");
    }

    #[test]
    fn dyn_clock_behind_arc_reads_the_shared_clock() {
        let manual = ManualClock::new();
        let erased: Arc<dyn Clock> = Arc::new(manual.clone());
        let start = erased.now();
        manual.advance(Duration::from_millis(10));
        assert_eq!(erased.now() - start, Duration::from_millis(10));
    }
}
