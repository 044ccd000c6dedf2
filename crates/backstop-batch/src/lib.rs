//! Request batching for Backstop (work in progress).
//!
//! This crate will hold a dynamic batcher that gathers single requests into batches by
//! size and delay, with priority levels, grouping of compatible requests by key, bounded
//! queues with backpressure, and per-item results.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
