//! Budget periods: fixed windows aligned to the Unix epoch, and calendar days and months
//! in UTC, all read from one wall clock.

use backstop_core::Clock;
use backstop_core::config::{ConfigError, ensure, ensure_duration};
use serde::{Deserialize, Deserializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MICROS_PER_DAY: u64 = 86_400_000_000;

/// The period a budget quota counts over, and when it starts again from zero.
///
/// Every period is aligned, never rolling: a quota's usage belongs to exactly one period,
/// so a refund or an overrun lands in a known balance and every process (and Redis) agrees
/// on the boundaries without talking to each other.
///
/// - [`Every`](Self::Every)`(d)`: windows of `d` aligned to the Unix epoch, so `60s` starts
///   on the minute and `1h` on the hour (as LiteLLM's RPM/TPM windows do).
/// - [`Day`](Self::Day): the calendar day, reset at 00:00 UTC.
/// - [`Month`](Self::Month): the calendar month, reset at 00:00 UTC on the 1st.
///
/// Calendar periods are what users of a "daily budget" expect (LiteLLM resets a budget at
/// its period's boundary, and providers invoice by calendar month); UTC because a budget
/// shared by processes and Redis must have one boundary for all of them.
///
/// In configuration a period is written `"1m"`, `"1h"` (any human duration), `"day"` or
/// `"month"`.
///
/// ```
/// use backstop_limit::BudgetPeriod;
/// use std::time::Duration;
///
/// assert_eq!(BudgetPeriod::parse("day").unwrap(), BudgetPeriod::Day);
/// assert_eq!(BudgetPeriod::parse("1m").unwrap(), BudgetPeriod::Every(Duration::from_secs(60)));
/// assert!(BudgetPeriod::parse("fortnight").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetPeriod {
    /// Fixed windows of this length aligned to the Unix epoch: at least a millisecond, at
    /// most [`MAX_DURATION`](backstop_core::config::MAX_DURATION).
    Every(Duration),
    /// The calendar day in UTC.
    Day,
    /// The calendar month in UTC.
    Month,
}

impl BudgetPeriod {
    /// The shortest [`Every`](Self::Every) window: one millisecond.
    pub const MIN_WINDOW: Duration = Duration::from_millis(1);

    /// Windows of one minute, aligned to the minute.
    pub const fn minute() -> Self {
        Self::Every(Duration::from_secs(60))
    }

    /// Windows of one hour, aligned to the hour.
    pub const fn hour() -> Self {
        Self::Every(Duration::from_secs(3_600))
    }

    /// Reads `"day"`, `"daily"`, `"month"`, `"monthly"` or a human duration (`"1m"`).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let period = Self::parse_unchecked(text)?;
        period.validate()?;
        Ok(period)
    }

    /// [`parse`](Self::parse) without the bounds, which configuration checks when it is
    /// validated (naming the field by its whole path).
    fn parse_unchecked(text: &str) -> Result<Self, ConfigError> {
        Ok(match text.trim() {
            "day" | "daily" => Self::Day,
            "month" | "monthly" => Self::Month,
            other => Self::Every(backstop_core::duration::parse(other).map_err(|e| {
                ConfigError::new(
                    "period",
                    format!("must be `day`, `month` or a duration: {e}"),
                )
            })?),
        })
    }

    /// Checks the bounds of an [`Every`](Self::Every) window.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Self::Every(window) = *self {
            ensure(window >= Self::MIN_WINDOW, "period", "must be at least 1ms")?;
            ensure_duration("period", window)?;
        }
        Ok(())
    }

    /// The window length in microseconds; 0 stands for the calendar month (the encoding
    /// the Redis scripts read).
    #[inline]
    pub(crate) fn micros(&self) -> u64 {
        match *self {
            Self::Every(window) => u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1),
            Self::Day => MICROS_PER_DAY,
            Self::Month => 0,
        }
    }

    /// The number of the period holding `now` (microseconds since the Unix epoch).
    #[inline]
    pub(crate) fn id(&self, now: u64) -> u64 {
        match self.micros() {
            0 => {
                let (year, month, _) = civil_from_days(now / MICROS_PER_DAY);
                (year - 1970) * 12 + (month - 1)
            }
            window => now / window,
        }
    }

    /// Start and end (microseconds since the Unix epoch) of the period holding `now`.
    /// Out of line and cold: decisions reach it only when a period rolls over, and
    /// inlined into them, the compiler would compute the calendar month ahead of the check
    /// that skips it, on every decision.
    #[cold]
    #[inline(never)]
    pub(crate) fn bounds_at(&self, now: u64) -> (u64, u64) {
        self.bounds(self.id(now))
    }

    /// Start and end (microseconds since the Unix epoch) of period `id`.
    #[inline]
    pub(crate) fn bounds(&self, id: u64) -> (u64, u64) {
        match self.micros() {
            0 => (month_start(id), month_start(id.saturating_add(1))),
            window => (
                id.saturating_mul(window),
                id.saturating_add(1).saturating_mul(window),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for BudgetPeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_unchecked(&text).map_err(|e| serde::de::Error::custom(e.rule().to_string()))
    }
}

/// Written as it is read: `"day"`, `"month"` or a human duration, so a printed
/// configuration reads back equal.
impl serde::Serialize for BudgetPeriod {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Every(window) => {
                serializer.serialize_str(&backstop_core::duration::format(window))
            }
            Self::Day => serializer.serialize_str("day"),
            Self::Month => serializer.serialize_str("month"),
        }
    }
}

/// Microseconds since the Unix epoch of 00:00 UTC on the first day of month number `id`
/// (0 is January 1970).
fn month_start(id: u64) -> u64 {
    let year = 1970 + id / 12;
    let month = id % 12 + 1;
    // From 1970 on the day count is never negative.
    let days = backstop_core::time::days_from_civil(year as i64, month as i64, 1);
    (days as u64).saturating_mul(MICROS_PER_DAY)
}

/// `(year, month, day)` of `days` since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Wall-clock time in microseconds since the Unix epoch, read through a monotonic
/// [`Clock`]: the wall time at creation plus the clock's elapsed time, so tests drive
/// calendar boundaries with `ManualClock` and production never sees the wall clock step
/// backwards.
#[derive(Debug)]
pub(crate) struct WallTime<C> {
    clock: C,
    origin_nanos: u64,
    unix_micros_at_origin: u64,
}

impl<C: Clock> WallTime<C> {
    pub(crate) fn new(clock: C, start: SystemTime) -> Self {
        let origin_nanos = clock.now_nanos();
        let unix_micros_at_origin = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self {
            clock,
            origin_nanos,
            unix_micros_at_origin,
        }
    }

    #[inline]
    pub(crate) fn now_micros(&self) -> u64 {
        let elapsed = self.clock.now_nanos().saturating_sub(self.origin_nanos) / 1_000;
        self.unix_micros_at_origin.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn micros(date: &str) -> u64 {
        // "YYYY-MM-DD" at 00:00 UTC.
        let parts: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
        let (year, month, day) = (parts[0], parts[1], parts[2]);
        backstop_core::time::days_from_civil(year, month, day) as u64 * MICROS_PER_DAY
    }

    #[test]
    fn calendar_months_start_on_the_first_at_midnight_utc() {
        let month = BudgetPeriod::Month;
        // 2024-02-29 12:00 UTC: a leap-year February, 29 days long.
        let now = micros("2024-02-29") + 12 * 3_600_000_000;
        let id = month.id(now);
        assert_eq!(
            month.bounds(id),
            (micros("2024-02-01"), micros("2024-03-01"))
        );
        assert_eq!(month.id(micros("2024-03-01")), id + 1);
        assert_eq!(month.id(micros("2024-03-01") - 1), id);
        assert_eq!(
            month.bounds(month.id(micros("2025-12-31"))).1,
            micros("2026-01-01")
        );
        assert_eq!(micros("1970-01-01"), 0);
        assert_eq!(micros("2000-03-01"), 951_868_800 * 1_000_000);
    }

    #[test]
    fn days_and_fixed_windows_align_to_the_epoch() {
        let now = micros("2026-12-05") + 17 * 3_600_000_000 + 123;
        let day = BudgetPeriod::Day;
        assert_eq!(
            day.bounds(day.id(now)),
            (micros("2026-12-05"), micros("2026-12-06"))
        );
        let minute = BudgetPeriod::minute();
        let (start, end) = minute.bounds(minute.id(now));
        assert_eq!((start % 60_000_000, end - start), (0, 60_000_000));
        assert!(start <= now && now < end);
    }

    #[test]
    fn bad_periods_name_the_field() {
        assert_eq!(BudgetPeriod::parse("0s").unwrap_err().field(), "period");
        assert_eq!(BudgetPeriod::parse("400d").unwrap_err().field(), "period");
        assert_eq!(BudgetPeriod::parse("weekly").unwrap_err().field(), "period");
        assert_eq!(BudgetPeriod::parse("monthly").unwrap(), BudgetPeriod::Month);
    }

    proptest! {
        #[test]
        fn every_instant_lies_in_its_month_and_months_tile_time(now in 0u64..(200 * 365 * MICROS_PER_DAY)) {
            let month = BudgetPeriod::Month;
            let id = month.id(now);
            let (start, end) = month.bounds(id);
            prop_assert!(start <= now && now < end);
            prop_assert_eq!(month.bounds(id + 1).0, end);
            let days = (end - start) / MICROS_PER_DAY;
            prop_assert!((28..=31).contains(&days));
            prop_assert_eq!((end - start) % MICROS_PER_DAY, 0);
        }
    }
}
