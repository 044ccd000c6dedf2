use backstop_cache::{CacheConfig, Entry, MemoryCache, MemoryTier, TieredCache, TieredConfig};
use backstop_core::config::{ConfigError, Validate, ensure, ensure_duration};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

use super::BuildError;

/// A tier behind the object-safe trait, so a disabled feature can stand in with an error.
type SharedTier<V> = std::sync::Arc<dyn backstop_cache::Tier<Entry<V>>>;

/// `[cache]`: a tiered response cache — memory first, then Redis, then a file on disk.
///
/// ```toml
/// [cache.tiered]            # freshness shared by every tier
/// fresh_for = "10m"
/// stale_grace = "1h"
///
/// [cache.memory]            # L1
/// max_capacity = 50000
///
/// [cache.redis]             # L2, skipped when no URL is configured
/// url_env = "REDIS_URL"
/// namespace = "gateway:"
///
/// [cache.persistent]        # last tier, survives restarts
/// path = "/var/cache/gateway.redb"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// Freshness, stale-while-revalidate, negative caching and promotion across tiers.
    pub tiered: TieredConfig,
    /// The in-process L1.
    pub memory: CacheConfig,
    /// A shared Redis tier (feature `redis`).
    pub redis: Option<RedisTierSection>,
    /// A local file tier (feature `persistent`).
    pub persistent: Option<PersistentTierSection>,
}

/// `[cache.redis]`: where the shared tier lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisTierSection {
    /// The Redis URL; when absent it is read from the environment variable `url_env`.
    pub url: Option<String>,
    /// Environment variable holding the URL when `url` is absent.
    pub url_env: String,
    /// Whether a missing URL is an error (`true`) or just leaves the tier out.
    pub required: bool,
    /// Prefix of every key this cache writes: not empty, no glob character (`*`, `?`,
    /// `[`, `]`, `\\`) and no unbalanced brace, so invalidation stays inside it.
    pub namespace: String,
    /// Longest one Redis operation may take before it counts as failed (at most a year,
    /// like every duration here).
    #[serde(with = "backstop_core::duration::human")]
    pub operation_timeout: Duration,
    /// How long entries stay in Redis; defaults to the tiered freshness plus grace.
    #[serde(with = "backstop_core::duration::human_option")]
    pub ttl: Option<Duration>,
    /// Values larger than this many bytes are LZ4-compressed.
    pub compress_above: Option<usize>,
}

impl Default for RedisTierSection {
    fn default() -> Self {
        Self {
            url: None,
            url_env: "REDIS_URL".to_string(),
            required: false,
            namespace: "backstop:".to_string(),
            operation_timeout: Duration::from_millis(250),
            ttl: None,
            compress_above: Some(1024),
        }
    }
}

#[cfg(feature = "redis")]
impl RedisTierSection {
    /// The tier's settings, whichever connection it runs on (its own `url` or the
    /// shared `[redis]`).
    pub(crate) fn tier_config(&self) -> backstop_cache::RedisTierConfig {
        let mut codec = backstop_cache::ValueCodec::new();
        if let Some(bytes) = self.compress_above {
            codec = codec.compress_above(bytes);
        }
        backstop_cache::RedisTierConfig {
            namespace: self.namespace.clone(),
            codec,
            operation_timeout: self.operation_timeout,
            ..backstop_cache::RedisTierConfig::default()
        }
    }
}

/// `[cache.persistent]`: a file-backed tier.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistentTierSection {
    /// The database file; created if missing.
    pub path: PathBuf,
    /// How long entries stay on disk; defaults to the tiered freshness plus grace.
    #[serde(with = "backstop_core::duration::human_option")]
    pub ttl: Option<Duration>,
    /// Values larger than this many bytes are LZ4-compressed.
    pub compress_above: Option<usize>,
}

impl Validate for CacheSection {
    fn validate(&self) -> Result<(), ConfigError> {
        self.tiered.validate().map_err(|e| e.within("tiered"))?;
        self.memory.validate().map_err(|e| e.within("memory"))?;
        if let Some(redis) = &self.redis {
            ensure(
                redis.url.is_some() || !redis.url_env.is_empty(),
                "redis.url",
                "must be set when `url_env` is empty",
            )?;
            backstop_cache::validate_redis_namespace("redis.namespace", &redis.namespace)?;
            ensure(
                !redis.operation_timeout.is_zero(),
                "redis.operation_timeout",
                "must be greater than zero",
            )?;
            ensure_duration("redis.operation_timeout", redis.operation_timeout)?;
            ensure_positive_ttl(redis.ttl, "redis.ttl")?;
        }
        if let Some(persistent) = &self.persistent {
            ensure(
                !persistent.path.as_os_str().is_empty(),
                "persistent.path",
                "must name a file",
            )?;
            ensure_positive_ttl(persistent.ttl, "persistent.ttl")?;
        }
        Ok(())
    }
}

fn ensure_positive_ttl(ttl: Option<Duration>, field: &str) -> Result<(), ConfigError> {
    ensure(
        ttl.is_none_or(|ttl| !ttl.is_zero()),
        field,
        "must be greater than zero",
    )?;
    ttl.map_or(Ok(()), |ttl| ensure_duration(field, ttl))
}

impl CacheSection {
    /// The Redis URL this section resolves to, if the tier is configured and a URL is known.
    pub fn redis_url(&self) -> Option<String> {
        let redis = self.redis.as_ref()?;
        redis
            .url
            .clone()
            .or_else(|| std::env::var(&redis.url_env).ok())
            .filter(|url| !url.is_empty())
    }

    /// Builds the tiered cache: memory, then Redis (when a URL is known), then the file.
    ///
    /// Connecting to Redis or opening the file can fail; so can a tier whose feature is
    /// not compiled in. Each is reported as a [`BuildError`] naming the section.
    pub async fn build<V>(&self) -> Result<TieredCache<String, V>, BuildError>
    where
        V: Clone + Send + Sync + serde::Serialize + DeserializeOwned + 'static,
    {
        self.validate().map_err(|e| e.within("cache"))?;
        let memory =
            MemoryCache::from_config(self.memory.clone()).map_err(|e| e.within("cache.memory"))?;
        let mut builder = TieredCache::builder()
            .config(self.tiered.clone())
            .memory(MemoryTier::<Entry<V>>::new(memory), None);
        if let Some(redis) = &self.redis {
            match self.redis_url() {
                Some(url) => {
                    builder = builder.shared_tier(redis_tier::<V>(redis, &url).await?, redis.ttl)
                }
                None if redis.required => {
                    return Err(ConfigError::new(
                        "cache.redis.url",
                        format!(
                            "is required but neither `url` nor ${} is set",
                            redis.url_env
                        ),
                    )
                    .into());
                }
                None => {}
            }
        }
        if let Some(persistent) = &self.persistent {
            builder = builder.shared_tier(persistent_tier::<V>(persistent)?, persistent.ttl);
        }
        Ok(builder.build().map_err(|e| e.within("cache"))?)
    }
}

#[cfg(feature = "redis")]
async fn redis_tier<V>(section: &RedisTierSection, url: &str) -> Result<SharedTier<V>, BuildError>
where
    V: serde::Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let tier = backstop_cache::RedisTier::connect(url, section.tier_config())
        .await
        .map_err(|source| BuildError::Backend {
            section: "cache.redis",
            message: source.to_string(),
        })?;
    Ok(std::sync::Arc::new(tier))
}

#[cfg(not(feature = "redis"))]
async fn redis_tier<V>(
    _section: &RedisTierSection,
    _url: &str,
) -> Result<SharedTier<V>, BuildError> {
    Err(BuildError::FeatureDisabled {
        section: "cache.redis",
        feature: "redis",
    })
}

#[cfg(feature = "persistent")]
fn persistent_tier<V>(section: &PersistentTierSection) -> Result<SharedTier<V>, BuildError>
where
    V: serde::Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut codec = backstop_cache::ValueCodec::new();
    if let Some(bytes) = section.compress_above {
        codec = codec.compress_above(bytes);
    }
    let tier = backstop_cache::PersistentTier::open(&section.path, codec).map_err(|source| {
        BuildError::Backend {
            section: "cache.persistent",
            message: source.to_string(),
        }
    })?;
    Ok(std::sync::Arc::new(tier))
}

#[cfg(not(feature = "persistent"))]
fn persistent_tier<V>(_section: &PersistentTierSection) -> Result<SharedTier<V>, BuildError> {
    Err(BuildError::FeatureDisabled {
        section: "cache.persistent",
        feature: "persistent",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(section: CacheSection) -> String {
        section.validate().unwrap_err().field().to_string()
    }

    /// Issue 19: `[cache.redis] namespace = ""` was accepted, and invalidation then
    /// reached every key of the database.
    #[test]
    fn a_namespace_that_could_reach_foreign_keys_is_refused() {
        for namespace in ["", "*", "app:?", "app:[x]", "{app"] {
            let section = CacheSection {
                redis: Some(RedisTierSection {
                    namespace: namespace.to_string(),
                    ..RedisTierSection::default()
                }),
                ..CacheSection::default()
            };
            assert_eq!(field_of(section), "redis.namespace", "{namespace:?}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        let huge = Duration::from_secs(150_000_000_000_000 * 86_400);
        let redis = |section: RedisTierSection| CacheSection {
            redis: Some(section),
            ..CacheSection::default()
        };
        assert_eq!(
            field_of(redis(RedisTierSection {
                operation_timeout: huge,
                ..RedisTierSection::default()
            })),
            "redis.operation_timeout"
        );
        assert_eq!(
            field_of(redis(RedisTierSection {
                ttl: Some(huge),
                ..RedisTierSection::default()
            })),
            "redis.ttl"
        );
        let mut section = CacheSection::default();
        section.tiered.fresh_for = huge;
        assert_eq!(field_of(section), "tiered.fresh_for");
        let mut section = CacheSection::default();
        section.memory.ttl = Some(huge);
        assert_eq!(field_of(section), "memory.ttl");
    }
}
