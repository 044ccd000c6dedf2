//! Trace replay: rates read from a recorded CSV of `timestamp,value`.

use std::time::Duration;

use backstop_core::time::{TimestampRules, parse_timestamp};

/// The most points a trace may hold.
pub const MAX_TRACE_POINTS: usize = 1_000_000;

/// Why a trace could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParseError {
    /// A line is not `timestamp,value` with a known timestamp form and a finite value.
    #[error("trace line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Fewer than two data rows, or more than [`MAX_TRACE_POINTS`].
    #[error("a trace needs between 2 and 1000000 data rows, found {0}")]
    Length(usize),
    /// The scale factors are not positive and finite.
    #[error("speedup and rate scale must be positive and finite")]
    Scale,
}

/// Rates replayed from a recorded trace, as a step function of time.
///
/// Each row's value, times `rate_scale`, is the target rate (requests per second) from its
/// timestamp until the next row's. `speedup` compresses time: with a speedup of 300, five
/// recorded minutes replay in one second. Timestamps are `YYYY-MM-DD HH:MM:SS` (UTC, no
/// zone) or plain seconds; they must not go backwards.
///
/// ```
/// use backstop_load::TraceReplay;
/// use std::time::Duration;
///
/// let csv = "timestamp,value\n2015-02-26 21:42:53,10\n2015-02-26 21:47:53,30\n";
/// let trace = TraceReplay::from_csv(csv, 300.0, 2.0).unwrap();
/// assert_eq!(trace.duration(), Duration::from_secs(2)); // two 5-minute rows, 300x faster
/// assert_eq!(trace.rate_at(Duration::from_millis(500)), 20.0);
/// assert_eq!(trace.rate_at(Duration::from_millis(1500)), 60.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TraceReplay {
    /// (offset from the start of the replay, rate) per row, offsets increasing.
    points: Vec<(Duration, f64)>,
    duration: Duration,
}

impl TraceReplay {
    /// Parses `csv` (an optional header, then `timestamp,value` rows).
    pub fn from_csv(csv: &str, speedup: f64, rate_scale: f64) -> Result<Self, TraceParseError> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !(positive(speedup) && rate_scale.is_finite() && rate_scale >= 0.0) {
            return Err(TraceParseError::Scale);
        }
        let mut rows: Vec<(f64, f64)> = Vec::new();
        for (index, line) in csv.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((stamp, value)) = line.split_once(',') else {
                return Err(TraceParseError::Line {
                    line: line_no,
                    reason: "expected `timestamp,value`",
                });
            };
            let seconds = parse_timestamp(stamp.trim(), TimestampRules::STRICT);
            let value = value.trim().parse::<f64>().ok();
            match (seconds, value) {
                (Some(seconds), Some(value)) if value.is_finite() && value >= 0.0 => {
                    if rows.len() >= MAX_TRACE_POINTS {
                        return Err(TraceParseError::Length(rows.len() + 1));
                    }
                    if rows.last().is_some_and(|(last, _)| seconds < *last) {
                        return Err(TraceParseError::Line {
                            line: line_no,
                            reason: "timestamp goes backwards",
                        });
                    }
                    rows.push((seconds, value));
                }
                // The header row: the first line that does not parse.
                _ if index == 0 => {}
                (None, _) => {
                    return Err(TraceParseError::Line {
                        line: line_no,
                        reason: "timestamp is not `YYYY-MM-DD HH:MM:SS` or seconds",
                    });
                }
                _ => {
                    return Err(TraceParseError::Line {
                        line: line_no,
                        reason: "value is not a finite non-negative number",
                    });
                }
            }
        }
        if rows.len() < 2 {
            return Err(TraceParseError::Length(rows.len()));
        }
        let start = rows[0].0;
        let to_offset = |seconds: f64| {
            Duration::try_from_secs_f64((seconds - start) / speedup)
                .unwrap_or(Duration::MAX)
                .min(backstop_core::config::MAX_DURATION)
        };
        let points: Vec<(Duration, f64)> = rows
            .iter()
            .map(|(seconds, value)| (to_offset(*seconds), value * rate_scale))
            .collect();
        // The last row lasts as long as the gap before it.
        let last_gap = rows[rows.len() - 1].0 - rows[rows.len() - 2].0;
        let duration = to_offset(rows[rows.len() - 1].0 + last_gap);
        Ok(Self { points, duration })
    }

    /// How long the replay lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The target rate `offset` into the replay (the last row's rate past the end).
    pub fn rate_at(&self, offset: Duration) -> f64 {
        let index = self.points.partition_point(|(at, _)| *at <= offset);
        self.points[index.saturating_sub(1)].1
    }

    /// The mean rate over the first `duration` of the replay.
    pub fn mean_rate(&self, duration: Duration) -> f64 {
        let total = duration.as_secs_f64();
        if total == 0.0 {
            return self.points[0].1;
        }
        let mut area = 0.0;
        for (index, (at, rate)) in self.points.iter().enumerate() {
            let end = self
                .points
                .get(index + 1)
                .map_or(duration, |(next, _)| *next)
                .min(duration);
            area += rate * end.saturating_sub(*at).as_secs_f64();
        }
        area / total
    }

    /// The highest rate in the trace.
    pub fn max_rate(&self) -> f64 {
        self.points
            .iter()
            .map(|(_, rate)| *rate)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_both_forms() {
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:00", TimestampRules::STRICT),
            Some(0.0)
        );
        assert_eq!(
            parse_timestamp("2000-03-01 00:00:01", TimestampRules::STRICT),
            Some(951_868_801.0)
        );
        assert_eq!(parse_timestamp("12.5", TimestampRules::STRICT), Some(12.5));
        assert_eq!(
            parse_timestamp("2000-13-01 00:00:00", TimestampRules::STRICT),
            None
        );
        assert_eq!(parse_timestamp("yesterday", TimestampRules::STRICT), None);
    }

    #[test]
    fn bad_traces_are_typed_errors() {
        assert_eq!(
            TraceReplay::from_csv("timestamp,value\n0,1\n", 1.0, 1.0),
            Err(TraceParseError::Length(1))
        );
        assert!(matches!(
            TraceReplay::from_csv("t,v\n0,1\n5,2\n3,1\n", 1.0, 1.0),
            Err(TraceParseError::Line { line: 4, .. })
        ));
        assert!(matches!(
            TraceReplay::from_csv("t,v\n0,1\n5,-2\n", 1.0, 1.0),
            Err(TraceParseError::Line { line: 3, .. })
        ));
        assert_eq!(
            TraceReplay::from_csv("0,1\n1,1\n", 0.0, 1.0),
            Err(TraceParseError::Scale)
        );
    }

    #[test]
    fn mean_rate_weights_rows_by_their_length() {
        let trace = TraceReplay::from_csv("0,10\n1,30\n3,0\n", 1.0, 1.0).unwrap();
        assert_eq!(trace.duration(), Duration::from_secs(5));
        assert_eq!(trace.mean_rate(Duration::from_secs(3)), 70.0 / 3.0);
        assert_eq!(trace.max_rate(), 30.0);
    }
}
