//! One configuration file for the whole stack.
//!
//! [`BackstopConfig`] reads a TOML file with one optional section per primitive —
//! `[cache]`, `[batch]`, `[pool]`, `[breaker]`, `[limit]`, `[budget]`, `[dedup]`, `[retry]`,
//! `[route]`, `[scale]` — and the fleet's shared `[redis]` connection. Each section *is* the
//! crate's own config type, so the file accepts exactly what the builders accept, with
//! durations written as `"250ms"` or `"1h30m"`. Nothing else is Backstop's: settings of the
//! application (a load run's SLOs, a server's port) live in the application's own tables,
//! beside Backstop's sections in the same file.
//!
//! Loading never panics. Malformed TOML, a value of the wrong type, an unknown key, a
//! section whose Cargo feature is off and a value that breaks a rule are each a
//! [`ConfigFileError`] that names the field by its dotted path, says what is wrong and
//! where (line and column):
//!
//! ```
//! use backstop::config::BackstopConfig;
//!
//! let error = BackstopConfig::from_toml_str("[cache.memory]\nmax_capacity = 0\n").unwrap_err();
//! assert_eq!(error.field(), Some("cache.memory.max_capacity"));
//! assert_eq!(
//!     error.to_string(),
//!     "invalid configuration: `cache.memory.max_capacity` must be at least 1 (line 2, column 1)"
//! );
//!
//! let error = BackstopConfig::from_toml_str("[breaker.default]\nminimum_calls = \"ten\"\n")
//!     .unwrap_err();
//! assert_eq!(error.field(), Some("breaker.default.minimum_calls"));
//! ```
//!
//! A whole application's file, as shipped in `examples/backstop.toml`: the agent gateway's
//! own `[slo]` table, and every Backstop section under `[backstop]`:
//!
//! ```
//! use backstop::config::BackstopConfig;
//!
//! let file = include_str!("../../examples/backstop.toml");
//! let config = BackstopConfig::from_toml_table(file, "backstop")?;
//! let per_user = config.limit.as_ref().and_then(|l| l.requests_limiter().transpose()).transpose()?;
//! assert!(per_user.is_some());
//! // `[slo]` is the application's table, not one of Backstop's sections.
//! assert!(BackstopConfig::from_toml_str(file).is_err());
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! `BackstopConfig` is also one field of the application's own configuration: its
//! `Deserialize` refuses unknown keys inside Backstop's sections and checks every rule, so
//! `#[derive(Deserialize)] struct App { server: Server, backstop: BackstopConfig }` is as
//! strict as this module's loaders. [`ConfigLoader`] adds line and column to every error of
//! such a file, reads one named table of it ([`BackstopConfig::from_toml_table`]) and
//! applies `BACKSTOP__…` environment overrides; [`BackstopConfig::to_toml_string`] prints
//! the effective configuration, defaults filled in.

mod error;
mod load;

#[cfg(feature = "limit")]
mod budget;
#[cfg(feature = "cache")]
mod cache;
#[cfg(feature = "limit")]
mod limit;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "scale")]
mod scale;

#[cfg(feature = "limit")]
pub use budget::BudgetSection;
#[cfg(feature = "cache")]
pub use cache::{CacheSection, PersistentTierSection, RedisTierSection};
pub use error::ConfigFileError;
#[cfg(feature = "limit")]
pub use limit::{LimitOverride, LimitSection};
pub use load::ConfigLoader;
#[cfg(feature = "redis")]
pub use redis::RedisSection;
#[cfg(feature = "scale")]
pub use scale::{PolicyKind, ScaleSection};

use backstop_core::config::{ConfigError, Validate};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

/// Declares `BackstopConfig` and, from the same field list, the serde "remote" that reads
/// its fields, the feature each section needs and the validation of every section: the
/// public `Deserialize` runs that reader, then refuses unknown keys and broken rules, so the
/// type is strict wherever it is embedded.
macro_rules! sections {
    (
        $(#[$attr:meta])*
        pub struct BackstopConfig { $(
            $(#[doc = $doc:literal])*
            #[cfg(feature = $feature:tt)]
            pub $field:ident : $ty:ty,
        )* }
    ) => {
        $(#[$attr])*
        pub struct BackstopConfig { $(
            $(#[doc = $doc])*
            #[cfg(feature = $feature)]
            pub $field: $ty,
        )* }

        /// The fields as written, before unknown keys and rules are checked.
        // Never built: it only carries the derived reader of `BackstopConfig`'s fields.
        #[allow(dead_code)]
        #[derive(Deserialize)]
        #[serde(remote = "BackstopConfig")]
        struct Unchecked { $( #[cfg(feature = $feature)] #[serde(default)] $field: $ty, )* }

        /// Every top-level section and the Cargo feature that compiles it in, so that a file
        /// written for a fuller build says which feature it needs instead of "unknown field".
        const SECTION_FEATURES: &[(&str, &str, bool)] =
            &[$( (stringify!($field), $feature, cfg!(feature = $feature)), )*];

        impl Validate for BackstopConfig {
            fn validate(&self) -> Result<(), ConfigError> {
                $(
                    #[cfg(feature = $feature)]
                    if let Some(section) = &self.$field {
                        section.validate().map_err(|e| e.within(stringify!($field)))?;
                    }
                )*
                Ok(())
            }
        }
    };
}

sections! {
/// Every primitive's configuration, read from one TOML file or one table of the
/// application's own configuration.
///
/// Sections left out of the file are `None`: the stack simply does without that layer.
///
/// ```
/// use backstop::config::BackstopConfig;
///
/// #[derive(serde::Deserialize)]
/// struct App {
///     port: u16,
///     backstop: BackstopConfig,
/// }
///
/// let app: App = toml::from_str("port = 8080\n[backstop.limit]\nmax_keys = 1000\n")?;
/// assert_eq!(app.backstop.limit.unwrap().max_keys, Some(1000));
/// // Strict inside Backstop's sections, wherever they are embedded.
/// assert!(toml::from_str::<App>("port = 1\n[backstop.limit]\nmax_key = 1\n").is_err());
/// assert!(toml::from_str::<App>("port = 1\n[backstop.limit]\nmax_keys = 0\n").is_err());
/// # Ok::<_, toml::de::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BackstopConfig {
    /// `[cache]`: tiers, sizes and freshness of the response cache.
    #[cfg(feature = "cache")]
    pub cache: Option<CacheSection>,
    /// `[batch]`: how single calls are gathered into batches.
    #[cfg(feature = "batch")]
    pub batch: Option<backstop_batch::BatchConfig>,
    /// `[pool]`: the connection pool in front of the provider.
    #[cfg(feature = "pool")]
    pub pool: Option<backstop_pool::PoolConfig>,
    /// `[breaker]`: a default circuit breaker and per-name overrides (`[breaker.overrides.<name>]`).
    #[cfg(feature = "breaker")]
    pub breaker: Option<backstop_breaker::RegistryConfig>,
    /// `[limit]`: per-user request and token quotas and a bulkhead.
    #[cfg(feature = "limit")]
    pub limit: Option<LimitSection>,
    /// `[budget]`: token and money budgets that settle, per key, team and organisation.
    #[cfg(feature = "limit")]
    pub budget: Option<BudgetSection>,
    /// `[dedup]`: the idempotency window and follower timeout.
    #[cfg(feature = "dedup")]
    pub dedup: Option<backstop_dedup::DedupWindowConfig>,
    /// `[retry]`: attempts, backoff, the retry budget, the call's deadline and hedging.
    #[cfg(feature = "retry")]
    pub retry: Option<backstop_retry::RetryConfig>,
    /// `[route]`: targets (provider, model, key, region), groups, cooldowns and balancing.
    #[cfg(feature = "route")]
    pub route: Option<backstop_route::RouteConfig>,
    /// `[scale]`: the autoscaling policy.
    #[cfg(feature = "scale")]
    pub scale: Option<ScaleSection>,
    /// `[redis]`: the fleet's one Redis connection (url | cluster nodes | Sentinel, TLS,
    /// credentials, namespace), used by every Redis-backed part that names no URL of its
    /// own, with `[redis.limit]` and `[redis.dedup]` on it.
    #[cfg(feature = "redis")]
    pub redis: Option<RedisSection>,
}
}

/// The feature a disabled section at the start of `field` needs, if it is one.
fn disabled_feature(field: &str) -> Option<&'static str> {
    let section = field.split('.').next()?;
    SECTION_FEATURES
        .iter()
        .find(|(name, _, enabled)| *name == section && !enabled)
        .map(|(_, feature, _)| *feature)
}

impl<'de> Deserialize<'de> for BackstopConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut unknown: Option<String> = None;
        let mut note = |path: serde_ignored::Path<'_>| {
            unknown.get_or_insert_with(|| load::dotted(&path));
        };
        let config =
            Unchecked::deserialize(serde_ignored::Deserializer::new(deserializer, &mut note))?;
        if let Some(field) = unknown {
            return Err(load::refuse(match disabled_feature(&field) {
                Some(feature) => load::Refusal::FeatureOff { field, feature },
                None => load::Refusal::Unknown(field),
            }));
        }
        config
            .validate()
            .map_err(|error| load::refuse(load::Refusal::Rule(error)))?;
        Ok(config)
    }
}

impl BackstopConfig {
    /// Reads and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        ConfigLoader::new().load_file(path)
    }

    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigFileError> {
        ConfigLoader::new().load_str(text)
    }

    /// Parses and validates one table of a larger TOML file — the application's own
    /// settings stay beside it — with errors placed in the whole file.
    ///
    /// ```
    /// use backstop::config::BackstopConfig;
    ///
    /// let file = "[server]\nport = 8080\n\n[backstop.cache.memory]\nmax_capacity = 0\n";
    /// let error = BackstopConfig::from_toml_table(file, "backstop").unwrap_err();
    /// assert_eq!(error.field(), Some("backstop.cache.memory.max_capacity"));
    /// assert_eq!(error.position(), Some((5, 1)));
    /// ```
    pub fn from_toml_table(text: &str, table: &str) -> Result<Self, ConfigFileError> {
        ConfigLoader::new().table(table).load_str(text)
    }

    /// The configuration as TOML, every default written out: what the stack will run with.
    /// Reading the text back gives an equal configuration.
    ///
    /// ```
    /// use backstop::config::BackstopConfig;
    ///
    /// let config = BackstopConfig::from_toml_str("[dedup]\nttl = \"5s\"\n")?;
    /// let text = config.to_toml_string()?;
    /// assert!(text.contains("ttl = \"5s\""), "{text}");
    /// assert!(text.contains("max_entries = "), "defaults are written out: {text}");
    /// assert_eq!(BackstopConfig::from_toml_str(&text)?, config);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// The circuit-breaker registry, or `None` without a `[breaker]` section.
    #[cfg(feature = "breaker")]
    pub fn breakers(&self) -> Result<Option<backstop_breaker::BreakerRegistry>, ConfigError> {
        self.breaker
            .clone()
            .map(|config| {
                backstop_breaker::BreakerRegistry::new(config).map_err(|e| e.within("breaker"))
            })
            .transpose()
    }
}

/// A configured stack could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A value broke a rule.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// A backend named by the file (Redis, a database file) could not be reached or opened.
    #[error("`{section}`: {message}")]
    Backend {
        /// The section that configures the backend.
        section: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The file configures a section whose Cargo feature is not compiled in.
    #[error("`{section}` needs backstop's `{feature}` feature")]
    FeatureDisabled {
        /// The section that was configured.
        section: &'static str,
        /// The feature to enable.
        feature: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section added to `BackstopConfig` needs its feature listed, or a build without
    /// that feature would call it an unknown field.
    #[test]
    fn every_section_names_its_feature() {
        let fields = serde_json::to_value(BackstopConfig::default()).unwrap();
        for (name, _) in fields.as_object().unwrap() {
            assert!(
                SECTION_FEATURES.iter().any(|(section, ..)| section == name),
                "add `{name}` to SECTION_FEATURES"
            );
        }
    }

    #[test]
    fn a_disabled_section_names_its_feature() {
        let off = SECTION_FEATURES.iter().find(|(.., enabled)| !enabled);
        if let Some((section, feature, _)) = off {
            assert_eq!(disabled_feature(&format!("{section}.x")), Some(*feature));
        }
        assert_eq!(disabled_feature("cach"), None);
        assert_eq!(disabled_feature(""), None);
    }
}
