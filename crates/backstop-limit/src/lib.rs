//! Rate limiting for Backstop.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bulkhead;
mod error;
mod gcra;
mod keyed;
mod layer;
mod quota;
mod wait;

pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadError, BulkheadPermit, BulkheadStats};
pub use error::{CheckError, Rejected, WaitError};
pub use gcra::{LimiterStats, RateLimiter};
pub use keyed::{KeyedRateLimiter, KeyedStats};
pub use layer::{
    BulkheadLayer, BulkheadService, BulkheadServiceError, RateLimit, RateLimitError, RateLimitLayer,
};
pub use quota::{Quota, QuotaConfig};
pub use wait::{TokioClock, WaitPolicy};
