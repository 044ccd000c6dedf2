//! A ready [`Manager`] for Redis connections (feature `redis`).

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use redis::aio::MultiplexedConnection;
use redis::{Client, RedisError};

/// Opens Redis connections; the health check is a `PING`.
#[derive(Debug, Clone)]
pub struct RedisManager {
    client: Client,
}

impl RedisManager {
    /// A manager for `url` (`redis://host:port/db`).
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Ok(Self {
            client: Client::open(url)?,
        })
    }

    /// A manager for an existing client.
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }
}

impl Manager for RedisManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client.get_multiplexed_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        let pong: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(RecycleError::Backend)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RecycleError::message("unexpected PING reply"))
        }
    }
}
