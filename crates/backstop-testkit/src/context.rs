//! A Redis test context for tests that talk to a real Redis server.
//!
//! Tests call [`RedisTestContext::from_env`]. With `REDIS_URL` set it connects (a set but
//! unreachable server fails the test: a broken CI setup must not pass as a skip) and hands
//! out a key prefix no other test uses. Without `REDIS_URL` it prints a skip notice and
//! returns `None`, except under `CI` where a missing server is an error, so CI can never
//! silently skip the Redis tests.
//!
//! ```no_run
//! # async fn example() {
//! use backstop_testkit::RedisTestContext;
//!
//! let Some(redis) = RedisTestContext::from_env("my_feature_round_trips").await else {
//!     return;
//! };
//! let mut connection = redis.connection().await;
//! let key = redis.key("greeting");
//! let _: () = redis::cmd("SET").arg(&key).arg("hi").query_async(&mut connection).await.unwrap();
//! redis.cleanup().await;
//! # }
//! ```

use redis::aio::MultiplexedConnection;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_CONTEXT: AtomicU64 = AtomicU64::new(0);

/// A connection to the test Redis server and a key prefix private to one test.
#[derive(Clone)]
pub struct RedisTestContext {
    client: redis::Client,
    url: String,
    prefix: String,
}

impl RedisTestContext {
    /// Connects to `REDIS_URL`, or returns `None` after printing why the test is skipped.
    ///
    /// # Panics
    ///
    /// When `REDIS_URL` is set but the server cannot be reached or answers `PING` wrongly,
    /// and when `CI` is set without `REDIS_URL`: in both cases the environment is broken
    /// and the test must fail rather than pass without testing anything.
    pub async fn from_env(test_name: &str) -> Option<Self> {
        let Ok(url) = std::env::var("REDIS_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "REDIS_URL is not set under CI: `.ci/run` must start redis-server and export it"
            );
            // Written to the process's stderr rather than with eprintln!, which libtest
            // captures: the notice must be visible in a normal `cargo test` run.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test_name}: REDIS_URL is not set (run `bash .ci/run`, or start redis-server and export REDIS_URL=redis://127.0.0.1:6379)"
            );
            return None;
        };
        let client = redis::Client::open(url.as_str())
            .unwrap_or_else(|error| panic!("REDIS_URL={url} is not a valid Redis URL: {error}"));
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|error| panic!("cannot connect to REDIS_URL={url}: {error}"));
        let pong: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("PING to REDIS_URL={url} failed: {error}"));
        assert_eq!(pong, "PONG", "unexpected PING reply from {url}");
        let prefix = format!(
            "backstop-test:{test_name}:{}:{}:",
            std::process::id(),
            NEXT_CONTEXT.fetch_add(1, Ordering::Relaxed)
        );
        Some(Self {
            client,
            url,
            prefix,
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client, for code under test that opens its own connections.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The prefix every key of this test must start with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A new multiplexed connection.
    ///
    /// # Panics
    ///
    /// When the server that answered `PING` a moment ago can no longer be reached.
    pub async fn connection(&self) -> MultiplexedConnection {
        self.client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url))
    }

    /// How many keys under this test's prefix exist now.
    pub async fn count_keys(&self) -> usize {
        self.keys().await.len()
    }

    /// Deletes every key under this test's prefix.
    pub async fn cleanup(&self) {
        let keys = self.keys().await;
        if keys.is_empty() {
            return;
        }
        let mut connection = self.connection().await;
        let _: Result<(), _> = redis::cmd("UNLINK")
            .arg(&keys)
            .query_async(&mut connection)
            .await;
    }

    async fn keys(&self) -> Vec<String> {
        let mut connection = self.connection().await;
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("SCAN on {} failed: {error}", self.url));
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }
}

impl std::fmt::Debug for RedisTestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTestContext")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}
