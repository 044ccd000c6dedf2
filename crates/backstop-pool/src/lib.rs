//! A production connection pool with [`deadpool`]'s manager model.
//!
//! Gateways hold connections to LLM providers, vector stores, databases and Redis.
//! `backstop-pool` takes deadpool's [`Manager`] trait (re-exported here, so every
//! deadpool manager works unchanged) and adds what HikariCP and bb8 users rely on and
//! deadpool users keep asking for:
//!
//! - **min idle** kept warm by a background task, with bounded concurrent creation and
//!   exponential backoff when creation fails (no busy loop);
//! - **wait / create / recycle timeouts**, and a wait timeout that carries the last
//!   creation error instead of hiding it (bb8 #141);
//! - **idle timeout** and **max lifetime** with per-connection jitter (up to 2.5 % by
//!   default) so a fleet does not reconnect at once, enforced by a reaper and at checkout;
//! - **health checks** on checkout through [`Manager::recycle`], skipped when the
//!   connection was used within a short window (HikariCP's 500 ms bypass), plus an optional
//!   keepalive for idle connections; a failed check discards the connection and tries the next;
//! - **leak detection**: a `tracing` warning naming the checkout site (or a label) when
//!   a connection is held past a threshold;
//! - **metrics**: [`Pool::stats`] ([`PoolStats`]: in use, idle, waiters, created, closed
//!   by reason, timeouts, wait and usage latency) and [`LoadSignal`](backstop_core::LoadSignal);
//! - **adaptive sizing** ([`AdaptivePoolConfig`]): grows `max_size` when the p95 wait exceeds a
//!   target and shrinks it when peak concurrency leaves it unused, logging every resize
//!   with its reason;
//! - **named pools** ([`PoolSet`]) from one serde config map, a [`PoolLayer`] for
//!   [`backstop_core::Service`], and ready managers for TCP ([`TcpManager`]) and Redis
//!   (`RedisManager`, feature `redis`).
//!
//! ## Design
//!
//! The pool keeps deadpool's manager model but not its pool: wrapping
//! `deadpool::managed::Pool` cost twice its checkout time (258 ns against 127 ns, with
//! the rules above living in a wrapper manager and a wrapper object), so the core is its
//! own. One short lock guards the idle connections, the count of open ones and a FIFO
//! queue of waiters; a returned connection (or the room left by a closed one) is handed
//! straight to the longest waiter, so waits are fair and no waiter wakes to find its
//! connection taken. A checkout that finds an idle connection used within the bypass
//! window takes the lock once, reads the clock once, and arms no timer; only a checkout
//! that must wait, create or health-check builds the timed, boxed slow path. Connection
//! timestamps are integer nanoseconds from a [`Clock`](backstop_core::Clock)
//! ([`DefaultClock`](backstop_core::DefaultClock), or
//! [`TokioClock`](backstop_core::TokioClock) under paused test time via
//! [`Pool::with_clock`]); the time a caller held a connection is recorded under the lock
//! its return takes anyway. Pool-wide rules (min idle, reaping, keepalive, adaptive
//! sizing) run in one housekeeping task that holds only a `Weak`, so it ends when the
//! pool is dropped. Cancellation is handled by guards: a checkout dropped while waiting,
//! creating or health-checking gives its capacity back. Defaults follow HikariCP: 30 s
//! wait, 10 min idle timeout, 30 min max lifetime, leak detection off.
//!
//! ## Example
//!
//! ```
//! use backstop_pool::{Manager, Metrics, Pool, PoolConfig, RecycleResult};
//! use std::time::Duration;
//!
//! struct Conns;
//! impl Manager for Conns {
//!     type Type = String;
//!     type Error = std::io::Error;
//!     async fn create(&self) -> Result<String, std::io::Error> { Ok("conn".into()) }
//!     async fn recycle(&self, _: &mut String, _: &Metrics) -> RecycleResult<std::io::Error> { Ok(()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = PoolConfig::builder()
//!     .max_size(8)
//!     .min_idle(2)
//!     .wait_timeout(Duration::from_secs(2))
//!     .leak_detection_threshold(Duration::from_secs(60))
//!     .build()
//!     .unwrap();
//! let pool = Pool::new(Conns, config).unwrap();
//! {
//!     let conn = pool.get().await.unwrap();
//!     assert_eq!(conn.as_str(), "conn");
//! }
//! let stats = pool.stats();
//! assert_eq!(stats.checkouts, 1);
//! assert_eq!(stats.in_use, 0);
//! # }
//! ```
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod adaptive;
mod config;
mod conn;
mod error;
mod housekeeping;
mod layer;
mod pool;
#[cfg(feature = "redis")]
mod redis;
mod set;
mod slots;
mod stats;
mod tcp;

pub use config::{AdaptivePoolConfig, MAX_POOL_SIZE, PoolConfig, PoolConfigBuilder, QueueMode};
pub use conn::PoolManager;
pub use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
pub use error::{PoolBuildError, PoolError};
pub use layer::{BrokenClassifier, Leased, NeverBroken, PoolLayer, PoolService};
pub use pool::{BrokenFlag, Pool, Pooled};
#[cfg(feature = "redis")]
pub use redis::RedisManager;
pub use set::{PoolSet, PoolSetConfig};
pub use stats::{ClosedStats, PoolStats};
pub use tcp::TcpManager;
