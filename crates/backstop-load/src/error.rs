//! Why a load test could not run.

use backstop_core::{ConfigError, Panicked};

use crate::trace::TraceParseError;

/// Why a load test could not run or a report could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadTestError {
    /// The plan broke a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A trace file could not be read.
    #[error(transparent)]
    Trace(#[from] TraceParseError),
    /// The closure building requests panicked; the run stopped.
    #[error("the request builder panicked: {0}")]
    RequestPanicked(Panicked),
    /// A saved report (baseline) is not valid JSON of a [`LoadReport`](crate::LoadReport).
    #[error("baseline is not a load report: {0}")]
    Baseline(String),
}
