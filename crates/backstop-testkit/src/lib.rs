//! Test harnesses shared by the tests of Backstop's crates, kept out of the published crates
//! (`publish = false`, used only as a dev-dependency):
//!
//! - [`RedisTestContext`]: a connection to the standalone test server (`REDIS_URL`) and a key
//!   prefix private to one test;
//! - [`fleet`]: the addresses `.ci/redis-fleet` exports (cluster, Sentinel, TLS) as
//!   `RedisConfig`s, and killing and restarting servers for failover tests;
//! - [`Calls`]: counts the calls a test double receives;
//! - [`assert_fields!`]: several named fields of one value checked at once;
//! - [`logs`]: formatted `tracing` output captured for assertions;
//! - [`on_paused_clock`]: a current-thread runtime with paused time, for synchronous tests.
//!
//! Without its variable a test is skipped with a notice; under `CI` a missing variable fails
//! the test, so no Redis test is silently skipped there.
#![forbid(unsafe_code)]

mod calls;
mod context;
mod fields;
pub mod fleet;
pub mod logs;
mod runtime;

pub use calls::Calls;
pub use context::RedisTestContext;
pub use runtime::on_paused_clock;
