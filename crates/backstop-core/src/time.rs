//! Time arithmetic that cannot overflow: every deadline a Backstop primitive computes goes
//! through here, so even a duration that slipped past validation cannot panic or hang.
//! Also the one calendar conversion ([`days_from_civil`]) and timestamp reader
//! ([`parse_timestamp`]) that traces, series and calendar budgets share.

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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`); negative before 1970.
///
/// ```
/// use backstop_core::time::days_from_civil;
///
/// assert_eq!(days_from_civil(1970, 1, 1), 0);
/// assert_eq!(days_from_civil(2000, 3, 1), 11_017);
/// assert_eq!(days_from_civil(1969, 12, 31), -1);
/// ```
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Which date-and-time spellings [`parse_timestamp`] accepts besides the strict
/// `YYYY-MM-DD HH:MM:SS` (`T` for the space, fractional seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampRules {
    /// `HH:MM` with the seconds left out, read as `:00`.
    pub optional_seconds: bool,
    /// A trailing `Z` (the time is read as UTC either way).
    pub utc_suffix: bool,
    /// Only years 0 to 9999.
    pub four_digit_years: bool,
}

impl TimestampRules {
    /// Seconds required, no suffix, years 0 to 9999.
    pub const STRICT: Self = Self {
        optional_seconds: false,
        utc_suffix: false,
        four_digit_years: true,
    };
    /// Seconds optional, a trailing `Z` accepted, any year.
    pub const LENIENT: Self = Self {
        optional_seconds: true,
        utc_suffix: true,
        four_digit_years: false,
    };
}

/// Seconds since the Unix epoch of a plain number of seconds (`12.5`) or of a UTC date and
/// time (`2014-07-01 00:30:00`, `T` also accepted) spelled as `rules` allow; `None` for
/// anything else or an out-of-range field.
///
/// ```
/// use backstop_core::time::{TimestampRules, parse_timestamp};
///
/// assert_eq!(parse_timestamp("12.5", TimestampRules::STRICT), Some(12.5));
/// assert_eq!(
///     parse_timestamp("2000-03-01T00:00:01", TimestampRules::STRICT),
///     Some(951_868_801.0)
/// );
/// assert_eq!(parse_timestamp("2014-07-01 00:30Z", TimestampRules::STRICT), None);
/// assert_eq!(
///     parse_timestamp("2014-07-01 00:30Z", TimestampRules::LENIENT),
///     Some(1_404_174_600.0)
/// );
/// ```
pub fn parse_timestamp(text: &str, rules: TimestampRules) -> Option<f64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let time = if rules.utc_suffix {
        time.trim_end_matches('Z')
    } else {
        time
    };
    let mut hms = time.splitn(3, ':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let second: f64 = match hms.next() {
        Some(second) => second.parse().ok()?,
        None if rules.optional_seconds => 0.0,
        None => return None,
    };
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0.0..61.0).contains(&second)
        && (!rules.four_digit_years || (0..=9999).contains(&year));
    valid.then(|| {
        (days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60) as f64 + second
    })
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
