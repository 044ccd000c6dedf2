//! Rate limiting for Backstop.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod gcra;
mod keyed;
mod quota;
mod wait;

pub use error::{CheckError, Rejected, WaitError};
pub use gcra::{LimiterStats, RateLimiter};
pub use keyed::{KeyedRateLimiter, KeyedStats};
pub use quota::{Quota, QuotaConfig};
pub use wait::{TokioClock, WaitPolicy};
