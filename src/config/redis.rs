//! `[redis]`: the fleet's one Redis connection, and the Redis-backed primitives that share it.

use backstop_core::config::{ConfigError, Validate, ensure};
use backstop_redis::{RedisConfig, RedisConnection, SentinelConfig, TlsConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::{BackstopConfig, BuildError};

/// `[redis]`: where the fleet's Redis is — exactly one of `url`, `cluster_nodes` or
/// `sentinel` (or, with none of them, the URL in the variable `url_env`) — and how to talk
/// to it: `tls`, `username`/`password`, `namespace`, timeouts. Every Redis-backed part of
/// the stack that does not name its own URL runs on this one connection: the Redis
/// limiter (`[redis.limit]`), distributed dedup (`[redis.dedup]`), the cache's Redis tier
/// (`[cache.redis]` without a `url`) and the pool's `RedisManager`.
///
/// ```toml
/// [redis]
/// cluster_nodes = ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"]
/// namespace = "gateway:"     # in front of every key and channel
/// password_env = "REDIS_PASSWORD"
/// timeout = "200ms"
///
/// [redis.tls]
/// ca = "/etc/redis/ca.crt"
///
/// [redis.limit]              # requests and tokens, one budget, charged all or none
/// prefix = "rl"
/// quotas = [{ rate = 600, period = "1m" }, { rate = 100000, period = "1m" }]
/// on_failure = "local"
///
/// [redis.dedup]              # one execution per key across the fleet
/// prefix = "dedup"
/// lease_ttl = "30s"
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// One server: `redis://host:port/db` or `rediss://` (TLS).
    pub url: Option<String>,
    /// With no `url`, `cluster_nodes` or `sentinel`: the environment variable holding the
    /// URL (`"REDIS_URL"` by default), read when the connection is built.
    pub url_env: String,
    /// A Redis Cluster's seed nodes (`host:port`).
    pub cluster_nodes: Vec<String>,
    /// A primary behind Sentinel: `{ master = "…", nodes = ["host:port", …] }`.
    pub sentinel: Option<SentinelConfig>,
    /// TLS: `{ ca, cert, key }` (feature `redis-tls`).
    pub tls: Option<TlsConfig>,
    /// The ACL user of every data node (needs a password).
    pub username: Option<String>,
    /// The password of every data node. Prefer `password_env` over writing it in a file;
    /// never printed (by `Debug` or when the configuration is written back out).
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// The environment variable holding the password, read when the connection is built
    /// (when `password` is not set).
    pub password_env: Option<String>,
    /// In front of every key and channel the primitives on this connection write.
    pub namespace: String,
    /// The most one command may take on the wire.
    #[serde(with = "backstop_core::duration::human")]
    pub timeout: Duration,
    /// The most opening one connection may take.
    #[serde(with = "backstop_core::duration::human")]
    pub connect_timeout: Duration,
    /// `[redis.limit]`: the Redis limiter on this connection (feature `limit`).
    #[cfg(feature = "limit")]
    pub limit: Option<backstop_limit::RedisLimitConfig>,
    /// `[redis.dedup]`: distributed dedup on this connection (feature `dedup`).
    #[cfg(feature = "dedup")]
    pub dedup: Option<backstop_dedup::DistributedConfig>,
}

impl Default for RedisSection {
    fn default() -> Self {
        let defaults = RedisConfig::default();
        Self {
            url: None,
            url_env: "REDIS_URL".to_string(),
            cluster_nodes: Vec::new(),
            sentinel: None,
            tls: None,
            username: None,
            password: None,
            password_env: None,
            namespace: String::new(),
            timeout: defaults.timeout,
            connect_timeout: defaults.connect_timeout,
            #[cfg(feature = "limit")]
            limit: None,
            #[cfg(feature = "dedup")]
            dedup: None,
        }
    }
}

/// Every field, with the password redacted.
impl std::fmt::Debug for RedisSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("RedisSection");
        debug
            .field("connection", &self.topology(None, None))
            .field("url_env", &self.url_env)
            .field("password_env", &self.password_env);
        #[cfg(feature = "limit")]
        debug.field("limit", &self.limit);
        #[cfg(feature = "dedup")]
        debug.field("dedup", &self.dedup);
        debug.finish()
    }
}

impl RedisSection {
    /// The connection settings with the environment read: `url_env` when no topology is
    /// written, `password_env` when no password is. A missing variable names its field.
    pub fn redis_config(&self) -> Result<RedisConfig, ConfigError> {
        let url = if self.url.is_none() && self.cluster_nodes.is_empty() && self.sentinel.is_none()
        {
            Some(env(&self.url_env).ok_or_else(|| {
                ConfigError::new(
                    "url",
                    format!(
                        "or `cluster_nodes` or `sentinel` must be set, or the variable ${}",
                        self.url_env
                    ),
                )
            })?)
        } else {
            None
        };
        let password = match (&self.password, &self.password_env) {
            (None, Some(variable)) => Some(env(variable).ok_or_else(|| {
                ConfigError::new(
                    "password_env",
                    format!("names ${variable}, which is not set"),
                )
            })?),
            _ => None,
        };
        let config = self.topology(url, password);
        config.validate()?;
        Ok(config)
    }

    fn topology(&self, url: Option<String>, password: Option<String>) -> RedisConfig {
        RedisConfig {
            url: self.url.clone().or(url),
            cluster_nodes: self.cluster_nodes.clone(),
            sentinel: self.sentinel.clone(),
            tls: self.tls.clone(),
            username: self.username.clone(),
            password: self.password.clone().or(password),
            namespace: self.namespace.clone(),
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
        }
    }

    /// The shared connection, validated; it connects on first use.
    pub fn connection(&self) -> Result<RedisConnection, BuildError> {
        let config = self.redis_config().map_err(|e| e.within("redis"))?;
        RedisConnection::new(&config).map_err(|mistake| misconfigured("redis", mistake))
    }

    /// The Redis limiter of `[redis.limit]` on `connection`, or `None` without that section.
    #[cfg(feature = "limit")]
    pub fn limiter(
        &self,
        connection: &RedisConnection,
    ) -> Result<Option<backstop_limit::RedisRateLimiter>, ConfigError> {
        self.limit
            .as_ref()
            .map(|limit| {
                limit
                    .build(connection.clone())
                    .map_err(|e| e.within("redis.limit"))
            })
            .transpose()
    }

    /// The distributed dedup group of `[redis.dedup]` on `connection`, or `None` without
    /// that section.
    #[cfg(feature = "dedup")]
    pub fn dedup_group<K, V, E>(
        &self,
        connection: &RedisConnection,
    ) -> Result<Option<backstop_dedup::DistributedGroup<K, V, E>>, ConfigError>
    where
        K: std::hash::Hash + Eq + Clone + std::fmt::Display + Send + Sync + 'static,
        V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
    {
        self.dedup
            .as_ref()
            .map(|dedup| {
                backstop_dedup::DistributedGroup::new(connection.clone(), dedup.clone())
                    .map_err(|e| e.within("redis.dedup"))
            })
            .transpose()
    }

    /// A manager for the pool's Redis connections, on this deployment (feature `pool`).
    #[cfg(feature = "pool")]
    pub fn pool_manager(&self) -> Result<backstop_pool::RedisManager, BuildError> {
        let config = self.redis_config().map_err(|e| e.within("redis"))?;
        backstop_pool::RedisManager::from_config(&config)
            .map_err(|mistake| misconfigured("redis", mistake))
    }
}

impl Validate for RedisSection {
    /// Checks the connection (with a stand-in URL when it is to come from `url_env`, whose
    /// variable need not be set where the file is checked) and the subsections.
    fn validate(&self) -> Result<(), ConfigError> {
        let from_env =
            self.url.is_none() && self.cluster_nodes.is_empty() && self.sentinel.is_none();
        ensure(
            !from_env || !self.url_env.is_empty(),
            "url",
            "or `cluster_nodes` or `sentinel` must be set when `url_env` is empty",
        )?;
        let stand_in = from_env.then(|| "redis://127.0.0.1:6379".to_string());
        let password = self.password_env.as_ref().map(|_| "stand-in".to_string());
        self.topology(stand_in, password).validate()?;
        #[cfg(feature = "limit")]
        if let Some(limit) = &self.limit {
            limit.validate().map_err(|e| e.within("limit"))?;
        }
        #[cfg(feature = "dedup")]
        if let Some(dedup) = &self.dedup {
            dedup.validate().map_err(|e| e.within("dedup"))?;
        }
        Ok(())
    }
}

impl BackstopConfig {
    /// The fleet's shared Redis connection of `[redis]`, or `None` without that section.
    pub fn redis_connection(&self) -> Result<Option<RedisConnection>, BuildError> {
        self.redis
            .as_ref()
            .map(RedisSection::connection)
            .transpose()
    }

    /// The tiered cache of `[cache]`, its Redis tier on the shared `[redis]` connection
    /// when `[cache.redis]` names no `url` of its own, with other processes' writes
    /// dropping this process's L1 entries (the returned
    /// [`L1Invalidation`](backstop_cache::L1Invalidation) keeps that subscription; drop it to
    /// stop). Without `[redis]`, or with a `url` in `[cache.redis]`, it is
    /// [`CacheSection::build`](super::CacheSection::build) and no subscription.
    #[cfg(feature = "cache")]
    pub async fn redis_cache<V>(
        &self,
    ) -> Result<
        Option<(
            backstop_cache::TieredCache<String, V>,
            Option<backstop_cache::L1Invalidation>,
        )>,
        BuildError,
    >
    where
        V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        use backstop_cache::{Entry, MemoryCache, MemoryTier, RedisTier, TieredCache};
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let (Some(section), Some(redis)) = (&cache.redis, &self.redis) else {
            return cache.build().await.map(|built| Some((built, None)));
        };
        if section.url.is_some() {
            return cache.build().await.map(|built| Some((built, None)));
        }
        if cache.persistent.is_some() {
            return Err(BuildError::Backend {
                section: "cache.persistent",
                message: "a file tier behind the shared Redis tier is built by `cache.build()` \
                          (give `[cache.redis]` a `url`), not by `redis_cache`"
                    .to_string(),
            });
        }
        cache.validate().map_err(|e| e.within("cache"))?;
        let memory =
            MemoryCache::from_config(cache.memory.clone()).map_err(|e| e.within("cache.memory"))?;
        let l1 = memory.clone();
        let tier: RedisTier<Entry<V>> =
            RedisTier::with_connection(redis.connection()?, section.tier_config())
                .map_err(|e| e.within("cache.redis"))?;
        let invalidation = tier.invalidate_l1(l1);
        let built = TieredCache::builder()
            .config(cache.tiered.clone())
            .memory(MemoryTier::<Entry<V>>::new(memory), None)
            .shared_tier(std::sync::Arc::new(tier), section.ttl)
            .build()
            .map_err(|e| e.within("cache"))?;
        Ok(Some((built, Some(invalidation))))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn misconfigured(section: &'static str, mistake: backstop_redis::Misconfiguration) -> BuildError {
    match mistake {
        backstop_redis::Misconfiguration::Config(e) => BuildError::Invalid(e.within(section)),
        other => BuildError::Backend {
            section,
            message: other.to_string(),
        },
    }
}
