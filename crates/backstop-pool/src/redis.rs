//! A ready [`Manager`] for Redis connections (feature `redis`), for any topology
//! backstop-redis reaches: one server, a Redis Cluster, a primary behind Sentinel, TLS.

use backstop_redis::{Misconfiguration, RedisConfig, RedisConn, RedisConnection, RedisFault};
use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use redis::Client;

/// Opens Redis connections; the health check is a `PING`.
///
/// Each pooled object is its own connection: a multiplexed connection to one server, a
/// cluster connection (one socket per node, following `MOVED` and failovers), or a
/// connection to the primary Sentinel names at creation. A connection whose server died
/// fails its health check and is replaced by a new one, which asks Sentinel again. A
/// misconfiguration (a standalone URL at a cluster node or at a replica) is a creation
/// error naming it ([`RedisFault::Misconfigured`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use backstop_pool::{Pool, PoolConfig, RedisManager};
/// use backstop_redis::RedisConfig;
///
/// let manager = RedisManager::from_config(&RedisConfig::cluster(["10.0.0.1:6379"]))?;
/// let pool = Pool::new(manager, PoolConfig::default())?;
/// let mut conn = pool.get().await?;
/// let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut *conn).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisManager {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Config(RedisConfig),
    Client(Client),
}

impl RedisManager {
    /// A manager for one server at `url` (`redis://host:port/db`, `rediss://` with the
    /// `tls` feature of backstop-redis).
    pub fn new(url: &str) -> Result<Self, Misconfiguration> {
        Self::from_config(&RedisConfig::url(url))
    }

    /// A manager for the deployment `config` describes, validated (the error names the
    /// field).
    pub fn from_config(config: &RedisConfig) -> Result<Self, Misconfiguration> {
        // Validates the config and reads its TLS files once, up front.
        RedisConnection::new(config)?;
        Ok(Self {
            source: Source::Config(config.clone()),
        })
    }

    /// A manager for an existing client (one server).
    pub fn from_client(client: Client) -> Self {
        Self {
            source: Source::Client(client),
        }
    }
}

impl Manager for RedisManager {
    type Type = RedisConn;
    type Error = RedisFault;

    async fn create(&self) -> Result<RedisConn, RedisFault> {
        // A fresh handle per object: each pooled object owns its connection.
        let handle = match &self.source {
            Source::Config(config) => {
                RedisConnection::new(config).map_err(RedisFault::Misconfigured)?
            }
            Source::Client(client) => RedisConnection::from(client.clone()),
        };
        handle.conn().await
    }

    async fn recycle(&self, conn: &mut RedisConn, _: &Metrics) -> RecycleResult<RedisFault> {
        let pong: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(|e| RecycleError::Backend(RedisFault::Unavailable(e)))?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RecycleError::message("unexpected PING reply"))
        }
    }
}
