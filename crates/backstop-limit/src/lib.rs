//! Rate limiting for Backstop.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod gcra;
mod quota;

pub use error::{CheckError, Rejected, WaitError};
pub use gcra::{LimiterStats, RateLimiter};
pub use quota::{Quota, QuotaConfig};
