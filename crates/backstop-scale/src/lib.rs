//! Autoscaling decisions for Backstop (work in progress).
//!
//! This crate will hold pure decision logic: HPA-style target tracking with stabilization
//! and rate policies, threshold steps, queue-based scaling, predictive scaling from a
//! forecast, and a simulator to compare policies on a trace.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
