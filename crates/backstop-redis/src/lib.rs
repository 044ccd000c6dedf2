//! One way to reach Redis for every Backstop crate: a standalone server, a Redis Cluster,
//! a primary behind Sentinel, each optionally over TLS (feature `tls`).
//!
//! - [`RedisConfig`] is the `[redis]` section: `url` | `cluster_nodes` |
//!   `sentinel { master, nodes }`, `tls`, timeouts. It validates into a
//!   [`ConfigError`](backstop_core::ConfigError) naming the field.
//! - [`RedisConnection`] is the cheap-clone handle built from it (or from a
//!   `redis::Client`). It connects lazily, reconnects by itself (a Sentinel master is
//!   re-resolved on every reconnect; a cluster follows `MOVED` and refreshes its slot map)
//!   and runs commands, scripts and pipelines through [`RedisConnection::run`], which sorts
//!   every failure into an outage ([`RedisFault::Unavailable`], for the caller's failure
//!   policy) or a mistake ([`RedisFault::Misconfigured`], never to be hidden by a policy).
//! - [`key`] builds keys that stay correct in a cluster: every key of one script shares a
//!   hash tag that no user key can break (braces, empty and binary keys are escaped).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use backstop_redis::{RedisConfig, RedisConnection};
//!
//! let config: RedisConfig = serde_json::from_str(
//!     r#"{"cluster_nodes": ["10.0.0.1:6379", "10.0.0.2:6379"], "timeout": "200ms"}"#,
//! )?;
//! let redis = RedisConnection::new(&config)?;
//! let key = backstop_redis::key::tagged("app", "user-42", "count");
//! let count: i64 = redis
//!     .run(|mut conn| async move { redis::cmd("INCR").arg(&key).query_async(&mut conn).await })
//!     .await?;
//! # let _ = count; Ok(()) }
//! ```
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod connection;
mod error;
pub mod key;
mod tls;

pub use config::{RedisConfig, SentinelConfig, TlsConfig};
pub use connection::{RedisConn, RedisConnection, ScanNode, Topology};
pub use error::{Misconfiguration, RedisFault};
/// The redis-rs version Backstop is built on, so users need not match its major version.
pub use redis;
