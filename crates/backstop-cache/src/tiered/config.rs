//! Settings of a [`TieredCache`](crate::TieredCache), loadable with serde.

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_duration, ensure_positive_duration,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a value found in a lower tier is copied into the tiers above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Promotion {
    /// On every lower-tier hit.
    #[default]
    Always,
    /// Once a key has been read from lower tiers this many times, so one-off reads of a
    /// cold key do not push hot entries out of L1.
    AfterHits(u32),
    /// Never; each tier is filled only by writes.
    Never,
}

/// How long values stay fresh, what happens after, and how loads are run.
///
/// Every duration is at most [`MAX_DURATION`](backstop_core::config::MAX_DURATION) (a
/// year); [`validated`](Self::validated) names the field that is not.
///
/// ```
/// use backstop_cache::TieredConfig;
/// use std::time::Duration;
///
/// let config: TieredConfig = serde_json::from_str(r#"{
///     "fresh_for": "5m",
///     "stale_grace": "1m",
///     "negative_ttl": "30s",
///     "loader_timeout": "20s"
/// }"#).unwrap();
/// assert_eq!(config.fresh_for, Duration::from_secs(300));
/// assert!(TieredConfig { fresh_for: Duration::ZERO, ..config }.validated().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TieredConfig {
    /// How long a written or loaded value is fresh.
    #[serde(with = "backstop_core::duration::human")]
    pub fresh_for: Duration,
    /// How long after going stale a value may still be served by `get_or_load` while one
    /// background refresh runs (stale-while-revalidate). `None`: stale means missing.
    #[serde(with = "backstop_core::duration::human_option")]
    pub stale_grace: Option<Duration>,
    /// When a fresh value has less than this left, `get_or_load` returns it and refreshes
    /// it in the background, so hot keys never go stale (refresh-ahead).
    #[serde(with = "backstop_core::duration::human_option")]
    pub refresh_ahead: Option<Duration>,
    /// How long a loader's "not found" is remembered. `None`: not cached.
    #[serde(with = "backstop_core::duration::human_option")]
    pub negative_ttl: Option<Duration>,
    /// How long one load may run before every waiting caller gets a timeout.
    #[serde(with = "backstop_core::duration::human_option")]
    pub loader_timeout: Option<Duration>,
    /// When lower-tier hits are copied upward.
    pub promotion: Promotion,
}

impl Default for TieredConfig {
    fn default() -> Self {
        Self {
            fresh_for: Duration::from_secs(300),
            stale_grace: None,
            refresh_ahead: None,
            negative_ttl: None,
            loader_timeout: Some(Duration::from_secs(30)),
            promotion: Promotion::Always,
        }
    }
}

impl TieredConfig {
    /// Checks the rules and returns the config.
    pub fn validated(self) -> Result<Self, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// How long an entry is kept in a tier that has no TTL of its own: fresh time plus
    /// the grace during which it may be served stale.
    pub fn retention(&self) -> Duration {
        self.fresh_for
            .saturating_add(self.stale_grace.unwrap_or(Duration::ZERO))
    }
}

impl Validate for TieredConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure_positive_duration("fresh_for", self.fresh_for)?;
        for (field, value) in [
            ("stale_grace", self.stale_grace),
            ("refresh_ahead", self.refresh_ahead),
            ("negative_ttl", self.negative_ttl),
            ("loader_timeout", self.loader_timeout),
        ] {
            if let Some(value) = value {
                ensure_duration(field, value)?;
            }
        }
        if let Some(ahead) = self.refresh_ahead {
            ensure(
                ahead < self.fresh_for,
                "refresh_ahead",
                "must be shorter than fresh_for (or every read would refresh)",
            )?;
        }
        if let Some(negative) = self.negative_ttl {
            ensure(
                !negative.is_zero(),
                "negative_ttl",
                "must be longer than zero; omit it to disable",
            )?;
        }
        if let Some(timeout) = self.loader_timeout {
            ensure(
                !timeout.is_zero(),
                "loader_timeout",
                "must be longer than zero; omit it to disable",
            )?;
        }
        if let Promotion::AfterHits(hits) = self.promotion {
            ensure(hits > 0, "promotion.after_hits", "must be at least 1")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(TieredConfig::default().validate(), Ok(()));
    }

    /// Checks that the defaults as `change` leaves them are refused, naming `field`.
    fn refused(field: &str, change: impl FnOnce(&mut TieredConfig)) {
        let mut config = TieredConfig::default();
        change(&mut config);
        assert_eq!(config.validate().unwrap_err().field(), field);
    }

    #[test]
    fn each_rule_names_its_field() {
        refused("fresh_for", |c| c.fresh_for = Duration::ZERO);
        refused("refresh_ahead", |c| {
            c.refresh_ahead = Some(Duration::from_secs(300))
        });
        refused("negative_ttl", |c| c.negative_ttl = Some(Duration::ZERO));
        refused("loader_timeout", |c| {
            c.loader_timeout = Some(Duration::ZERO)
        });
        refused("promotion.after_hits", |c| {
            c.promotion = Promotion::AfterHits(0)
        });
    }

    #[test]
    fn durations_are_at_most_a_year() {
        let huge = Duration::from_secs(150_000_000_000_000 * 86_400);
        refused("fresh_for", |c| c.fresh_for = huge);
        refused("stale_grace", |c| c.stale_grace = Some(huge));
        refused("negative_ttl", |c| c.negative_ttl = Some(Duration::MAX));
        refused("loader_timeout", |c| c.loader_timeout = Some(Duration::MAX));
        let year = TieredConfig {
            fresh_for: backstop_core::config::MAX_DURATION,
            stale_grace: Some(backstop_core::config::MAX_DURATION),
            ..Default::default()
        };
        assert_eq!(year.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_str::<TieredConfig>(r#"{"fresh_fro": "5m"}"#).unwrap_err();
        assert!(error.to_string().contains("fresh_fro"), "{error}");
    }

    #[test]
    fn promotion_reads_from_snake_case() {
        let config: TieredConfig =
            serde_json::from_str(r#"{"promotion": {"after_hits": 2}}"#).unwrap();
        assert_eq!(config.promotion, Promotion::AfterHits(2));
    }
}
