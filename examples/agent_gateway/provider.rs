//! The simulated LLM provider: a batch completion API with a latency distribution,
//! per-token cost, transient errors, a scripted outage and its own rate limit.

use backstop::limit::{Quota, RateLimiter};
use backstop::pool::{Manager, Metrics, RecycleResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fleet::Ask;

/// The answer to one prompt, as cached in every tier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) text: String,
    pub(crate) tokens: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProviderError {
    #[error("provider rate limit exceeded (429)")]
    RateLimited,
    #[error("provider returned a transient error (500)")]
    Transient,
    #[error("provider is down (503)")]
    Outage,
    #[error("no connection to the provider: {0}")]
    Connection(String),
}

/// US dollars per 1,000 tokens, prompt and completion alike (a mid-size model's price).
pub(crate) const DOLLARS_PER_1K_TOKENS: f64 = 0.002;

pub(crate) struct Provider {
    started: Instant,
    outage: (Duration, Duration),
    own_limit: RateLimiter,
    pub(crate) calls: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) tokens: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl Provider {
    /// A provider that is down between 45 % and 60 % of `run`, and answers at most
    /// 25 batch calls a second (burst 15) before it starts returning 429.
    pub(crate) fn new(run: Duration) -> Arc<Self> {
        let quota = Quota::per_second(25)
            .and_then(|quota| quota.with_burst(15))
            .expect("a positive quota");
        Arc::new(Self {
            started: Instant::now(),
            outage: (run.mul_f64(0.45), run.mul_f64(0.60)),
            own_limit: RateLimiter::new(quota),
            calls: AtomicU64::new(0),
            items: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    pub(crate) fn outage_window(&self) -> (Duration, Duration) {
        self.outage
    }

    /// One batch completion over a pooled connection.
    pub(crate) async fn complete(&self, batch: Vec<Ask>) -> Result<Vec<Answer>, ProviderError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.own_limit.check().is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ProviderError::RateLimited);
        }
        let elapsed = self.started.elapsed();
        let longest = batch.iter().map(|ask| ask.max_tokens).max().unwrap_or(0);
        tokio::time::sleep(latency(longest, batch.len())).await;
        if elapsed >= self.outage.0 && elapsed < self.outage.1 {
            return Err(ProviderError::Outage);
        }
        if fastrand::f64() < 0.01 {
            return Err(ProviderError::Transient);
        }
        self.items.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(batch
            .into_iter()
            .map(|ask| {
                let completion = ask.max_tokens / 2 + fastrand::u64(0..=ask.max_tokens / 2);
                let tokens = ask.prompt_tokens + completion;
                self.tokens.fetch_add(tokens, Ordering::Relaxed);
                Answer {
                    text: format!("[{completion} tokens] answer to: {}", ask.prompt),
                    tokens,
                }
            })
            .collect())
    }
}

/// Log-normal-ish time to first token plus generation time for the longest completion;
/// batching adds a little per item, far less than a call each.
fn latency(longest_completion: u64, items: usize) -> Duration {
    let normal: f64 = (0..6).map(|_| fastrand::f64()).sum::<f64>() - 3.0;
    let first_token_ms = 35.0 * (0.5 * normal).exp();
    let generation_ms = longest_completion as f64 * 0.05;
    let per_item_ms = 1.5 * items as f64;
    Duration::from_secs_f64((first_token_ms + generation_ms + per_item_ms) / 1e3)
}

/// Connections to the provider: a TLS handshake's worth of setup each.
pub(crate) struct Connections {
    pub(crate) opened: Arc<AtomicU64>,
}

impl Manager for Connections {
    type Type = u64;
    type Error = ProviderError;

    async fn create(&self) -> Result<u64, ProviderError> {
        tokio::time::sleep(Duration::from_millis(15)).await;
        Ok(self.opened.fetch_add(1, Ordering::Relaxed))
    }

    async fn recycle(&self, _: &mut u64, _: &Metrics) -> RecycleResult<ProviderError> {
        Ok(())
    }
}
