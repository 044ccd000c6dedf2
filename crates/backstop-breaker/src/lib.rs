//! Circuit breaking for Backstop (work in progress).
//!
//! This crate will hold a circuit breaker with count- and time-based sliding windows,
//! failure-rate and slow-call-rate thresholds, half-open probing with backoff, operator
//! states (forced open, disabled, metrics only), events, and a `BreakerLayer`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
