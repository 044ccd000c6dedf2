//! Request deduplication for Backstop (work in progress).
//!
//! This crate will hold a singleflight `Group` that runs identical concurrent requests
//! once and shares the result (safe under cancellation and panics), and a `DedupWindow`
//! that remembers completed results by idempotency key for a bounded time.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
