//! One configuration file for the whole stack.
//!
//! [`BackstopConfig`] reads a TOML file with one optional section per primitive —
//! `[cache]`, `[batch]`, `[pool]`, `[breaker]`, `[limit]`, `[dedup]`, `[retry]`, `[route]`, `[scale]` — plus the
//! `[slo]` a load run is judged against. Each section *is* the crate's own config type, so
//! the file accepts exactly what the builders accept, with durations written as `"250ms"`
//! or `"1h30m"`.
//!
//! Loading never panics. Malformed TOML, a value of the wrong type, an unknown key and a
//! value that breaks a rule are each a [`ConfigFileError`] that names the field by its
//! dotted path and says what is wrong:
//!
//! ```
//! use backstop::config::BackstopConfig;
//!
//! let error = BackstopConfig::from_toml_str("[cache.memory]\nmax_capacity = 0\n").unwrap_err();
//! assert_eq!(error.field(), Some("cache.memory.max_capacity"));
//! assert_eq!(
//!     error.to_string(),
//!     "invalid configuration: `cache.memory.max_capacity` must be at least 1"
//! );
//!
//! let error = BackstopConfig::from_toml_str("[breaker.default]\nminimum_calls = \"ten\"\n")
//!     .unwrap_err();
//! assert_eq!(error.field(), Some("breaker.default.minimum_calls"));
//! ```
//!
//! A whole file, as shipped in `examples/backstop.toml`:
//!
//! ```
//! use backstop::config::BackstopConfig;
//!
//! let config = BackstopConfig::from_toml_str(include_str!("../../examples/backstop.toml"))?;
//! let per_user = config.limit.as_ref().and_then(|l| l.requests_limiter().transpose()).transpose()?;
//! assert!(per_user.is_some());
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

mod error;
mod slo;

#[cfg(feature = "cache")]
mod cache;
#[cfg(feature = "limit")]
mod limit;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "scale")]
mod scale;

#[cfg(feature = "cache")]
pub use cache::{CacheSection, PersistentTierSection, RedisTierSection};
pub use error::ConfigFileError;
#[cfg(feature = "limit")]
pub use limit::{LimitOverride, LimitSection};
#[cfg(feature = "redis")]
pub use redis::RedisSection;
#[cfg(feature = "scale")]
pub use scale::{PolicyKind, ScaleSection};
pub use slo::SloSection;

use backstop_core::config::{ConfigError, Validate};
use serde::Deserialize;
use std::path::Path;

/// Every primitive's configuration, read from one TOML file.
///
/// Sections left out of the file are `None`: the stack simply does without that layer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// `[slo]`: the service levels a load run must meet.
    pub slo: Option<SloSection>,
}

impl BackstopConfig {
    /// Reads and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigFileError> {
        let config = parse(text)?;
        config.validate()?;
        Ok(config)
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

impl Validate for BackstopConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        #[cfg(feature = "cache")]
        validate_section(&self.cache, "cache")?;
        #[cfg(feature = "batch")]
        validate_section(&self.batch, "batch")?;
        #[cfg(feature = "pool")]
        validate_section(&self.pool, "pool")?;
        #[cfg(feature = "breaker")]
        validate_section(&self.breaker, "breaker")?;
        #[cfg(feature = "limit")]
        validate_section(&self.limit, "limit")?;
        #[cfg(feature = "dedup")]
        validate_section(&self.dedup, "dedup")?;
        #[cfg(feature = "retry")]
        validate_section(&self.retry, "retry")?;
        #[cfg(feature = "route")]
        validate_section(&self.route, "route")?;
        #[cfg(feature = "scale")]
        validate_section(&self.scale, "scale")?;
        #[cfg(feature = "redis")]
        validate_section(&self.redis, "redis")?;
        validate_section(&self.slo, "slo")
    }
}

fn validate_section<T: Validate>(section: &Option<T>, name: &str) -> Result<(), ConfigError> {
    match section {
        Some(section) => section.validate().map_err(|e| e.within(name)),
        None => Ok(()),
    }
}

/// Deserializes while tracking the path to every value, so a type error names its field,
/// and collects keys no section knows, which are errors rather than silent defaults.
fn parse(text: &str) -> Result<BackstopConfig, ConfigFileError> {
    let position = |span: Option<std::ops::Range<usize>>| match span {
        Some(span) => {
            let (line, column) = error::line_and_column(text, span.start);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|error| {
        let (line, column) = position(error.span());
        ConfigFileError::Parse {
            field: String::new(),
            message: error.message().trim().to_string(),
            line,
            column,
        }
    })?;
    let mut unknown = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(dotted(&path));
    let tracked = serde_ignored::Deserializer::new(deserializer, &mut note_unknown);
    let config: BackstopConfig = serde_path_to_error::deserialize(tracked).map_err(|error| {
        let field = error.path().to_string();
        let (line, column) = position(error.inner().span());
        ConfigFileError::Parse {
            field: if field == "." { String::new() } else { field },
            message: error.inner().message().trim().to_string(),
            line,
            column,
        }
    })?;
    match unknown.into_iter().next() {
        Some(field) => Err(ConfigFileError::UnknownField { field }),
        None => Ok(config),
    }
}

/// `cache.memory.max_capcity`: the keys leading to a value, without serde's markers for
/// `Option` and newtype wrappers, which mean nothing to someone editing the file.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let (parent, segment) = match path {
        Path::Root => return String::new(),
        Path::Seq { parent, index } => (parent, index.to_string()),
        Path::Map { parent, key } => (parent, key.clone()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            return dotted(parent);
        }
    };
    match dotted(parent) {
        prefix if prefix.is_empty() => segment,
        prefix => format!("{prefix}.{segment}"),
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
