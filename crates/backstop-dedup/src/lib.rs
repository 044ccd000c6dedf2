//! Request deduplication for Backstop: identical requests in flight share one
//! execution, and retries within a window get the first answer.
//!
//! Agents fire the same tool call or prompt many times at once (retries, fan-out,
//! several agents on one task). This crate offers:
//!
//! - [`Group`]: singleflight. `group.work(key, || fut)` runs `fut` once per key while it
//!   is in flight; every concurrent caller gets a clone of the result, and [`DedupOutcome`]
//!   says whether it was shared. In-flight keys live in a sharded map (`dashmap`), so
//!   there is no global lock on the hot path.
//! - [`DedupWindow`]: a duplicate-detection window. Completed results are remembered by
//!   idempotency key for a TTL and a bounded count, so a retry returns the first result
//!   instead of running again; errors are remembered only if configured.
//! - `DistributedGroup` (feature `redis`): singleflight across processes. Each process
//!   coalesces its own callers first; one of them wins a Redis lease (`SET NX PX`,
//!   owner-checked renewal and release) and runs the work, and the others poll for the
//!   result it publishes with a TTL. A cancelled or panicking executor releases its
//!   lease, a crashed one's lease expires, and a waiter takes over; when Redis fails, the call runs locally or fails, as configured, within a
//!   per-call timeout.
//! - [`DedupLayer`]: any of them around any [`backstop_core::Service`], with a key
//!   extractor closure.
//! - [`StreamGroup`]: shared in-flight *streams* (LLM answers token by token). Identical
//!   concurrent requests read one upstream stream, each at its own pace; a late joiner
//!   first replays the chunks already produced, then reads the live tail, so every reader
//!   sees the full sequence and a follower's first token comes as soon as the leader's.
//!   Buffered chunks are bounded in bytes ([`StreamShareConfig`]); a reader that falls
//!   behind the bound gets a typed lag error or holds the others back ([`LagPolicy`]). An
//!   upstream error reaches every reader after the chunks it had; the leader leaving
//!   cancels nothing while others read. [`StreamDedupLayer`] puts it around any streaming
//!   service.
//!
//! # Design
//!
//! The anchors get the hard cases wrong. Go's `x/sync/singleflight` hung or deadlocked
//! waiters when the function panicked (golang/go #33519, #41133) and has no
//! cancellation. `async_singleflight` re-elects a leader when the leader is dropped,
//! which once promoted several followers at once (its #12) and left followers with no
//! error (`Err(None)`, its #8); a re-elected leader also *restarts* the work.
//!
//! Here the work is a shared future stored in the in-flight entry, and whichever waiter
//! is polled drives it. Dropping the leader therefore neither loses nor restarts the
//! work: the next waiter continues the *same* execution, and there is only ever one
//! execution per key, so there is nothing to elect. When every waiter is gone the work
//! is dropped and the key released, so nothing leaks and a later call starts afresh.
//! Nothing is spawned: the work needs no runtime handle and is cancelled, not orphaned,
//! when nobody wants it. Panics are caught and delivered to every waiter as
//! [`DedupError::Panicked`]; errors are cloned to every waiter as
//! [`DedupError::Inner`].
//!
//! # Example
//!
//! ```
//! use backstop_dedup::Group;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let group: Group<&'static str, String, String> = Group::new();
//! let backend_calls = Arc::new(AtomicUsize::new(0));
//! let agents = (0..100).map(|_| {
//!     let calls = backend_calls.clone();
//!     group.work("what is the capital of France?", move || async move {
//!         calls.fetch_add(1, Ordering::SeqCst);
//!         tokio::time::sleep(std::time::Duration::from_millis(10)).await; // the model thinks
//!         Ok("Paris".to_string())
//!     })
//! });
//! let answers = futures::future::join_all(agents).await;
//! assert!(answers.iter().all(|a| a.as_ref().unwrap().value == "Paris"));
//! assert_eq!(backend_calls.load(Ordering::SeqCst), 1);
//! # }
//! ```

#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod config;
#[cfg(feature = "redis")]
mod distributed;
mod error;
mod flight;
mod group;
mod layer;
mod outcome;
mod stats;
mod stream;
mod wakers;
mod window;

pub use config::{DedupWindowConfig, DedupWindowConfigBuilder, MAX_WINDOW_ENTRIES};
#[cfg(feature = "redis")]
pub use distributed::{DistributedConfig, DistributedGroup, DistributedStats, RedisFailure};
pub use error::DedupError;
pub use group::Group;
pub use layer::{Coalesce, DedupKey, DedupLayer, DedupService, RequestKey};
pub use outcome::{DedupOutcome, Source};
pub use stats::{GroupStats, WindowStats};
pub use stream::config::{
    LagPolicy, MAX_SHARED_STREAMS, MAX_STREAM_BUFFER_BYTES, StreamShareConfig,
};
pub use stream::group::{StreamGroup, StreamGroupBuilder};
pub use stream::layer::{StreamDedupLayer, StreamDedupService};
pub use stream::shared::SharedStream;
pub use stream::stats::StreamGroupStats;
pub use window::DedupWindow;
