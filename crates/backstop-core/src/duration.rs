//! Durations written the way people write them: `"250ms"`, `"5m"`, `"1h30m"`, `"1.5s"`.
//!
//! Every Backstop config takes its durations through [`human`] (or [`human_option`]), so a
//! TOML or YAML file says `ttl = "5m"` rather than a bare number of unknown unit.
//!
//! ```
//! use backstop_core::duration::{format, parse};
//! use std::time::Duration;
//!
//! assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
//! assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
//! assert_eq!(format(Duration::from_millis(90_250)), "1m30s250ms");
//! assert!(parse("5").is_err()); // a number without a unit is ambiguous
//! ```

use std::fmt::Write as _;
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationParseError {
    /// The string was empty or only whitespace.
    #[error("empty duration; write it with a unit, like \"250ms\" or \"5m\"")]
    Empty,
    /// A number was not followed by a unit.
    #[error("`{0}` has no unit; write it like \"{0}s\" or \"{0}ms\"")]
    MissingUnit(String),
    /// The unit is not one of ns, us, ms, s, m, h, d (or their long forms).
    #[error("unknown unit `{0}`; use ns, us, ms, s, m, h or d")]
    UnknownUnit(String),
    /// Something that is not a number stood where a number was expected.
    #[error("expected a number at `{0}`")]
    ExpectedNumber(String),
    /// The total does not fit in a `Duration`.
    #[error("duration is too large")]
    Overflow,
}

const NANOS_PER: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

fn unit_nanos(unit: &str) -> Option<u128> {
    let canonical = match unit {
        "ns" | "nsec" | "nanos" => "ns",
        "us" | "µs" | "usec" | "micros" => "us",
        "ms" | "msec" | "millis" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        _ => return None,
    };
    NANOS_PER
        .iter()
        .find(|(name, _)| *name == canonical)
        .map(|(_, nanos)| *nanos)
}

/// Parses a human duration: one or more `<number><unit>` parts, optionally separated by
/// spaces. Numbers may have a fractional part (`"1.5s"`); `"0"` alone means zero.
pub fn parse(text: &str) -> Result<Duration, DurationParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationParseError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(DurationParseError::ExpectedNumber(rest.to_string()));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationParseError::MissingUnit(number.to_string()));
        }
        let per_unit =
            unit_nanos(unit).ok_or_else(|| DurationParseError::UnknownUnit(unit.to_string()))?;
        total = total
            .checked_add(scaled(number, per_unit)?)
            .ok_or(DurationParseError::Overflow)?;
        rest = tail.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationParseError::Overflow)?;
    // The remainder is below one billion, so it always fits.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `number × per_unit` in nanoseconds, exact for integers, truncated below 1 ns otherwise.
fn scaled(number: &str, per_unit: u128) -> Result<u128, DurationParseError> {
    let bad = || DurationParseError::ExpectedNumber(number.to_string());
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(bad());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| DurationParseError::Overflow)?
    };
    let mut nanos = whole
        .checked_mul(per_unit)
        .ok_or(DurationParseError::Overflow)?;
    let mut place = per_unit;
    for digit in fraction.chars() {
        let digit = u128::from(digit.to_digit(10).ok_or_else(bad)?);
        place /= 10;
        nanos += digit * place;
    }
    Ok(nanos)
}

/// Formats a duration exactly, as the largest units first: `"1m30s250ms"`, `"0s"`.
/// The output always parses back to the same duration.
pub fn format(duration: Duration) -> String {
    let mut remaining = duration.as_nanos();
    if remaining == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, nanos) in NANOS_PER {
        let count = remaining / nanos;
        if count > 0 {
            // Writing to a String cannot fail.
            let _ = write!(out, "{count}{unit}");
            remaining -= count * nanos;
        }
    }
    out
}

/// `#[serde(with = "backstop_core::duration::human")]` for a `Duration` field.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Serialize, Deserialize)]
/// struct Config {
///     #[serde(with = "backstop_core::duration::human")]
///     ttl: Duration,
/// }
///
/// let config: Config = serde_json::from_str(r#"{ "ttl": "5m" }"#).unwrap();
/// assert_eq!(config.ttl, Duration::from_secs(300));
/// assert_eq!(serde_json::to_string(&config).unwrap(), r#"{"ttl":"5m"}"#);
/// ```
pub mod human {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    /// Writes the duration as a human string.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format(*duration))
    }

    /// Reads a human string such as `"250ms"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        super::parse(&text).map_err(D::Error::custom)
    }
}

/// `#[serde(with = "backstop_core::duration::human_option", default)]` for an
/// `Option<Duration>` field; absent or `null` means `None`.
pub mod human_option {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    /// Writes `Some` as a human string and `None` as nothing.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_some(&super::format(*duration)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an optional human string.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.map(|text| super::parse(&text).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse("7us").unwrap(), Duration::from_micros(7));
        assert_eq!(parse("7µs").unwrap(), Duration::from_micros(7));
        assert_eq!(parse("7ms").unwrap(), Duration::from_millis(7));
        assert_eq!(parse("7s").unwrap(), Duration::from_secs(7));
        assert_eq!(parse("7m").unwrap(), Duration::from_secs(420));
        assert_eq!(parse("7h").unwrap(), Duration::from_secs(25_200));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse("2 minutes").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn parses_compound_and_fractional() {
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse(".5ms").unwrap(), Duration::from_micros(500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("  10s ").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        assert_eq!(parse(""), Err(DurationParseError::Empty));
        assert_eq!(
            parse("5"),
            Err(DurationParseError::MissingUnit("5".to_string()))
        );
        assert_eq!(
            parse("5 fortnights"),
            Err(DurationParseError::UnknownUnit("fortnights".to_string()))
        );
        assert!(matches!(
            parse("-5s"),
            Err(DurationParseError::ExpectedNumber(_))
        ));
        assert!(matches!(
            parse("1.2.3s"),
            Err(DurationParseError::ExpectedNumber(_))
        ));
        assert_eq!(
            parse("99999999999999999999999d"),
            Err(DurationParseError::Overflow)
        );
    }

    #[test]
    fn formats_largest_units_first() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::new(3661, 1)), "1h1m1s1ns");
    }

    #[test]
    fn optional_durations_read_null_and_absent_as_none() {
        #[derive(Debug, serde::Deserialize)]
        struct Config {
            #[serde(with = "human_option", default)]
            timeout: Option<Duration>,
        }
        let absent: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.timeout, None);
        let null: Config = serde_json::from_str(r#"{"timeout":null}"#).unwrap();
        assert_eq!(null.timeout, None);
        let set: Config = serde_json::from_str(r#"{"timeout":"3s"}"#).unwrap();
        assert_eq!(set.timeout, Some(Duration::from_secs(3)));
        let bad = serde_json::from_str::<Config>(r#"{"timeout":"3"}"#);
        assert!(bad.unwrap_err().to_string().contains("has no unit"));
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
            let duration = Duration::new(secs, nanos);
            prop_assert_eq!(parse(&format(duration)).unwrap(), duration);
        }

        #[test]
        fn any_accepted_text_round_trips(text in "\\PC{0,24}") {
            if let Ok(duration) = parse(&text) {
                prop_assert_eq!(parse(&format(duration)), Ok(duration));
            }
        }
    }
}
