//! Scheduled (cron-like) minimum replica windows.

use std::time::Duration;

use backstop_core::config::{ConfigError, Validate, ensure, ensure_count, ensure_duration};
use serde::{Deserialize, Serialize};

use super::ensure_nonzero;

/// The most windows one schedule holds.
pub const MAX_SCHEDULE_WINDOWS: usize = 256;

/// One recurring window during which at least `min_replicas` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    /// Where the window starts within each period (09:00 is `"9h"` with a daily period).
    #[serde(with = "backstop_core::duration::human")]
    pub start: Duration,
    /// How long it lasts (at most one period; it may wrap past the period's end).
    #[serde(with = "backstop_core::duration::human")]
    pub length: Duration,
    /// The floor while the window is open.
    pub min_replicas: u32,
}

/// Windows that recur every `period` (a day by default, a week for weekday schedules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The recurrence.
    #[serde(with = "backstop_core::duration::human")]
    pub period: Duration,
    /// Where in the period the observations' time origin (`at = 0`) falls: if the driver
    /// started at 14:30 and the period is a day, `"14h30m"`.
    #[serde(with = "backstop_core::duration::human")]
    pub origin: Duration,
    /// The windows (at most [`MAX_SCHEDULE_WINDOWS`]).
    pub windows: Vec<ScheduleWindow>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(86_400),
            origin: Duration::ZERO,
            windows: Vec::new(),
        }
    }
}

impl ScheduleConfig {
    /// Adds a window.
    #[must_use]
    pub fn with_window(mut self, start: Duration, length: Duration, min_replicas: u32) -> Self {
        self.windows.push(ScheduleWindow {
            start,
            length,
            min_replicas,
        });
        self
    }

    /// The highest floor among the windows open at `at`, if any.
    pub(crate) fn floor(&self, at: Duration) -> Option<u32> {
        let period = self.period.as_nanos().max(1);
        let phase = (at.as_nanos() + self.origin.as_nanos()) % period;
        self.windows
            .iter()
            .filter(|w| {
                let start = w.start.as_nanos() % period;
                let since = (phase + period - start) % period;
                since < w.length.as_nanos()
            })
            .map(|w| w.min_replicas)
            .max()
    }
}

impl Validate for ScheduleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_nonzero("period", self.period)?;
        ensure_duration("period", self.period)?;
        ensure(
            self.origin < self.period,
            "origin",
            "must be within the period",
        )?;
        ensure_count("windows", self.windows.len(), 0, MAX_SCHEDULE_WINDOWS)?;
        for (i, w) in self.windows.iter().enumerate() {
            ensure(
                w.start < self.period,
                &format!("windows[{i}].start"),
                "must be within the period",
            )?;
            ensure(
                w.length <= self.period,
                &format!("windows[{i}].length"),
                "must be at most the period",
            )?;
        }
        Ok(())
    }
}
