//! The shared L2: a [`Tier`] on Redis (feature `redis`).

mod invalidation;

pub use invalidation::{L1Invalidation, L1InvalidationStats};

use async_trait::async_trait;
use backstop_redis::key::slot;
use backstop_redis::{RedisConfig, RedisConnection, RedisFault, Topology};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::namespace::validate_redis_namespace;
use super::tier::{TierCounters, ensure_prefix};
use crate::{Tier, TierError, TierStats, ValueCodec};
use backstop_core::config::{ConfigError, Validate, ensure_count, ensure_positive_duration};

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
    /// Whether every `set`, `delete` and invalidation is announced on the namespace's
    /// invalidation channel (`PUBLISH`, one more round trip after the write), so other
    /// processes' L1 caches subscribed with [`RedisTier::invalidate_l1`] drop the key.
    /// Default `true`.
    pub publish_invalidations: bool,
}

/// The largest `scan_batch`: one `UNLINK` of more keys would block the server.
pub const MAX_REDIS_SCAN_BATCH: usize = 100_000;

impl Validate for RedisTierConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_redis_namespace("namespace", &self.namespace)?;
        ensure_positive_duration("operation_timeout", self.operation_timeout)?;
        ensure_count("scan_batch", self.scan_batch, 1, MAX_REDIS_SCAN_BATCH)
    }
}

impl Default for RedisTierConfig {
    fn default() -> Self {
        Self {
            namespace: "backstop:".to_string(),
            codec: ValueCodec::new().compress_above(1024),
            operation_timeout: Duration::from_millis(250),
            scan_batch: 500,
            publish_invalidations: true,
        }
    }
}

/// A cache tier in Redis: one server, a Redis Cluster or a primary behind Sentinel,
/// optionally over TLS (any [`RedisConnection`]).
///
/// Values are MessagePack, LZ4-compressed above a threshold; TTLs are set with `PX`.
/// `get_many` is one `MGET` on one server; on a cluster it is one `MGET` per slot, sent
/// concurrently (a cluster refuses an `MGET` across slots). Prefix invalidation walks
/// `SCAN … MATCH` on every primary in batches and removes with `UNLINK` per slot, so a
/// large invalidation never blocks a server. Every operation has a timeout, so a stalled
/// Redis slows a request by at most that much.
///
/// Every write is announced on the namespace's invalidation channel (see
/// [`RedisTierConfig::publish_invalidations`]); [`invalidate_l1`](Self::invalidate_l1)
/// keeps a process's L1 in step with the other processes' writes.
pub struct RedisTier<V> {
    connection: RedisConnection,
    config: RedisTierConfig,
    counters: TierCounters,
    origin: Arc<str>,
    /// `config.namespace` behind the connection's namespace.
    namespace: Box<str>,
    _values: PhantomData<fn() -> V>,
}

impl<V> RedisTier<V> {
    /// Connects to `url` (for example `redis://127.0.0.1:6379`), once `config` is valid
    /// ([`TierError::Config`] names the field otherwise).
    pub async fn connect(url: &str, config: RedisTierConfig) -> Result<Self, TierError> {
        let redis = RedisConfig {
            timeout: config.operation_timeout,
            connect_timeout: config.operation_timeout.max(Duration::from_secs(1)),
            ..RedisConfig::url(url)
        };
        Self::connect_to(&redis, config).await
    }

    /// Connects to the deployment `redis` describes (one server, a cluster, Sentinel; TLS)
    /// now, so a misconfiguration or an unreachable Redis shows at startup.
    pub async fn connect_to(
        redis: &RedisConfig,
        config: RedisTierConfig,
    ) -> Result<Self, TierError> {
        config.validate()?;
        let connection = RedisConnection::connect(redis).await.map_err(fault)?;
        Ok(Self::with_connection(connection, config)?)
    }

    /// Uses an existing connection (a [`RedisConnection`], or a `redis::Client` for one
    /// server), once `config` is valid; it connects on first use. Keys and the invalidation
    /// channel start with the connection's [namespace](RedisConnection::namespace), then
    /// `config.namespace`.
    pub fn with_connection(
        connection: impl Into<RedisConnection>,
        config: RedisTierConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let connection = connection.into();
        Ok(Self {
            namespace: connection.namespaced(&config.namespace).into(),
            connection,
            origin: invalidation::origin(),
            config,
            counters: TierCounters::default(),
            _values: PhantomData,
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    /// The channel writes are announced on: the namespace followed by `invalidations`.
    pub fn invalidation_channel(&self) -> String {
        invalidation::channel(&self.namespace)
    }

    async fn timed<T>(
        &self,
        operation: impl Future<Output = Result<T, RedisFault>>,
    ) -> Result<T, TierError> {
        let result = match tokio::time::timeout(self.config.operation_timeout, operation).await {
            Ok(result) => result.map_err(fault),
            Err(_) => Err(TierError::Timeout(self.config.operation_timeout)),
        };
        self.counters.track(result)
    }

    /// One command on the connection, under the operation timeout.
    async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, TierError> {
        self.timed(
            self.connection
                .run(|mut conn| async move { command.query_async(&mut conn).await }),
        )
        .await
    }

    /// Announces a change to other processes' L1 caches. A failed announcement is logged
    /// and counted, not returned: the write itself succeeded, and the subscribers' L1 TTL
    /// bounds how long they may serve the old value.
    async fn announce(&self, change: invalidation::Change<'_>) {
        if !self.config.publish_invalidations {
            return;
        }
        let mut command = redis::cmd("PUBLISH");
        command
            .arg(self.invalidation_channel())
            .arg(invalidation::encode(&self.origin, change));
        if let Err(error) = self.query::<i64>(command).await {
            tracing::warn!(%error, "could not announce a cache invalidation; other L1 caches keep the key until their TTL");
        }
    }
}

/// A Redis failure as the tier reports it: a misconfiguration names itself.
fn fault(fault: RedisFault) -> TierError {
    match fault {
        RedisFault::Misconfigured(backstop_redis::Misconfiguration::Config(e)) => {
            TierError::Config(e)
        }
        RedisFault::TimedOut(after) => TierError::Timeout(after),
        other => TierError::Backend(other.to_string()),
    }
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

/// Indices of `keys` grouped by cluster slot, in slot order.
fn by_slot(keys: &[String]) -> BTreeMap<u16, Vec<usize>> {
    let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (index, key) in keys.iter().enumerate() {
        groups.entry(slot(key.as_bytes())).or_default().push(index);
    }
    groups
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
        let mut command = redis::cmd("GET");
        command.arg(self.full_key(key));
        let bytes: Option<Vec<u8>> = self.query(command).await?;
        let value = self.counters.decode_read(&self.config.codec, bytes);
        self.counters.track(value)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<V>>, TierError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full_keys: Vec<String> = keys.iter().map(|key| self.full_key(key)).collect();
        let found: Vec<Option<Vec<u8>>> = if self.connection.topology() == Topology::Cluster {
            // One MGET per slot, all in flight at once: the cluster client sends each to
            // the primary owning its slot over that node's multiplexed connection.
            let groups = by_slot(&full_keys);
            let reads = groups.values().map(|indices| {
                let mut command = redis::cmd("MGET");
                for &i in indices {
                    command.arg(&full_keys[i]);
                }
                self.query::<Vec<Option<Vec<u8>>>>(command)
            });
            let replies = futures::future::try_join_all(reads).await?;
            let mut found = vec![None; full_keys.len()];
            for (indices, reply) in groups.values().zip(replies) {
                for (&i, bytes) in indices.iter().zip(reply) {
                    found[i] = bytes;
                }
            }
            found
        } else {
            let mut command = redis::cmd("MGET");
            command.arg(&full_keys);
            self.query(command).await?
        };
        let values = found
            .into_iter()
            .map(|bytes| self.counters.decode_read(&self.config.codec, bytes))
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
        let () = self.query(command).await?;
        self.counters.set();
        self.announce(invalidation::Change::Key(key)).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), TierError> {
        let mut command = redis::cmd("UNLINK");
        command.arg(self.full_key(key));
        let _removed: u64 = self.query(command).await?;
        self.counters.delete();
        self.announce(invalidation::Change::Key(key)).await;
        Ok(())
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<u64, TierError> {
        ensure_prefix(prefix)?;
        let removed = self.unlink_matching(prefix).await?;
        self.announce(invalidation::Change::Prefix(prefix)).await;
        Ok(removed)
    }

    async fn invalidate_all(&self) -> Result<u64, TierError> {
        // The namespace is validated non-empty, so this is `namespace*`, never `*`.
        let removed = self.unlink_matching("").await?;
        self.announce(invalidation::Change::All).await;
        Ok(removed)
    }

    fn stats(&self) -> TierStats {
        self.counters.snapshot()
    }
}

impl<V> RedisTier<V> {
    /// Unlinks every key of this namespace that starts with `prefix`, on every primary.
    async fn unlink_matching(&self, prefix: &str) -> Result<u64, TierError> {
        let pattern = format!("{}*", glob_escape(&self.full_key(prefix)));
        let nodes = self.timed(self.connection.scan_nodes()).await?;
        let mut removed = 0;
        for node in &nodes {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = self
                    .timed(self.connection.scan_page(
                        node,
                        cursor,
                        &pattern,
                        self.config.scan_batch,
                    ))
                    .await?;
                removed += self.unlink(keys).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        self.counters.invalidated(removed);
        Ok(removed)
    }

    /// `UNLINK` of `keys`: one command on one server, one per slot on a cluster.
    async fn unlink(&self, keys: Vec<String>) -> Result<u64, TierError> {
        if keys.is_empty() {
            return Ok(0);
        }
        if self.connection.topology() != Topology::Cluster {
            let mut command = redis::cmd("UNLINK");
            command.arg(&keys);
            return self.query(command).await;
        }
        let unlinks = by_slot(&keys).into_values().map(|indices| {
            let mut command = redis::cmd("UNLINK");
            for i in indices {
                command.arg(&keys[i]);
            }
            self.query::<u64>(command)
        });
        Ok(futures::future::try_join_all(unlinks)
            .await?
            .into_iter()
            .sum())
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
