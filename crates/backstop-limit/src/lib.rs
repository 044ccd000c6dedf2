//! Rate limiting for Backstop (work in progress).
//!
//! This crate will hold GCRA and sliding-window limiters, keyed per user, tenant or model
//! with bounded memory; weighted checks for LLM token budgets; several quotas at once;
//! async waiting; a Redis-backed distributed mode; and a concurrency limiter (bulkhead).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
