//! Caching for Backstop (work in progress).
//!
//! This crate will hold a fast, scan-resistant concurrent in-memory cache with TTLs and
//! weight limits, a `Tier` trait, and a tiered cache (memory, Redis, persistent) with
//! promotion, stampede protection, stale-while-revalidate, invalidation, warming and stats.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
