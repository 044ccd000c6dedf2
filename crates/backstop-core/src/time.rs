//! Time arithmetic that cannot overflow: every deadline a Backstop primitive computes goes
//! through here, so even a duration that slipped past validation cannot panic or hang.

use std::time::Duration;

/// The longest wait any deadline is computed with: about 30 years. `Instant + Duration`
/// panics on overflow, and a wait this long is "never" for every purpose.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `wait`, capped at [`MAX_WAIT`], so that `now + clamp(wait)` never overflows.
///
/// ```
/// use backstop_core::time::{MAX_WAIT, clamp};
/// use std::time::{Duration, Instant};
///
/// let deadline = Instant::now() + clamp(Duration::MAX); // no panic
/// assert!(deadline > Instant::now());
/// assert_eq!(clamp(Duration::from_secs(5)), Duration::from_secs(5));
/// assert_eq!(clamp(Duration::MAX), MAX_WAIT);
/// ```
#[inline]
pub fn clamp(wait: Duration) -> Duration {
    if wait > MAX_WAIT { MAX_WAIT } else { wait }
}

/// `duration` in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// `duration` in whole milliseconds, saturating at `u64::MAX`.
#[inline]
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate() {
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(nanos(Duration::from_micros(3)), 3_000);
        assert_eq!(millis(Duration::from_secs(2)), 2_000);
        let _ = tokio::time::Instant::now() + clamp(Duration::MAX);
    }
}
