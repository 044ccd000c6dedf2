//! Dynamic batching for async backends: single requests in, well-formed batches out.
//!
//! LLM, embedding and database endpoints are far cheaper per item in batches, but callers
//! arrive one at a time. A [`Batcher`] queues each caller's item, forms batches the way
//! Triton's dynamic batcher does for models, makes one [`BatchHandler`] call per batch and
//! hands every caller its own item's result.
//!
//! - **When**: a key's batch is dispatched as soon as it reaches `max_batch_size`, or a
//!   preferred size (`preferred_batch_sizes`), or when its oldest item has waited
//!   `max_delay`, so batching adds at most `max_delay` of latency when the backend keeps up.
//! - **What with what**: a key function groups compatible requests (same model,
//!   temperature bucket, max-tokens bucket); each key has its own queue and timer, and a
//!   batch never mixes keys.
//! - **Who first**: `priority_levels` levels, higher first, with aging
//!   (`priority_aging`) so low priority cannot starve.
//! - **Backpressure**: a bounded queue (`submit` waits for room, `try_submit` fails with
//!   [`BatchError::QueueFull`]), a per-item `queue_timeout`, and at most
//!   `max_concurrent_batches` batches in the handler so a slow backend is pipelined but not
//!   flooded.
//! - **Failures stay in their batch**: a handler error reaches every caller of that batch,
//!   a wrong result count is [`BatchError::ResultCount`], a panic is
//!   [`BatchError::HandlerPanicked`] — and the batcher keeps serving. A caller that gives
//!   up before dispatch is removed from the queue; after dispatch its result is discarded.
//! - **Adaptive mode** ([`AdaptiveBatchConfig`], optional): the effective batch size shrinks
//!   while handler calls exceed a latency target and grows back while full batches meet it.
//! - **Shutdown**: [`Batcher::close`] (or dropping the last handle) stops intake and
//!   flushes or fails what is queued ([`CloseMode`]); no caller is left waiting.
//! - **Observability**: [`Batcher::stats`] (batch sizes, queue wait p50/p95/p99, dispatch
//!   reasons, rejections) and [`LoadSignal`](backstop_core::LoadSignal) for the autoscaler.
//! - **Composition**: a `Batcher` is a [`Service`](backstop_core::Service) for single
//!   requests; [`BatchLayer`] wraps any batch service into one.
//!
//! ## Design
//!
//! Submitters push into per-key, per-priority FIFOs under one short mutex and await a
//! oneshot. The arrival that makes a batch ready (full or preferred size) dispatches it
//! on the spot; a dispatcher task owns the timers (`max_delay`, queue timeouts, aging) and
//! dispatches everything else. Both run the same planning step: pick the ready key whose
//! next item ranks highest, take its batch, spawn one task per batch (so handlers run in
//! parallel up to `max_concurrent_batches`). The queue bound is a semaphore whose room is
//! returned once per batch. Compared with the anchors:
//! `tower-batch-control` runs one worker whose inner-service error kills it and fails every
//! later caller, and it has no priorities or grouping; here a failed or panicking batch
//! fails only its own callers. Triton has priorities and queue policies but groups only by
//! model; no anchor groups compatible requests by key inside one batcher.
//!
//! ```
//! use backstop_batch::{BatchError, Batcher};
//! use std::time::Duration;
//!
//! #[derive(Debug)]
//! struct Prompt { model: &'static str, text: String, interactive: bool }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let batcher = Batcher::builder(|prompts: Vec<Prompt>| async move {
//!         // One call to the model for the whole batch; all prompts share a model.
//!         let model = prompts[0].model;
//!         Ok::<_, std::io::Error>(
//!             prompts.iter().map(|p| format!("{model}: {}", p.text)).collect::<Vec<_>>())
//!     })
//!     .max_batch_size(32)
//!     .max_delay(Duration::from_millis(5))
//!     .queue_capacity(1_000)
//!     .priority_levels(2)
//!     .key(|p: &Prompt| p.model)
//!     .priority(|p: &Prompt| usize::from(p.interactive))
//!     .build()
//!     .unwrap();
//!
//! let reply = batcher
//!     .submit(Prompt { model: "small", text: "hi".into(), interactive: true })
//!     .await
//!     .unwrap();
//! assert_eq!(reply, "small: hi");
//!
//! batcher.close();
//! let late = batcher.submit(Prompt { model: "small", text: "?".into(), interactive: false });
//! assert!(matches!(late.await, Err(BatchError::Closed)));
//! # }
//! ```

#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod adaptive;
mod batcher;
mod builder;
mod config;
mod dispatch;
mod error;
mod handler;
mod layer;
mod queue;
mod service;
mod shared;
mod stats;
mod submit;

pub use batcher::Batcher;
pub use builder::BatcherBuilder;
pub use config::{AdaptiveBatchConfig, BatchConfig, CloseMode, MAX_BATCH_SIZE};
pub use error::BatchError;
pub use handler::BatchHandler;
pub use layer::{BatchLayer, BatchService};
pub use queue::DispatchReason;
pub use stats::{BatchSizeSummary, BatchStats, DispatchCounts};
