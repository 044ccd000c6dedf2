//! The shared L2: a [`Tier`] on Redis (feature `redis`).

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use serde::{Serialize, de::DeserializeOwned};
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use super::namespace::validate_redis_namespace;
use super::tier::{TierCounters, ensure_prefix};
use crate::{Tier, TierError, TierStats, ValueCodec};
use backstop_core::config::{ConfigError, Validate, ensure, ensure_at_most, ensure_duration};

/// Settings of a [`RedisTier`], checked when the tier is made ([`Validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTierConfig {
    /// Prepended to every key (`"backstop:"` by default), so one Redis can hold several
    /// caches and prefix invalidation never touches another application's keys. It must
    /// not be empty and must not hold the glob characters of `SCAN … MATCH` (`*`, `?`,
    /// `[`, `]`, `\`) or an unbalanced brace (which would turn part of every key into a
    /// cluster hash tag); `{app}:` is a whole hash tag and allowed.
    pub namespace: String,
    /// How values are encoded.
    pub codec: ValueCodec,
    /// How long one Redis operation may take before it fails with [`TierError::Timeout`].
    pub operation_timeout: Duration,
    /// Keys scanned and unlinked per round trip during prefix invalidation (1 to
    /// [`MAX_REDIS_SCAN_BATCH`]).
    pub scan_batch: usize,
}

/// The largest `scan_batch`: one `UNLINK` of more keys would block the server.
pub const MAX_REDIS_SCAN_BATCH: usize = 100_000;

impl Validate for RedisTierConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_redis_namespace("namespace", &self.namespace)?;
        ensure(
            !self.operation_timeout.is_zero(),
            "operation_timeout",
            "must be greater than zero",
        )?;
        ensure_duration("operation_timeout", self.operation_timeout)?;
        ensure(self.scan_batch > 0, "scan_batch", "must be at least 1")?;
        ensure_at_most(
            "scan_batch",
            self.scan_batch as u64,
            MAX_REDIS_SCAN_BATCH as u64,
        )
    }
}

impl Default for RedisTierConfig {
    fn default() -> Self {
        Self {
            namespace: "backstop:".to_string(),
            codec: ValueCodec::new().compress_above(1024),
            operation_timeout: Duration::from_millis(250),
            scan_batch: 500,
        }
    }
}

/// A cache tier in Redis, over one auto-reconnecting multiplexed connection.
///
/// Values are MessagePack, LZ4-compressed above a threshold; TTLs are set with `PX`;
/// `get_many` is one `MGET`; prefix invalidation walks `SCAN … MATCH` in batches and
/// removes with `UNLINK`, so a large invalidation never blocks the server. Every operation
/// has a timeout, so a stalled Redis slows a request by at most that much.
pub struct RedisTier<V> {
    connection: ConnectionManager,
    config: RedisTierConfig,
    counters: TierCounters,
    _values: PhantomData<fn() -> V>,
}

impl<V> RedisTier<V> {
    /// Connects to `url` (for example `redis://127.0.0.1:6379`), once `config` is valid
    /// ([`TierError::Config`] names the field otherwise).
    pub async fn connect(url: &str, config: RedisTierConfig) -> Result<Self, TierError> {
        config.validate()?;
        let client = redis::Client::open(url).map_err(backend)?;
        let connection = tokio::time::timeout(
            config.operation_timeout.max(Duration::from_secs(1)),
            ConnectionManager::new(client),
        )
        .await
        .map_err(|_| TierError::Timeout(config.operation_timeout))?
        .map_err(backend)?;
        Ok(Self::with_connection(connection, config)?)
    }

    /// Uses an existing connection manager, once `config` is valid.
    pub fn with_connection(
        connection: ConnectionManager,
        config: RedisTierConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            connection,
            config,
            counters: TierCounters::default(),
            _values: PhantomData,
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.config.namespace)
    }

    async fn timed<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, TierError> {
        let result = match tokio::time::timeout(self.config.operation_timeout, operation).await {
            Ok(result) => result.map_err(backend),
            Err(_) => Err(TierError::Timeout(self.config.operation_timeout)),
        };
        self.counters.track(result)
    }
}

fn backend(error: redis::RedisError) -> TierError {
    TierError::Backend(error.to_string())
}

/// Escapes the glob characters of `SCAN … MATCH` so a prefix is matched literally.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[async_trait]
impl<V> Tier<V> for RedisTier<V>
where
    V: Serialize + DeserializeOwned + Send + Sync,
{
    fn name(&self) -> &str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<V>, TierError> {
        let mut connection = self.connection.clone();
        let bytes: Option<Vec<u8>> = self
            .timed(
                redis::cmd("GET")
                    .arg(self.full_key(key))
                    .query_async(&mut connection),
            )
            .await?;
        self.counters.read(bytes.is_some());
        let value = bytes
            .map(|bytes| self.config.codec.decode(&bytes))
            .transpose();
        self.counters.track(value)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<V>>, TierError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let full_keys: Vec<String> = keys.iter().map(|key| self.full_key(key)).collect();
        let found: Vec<Option<Vec<u8>>> = self
            .timed(
                redis::cmd("MGET")
                    .arg(&full_keys)
                    .query_async(&mut connection),
            )
            .await?;
        let values = found
            .into_iter()
            .map(|bytes| {
                self.counters.read(bytes.is_some());
                bytes
                    .map(|bytes| self.config.codec.decode(&bytes))
                    .transpose()
            })
            .collect();
        self.counters.track(values)
    }

    async fn set(&self, key: &str, value: &V, ttl: Option<Duration>) -> Result<(), TierError> {
        let bytes = self.counters.track(self.config.codec.encode(value))?;
        let mut command = redis::cmd("SET");
        command.arg(self.full_key(key)).arg(bytes);
        if let Some(ttl) = ttl {
            // Redis refuses PX 0; a TTL under a millisecond is rounded up to one.
            let millis = backstop_core::time::millis(ttl).max(1);
            command.arg("PX").arg(millis);
        }
        let mut connection = self.connection.clone();
        let () = self.timed(command.query_async(&mut connection)).await?;
        self.counters.set();
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), TierError> {
        let mut connection = self.connection.clone();
        let _removed: u64 = self
            .timed(
                redis::cmd("UNLINK")
                    .arg(self.full_key(key))
                    .query_async(&mut connection),
            )
            .await?;
        self.counters.delete();
        Ok(())
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        ensure_prefix(prefix)?;
        self.unlink_matching(prefix).await
    }

    async fn invalidate_all(&self) -> Result<u64, TierError> {
        // The namespace is validated non-empty, so this is `namespace*`, never `*`.
        self.unlink_matching("").await
    }

    fn stats(&self) -> TierStats {
        self.counters.snapshot()
    }
}

impl<V> RedisTier<V> {
    /// Unlinks every key of this namespace that starts with `prefix`.
    async fn unlink_matching(&self, prefix: &str) -> Result<u64, TierError> {
        let pattern = format!("{}*", glob_escape(&self.full_key(prefix)));
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .timed(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(self.config.scan_batch)
                        .query_async(&mut connection),
                )
                .await?;
            if !keys.is_empty() {
                let count: u64 = self
                    .timed(redis::cmd("UNLINK").arg(&keys).query_async(&mut connection))
                    .await?;
                removed += count;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.counters.invalidated(removed);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_that_could_reach_foreign_keys_are_refused() {
        for bad in [
            "", "*", "app:*", "a?", "a[b]", "a]", "a\\b", "{app", "app}", "{{a}}",
        ] {
            let config = RedisTierConfig {
                namespace: bad.to_string(),
                ..RedisTierConfig::default()
            };
            let error = config.validate().expect_err(bad);
            assert_eq!(error.field(), "namespace", "{bad:?}");
        }
        for good in ["backstop:", "{app}:", "a-b.c/d:"] {
            let config = RedisTierConfig {
                namespace: good.to_string(),
                ..RedisTierConfig::default()
            };
            assert_eq!(config.validate(), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn sizes_and_durations_are_bounded() {
        let base = RedisTierConfig::default;
        let broken = [
            (
                RedisTierConfig {
                    operation_timeout: Duration::MAX,
                    ..base()
                },
                "operation_timeout",
            ),
            (
                RedisTierConfig {
                    operation_timeout: Duration::ZERO,
                    ..base()
                },
                "operation_timeout",
            ),
            (
                RedisTierConfig {
                    scan_batch: 0,
                    ..base()
                },
                "scan_batch",
            ),
            (
                RedisTierConfig {
                    scan_batch: usize::MAX,
                    ..base()
                },
                "scan_batch",
            ),
        ];
        for (config, field) in broken {
            assert_eq!(config.validate().unwrap_err().field(), field);
        }
    }

    #[test]
    fn glob_characters_are_matched_literally() {
        assert_eq!(glob_escape("user:[1]*?"), "user:\\[1\\]\\*\\?");
        assert_eq!(glob_escape("plain:key"), "plain:key");
    }
}
