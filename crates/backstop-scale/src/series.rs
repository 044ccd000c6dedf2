//! Real request-rate series: `timestamp,value` CSV at any fixed interval, gaps held.

use std::time::Duration;

use backstop_core::time::{TimestampRules, parse_timestamp};

use crate::error::TraceError;
use crate::trace::Trace;

/// The most steps a series may expand to once gaps are filled (a year of 5-second samples is
/// about 6.3 M), so a CSV with two far-apart timestamps cannot allocate without bound.
pub const MAX_SERIES_STEPS: usize = 1 << 23;

impl Trace {
    /// Parses a `timestamp,value` series: timestamps in seconds or as dates and times,
    /// increasing, at any fixed interval (the smallest gap between two samples); a missing
    /// sample holds the last value. A header line and blank lines are skipped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use backstop_scale::Trace;
    ///
    /// let csv = "timestamp,value\n2015-02-26 21:40:00,10\n2015-02-26 21:45:00,20\n2015-02-26 21:55:00,40\n";
    /// let t = Trace::from_series_csv("tweets", csv).unwrap();
    /// assert_eq!(t.step, Duration::from_secs(300));
    /// assert_eq!(t.rates, vec![10.0, 20.0, 20.0, 40.0]);
    /// ```
    pub fn from_series_csv(name: impl Into<String>, text: &str) -> Result<Self, TraceError> {
        let mut points: Vec<(usize, f64, f64)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            let line_no = i + 1;
            if line.is_empty() {
                continue;
            }
            let Some((t, v)) = line.split_once(',') else {
                return Err(TraceError::Malformed { line: line_no });
            };
            let (t, v) = (
                parse_timestamp(t.trim(), TimestampRules::LENIENT),
                v.trim().parse::<f64>(),
            );
            let (Some(t), Ok(v)) = (t, v) else {
                if points.is_empty() && i == 0 {
                    continue; // the header
                }
                return Err(TraceError::Malformed { line: line_no });
            };
            if !(v.is_finite() && v >= 0.0) {
                return Err(TraceError::Negative { line: line_no });
            }
            if let Some(&(_, last, _)) = points.last()
                && t <= last
            {
                return Err(TraceError::UnevenStep { line: line_no });
            }
            points.push((line_no, t, v));
        }
        if points.len() < 2 {
            return Err(TraceError::TooShort);
        }
        let step = points
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .fold(f64::INFINITY, f64::min);
        let span = points[points.len() - 1].1 - points[0].1;
        let steps = (span / step).round() + 1.0;
        if steps.is_nan() || steps > MAX_SERIES_STEPS as f64 {
            return Err(TraceError::TooLong {
                max: MAX_SERIES_STEPS,
            });
        }
        let mut rates = Vec::with_capacity(steps as usize);
        let start = points[0].1;
        for (line, t, v) in points {
            let index = ((t - start) / step).round() as usize;
            if index < rates.len() {
                // Jitter put two samples in one slot: the later one wins.
                return Err(TraceError::UnevenStep { line });
            }
            let last = rates.last().copied().unwrap_or(v);
            rates.resize(index, last);
            rates.push(v);
        }
        Ok(Self::new(name, Duration::from_secs_f64(step), rates))
    }

    /// The trace scaled so its peak is `peak` requests per second (unchanged if all zero).
    #[must_use]
    pub fn scaled_to_peak(mut self, peak: f64) -> Self {
        let current = self.peak();
        if current > 0.0 && peak.is_finite() && peak > 0.0 {
            let k = peak / current;
            for r in &mut self.rates {
                *r *= k;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_seconds_from_the_epoch() {
        for (text, seconds) in [
            ("1970-01-01 00:00:00", Some(0.0)),
            ("2000-03-01T00:00:00", Some(951_868_800.0)),
            ("2014-07-01 00:30:00", Some(1_404_174_600.0)),
            ("2014-13-01 00:30:00", None),
            ("12.5", Some(12.5)),
        ] {
            assert_eq!(
                parse_timestamp(text, TimestampRules::LENIENT),
                seconds,
                "{text}"
            );
        }
    }

    #[test]
    fn gaps_hold_the_last_value_and_errors_name_the_line() {
        let t = Trace::from_series_csv("x", "0,1\n30,2\n90,3\n").unwrap();
        assert_eq!(t.rates, vec![1.0, 2.0, 2.0, 3.0]);
        for (csv, error) in [
            ("0,1\n30,2\n20,3\n", TraceError::UnevenStep { line: 3 }),
            ("0,1\n30,x\n", TraceError::Malformed { line: 2 }),
        ] {
            assert_eq!(Trace::from_series_csv("x", csv), Err(error), "{csv:?}");
        }
        assert!(matches!(
            Trace::from_series_csv("x", "0,1\n0.001,2\n1e9,3\n"),
            Err(TraceError::TooLong { .. })
        ));
        let scaled = t.scaled_to_peak(300.0);
        assert_eq!(scaled.peak(), 300.0);
        assert_eq!(scaled.rates[0], 100.0);
    }
}
