//! Connection pooling for Backstop (work in progress).
//!
//! This crate will hold a pool built on deadpool's managed pool, adding min idle, idle
//! timeout and max lifetime, health checks, leak detection, wait-time metrics and
//! adaptive sizing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
