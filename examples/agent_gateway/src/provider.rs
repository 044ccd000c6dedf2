//! The simulated LLM provider: a batch completion API with a latency distribution,
//! per-token cost, transient errors, a scripted outage and its own rate limit.

use backstop::limit::{Quota, RateLimiter};
use backstop::pool::{Manager, Metrics, RecycleResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
// Tokio's clock, so a test with paused time can walk into the scripted outage.
use tokio::time::Instant;

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
    /// The name targets in `[route]` give as their `provider`.
    pub(crate) name: &'static str,
    started: Instant,
    outage: Option<(Duration, Duration)>,
    /// Its latency relative to the primary's.
    slowdown: f64,
    own_limit: RateLimiter,
    pub(crate) calls: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) tokens: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl Provider {
    /// The primary: down between 45 % and 60 % of `run`, and answers at most 25 batch
    /// calls a second (burst 15) before it starts returning 429.
    pub(crate) fn new(run: Duration) -> Arc<Self> {
        Self::build(
            "primary",
            Some((run.mul_f64(0.45), run.mul_f64(0.60))),
            1.0,
            25,
        )
    }

    /// The fallback: never down, but half again as slow and with less headroom.
    pub(crate) fn fallback() -> Arc<Self> {
        Self::build("fallback", None, 1.5, 15)
    }

    fn build(
        name: &'static str,
        outage: Option<(Duration, Duration)>,
        slowdown: f64,
        calls_per_second: u64,
    ) -> Arc<Self> {
        let quota = Quota::per_second(calls_per_second)
            .and_then(|quota| quota.with_burst(15))
            .expect("a positive quota");
        Arc::new(Self {
            name,
            started: Instant::now(),
            outage,
            slowdown,
            own_limit: RateLimiter::new(quota),
            calls: AtomicU64::new(0),
            items: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// When the provider is down, if it ever is.
    pub(crate) fn outage_window(&self) -> Option<(Duration, Duration)> {
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
        tokio::time::sleep(latency(longest, batch.len()).mul_f64(self.slowdown)).await;
        if self
            .outage
            .is_some_and(|(from, to)| elapsed >= from && elapsed < to)
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(prompt: &str) -> Ask {
        Ask {
            user: "user-0".into(),
            prompt: prompt.into(),
            prompt_tokens: 50,
            max_tokens: 200,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_every_prompt_of_a_batch_and_counts_tokens() {
        let provider = Provider::new(Duration::from_secs(100));
        let mut answered = 0;
        for _ in 0..5 {
            if let Ok(answers) = provider.complete(vec![ask("a"), ask("b")]).await {
                assert_eq!(answers.len(), 2);
                assert!(answers.iter().all(|a| (150..=250).contains(&a.tokens)));
                answered += 2;
            }
        }
        assert!(answered >= 6, "1 % transient errors cannot fail most calls");
        assert_eq!(provider.items.load(Ordering::Relaxed), answered);
        let tokens = provider.tokens.load(Ordering::Relaxed);
        assert!((150 * answered..=250 * answered).contains(&tokens));
    }

    #[tokio::test(start_paused = true)]
    async fn fails_during_the_scripted_outage_only() {
        let provider = Provider::new(Duration::from_secs(10));
        assert_eq!(
            provider.outage_window().unwrap(),
            (Duration::from_millis(4500), Duration::from_secs(6))
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        for _ in 0..3 {
            assert!(matches!(
                provider.complete(vec![ask("x")]).await,
                Err(ProviderError::Outage)
            ));
        }
    }

    #[tokio::test]
    async fn enforces_its_own_rate_limit_with_429s() {
        let provider = Provider::new(Duration::from_secs(100));
        // Latency is simulated with tokio sleeps; spawn the calls so they overlap and
        // reach the limiter within its burst's time.
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let provider = provider.clone();
                tokio::spawn(async move { provider.complete(vec![ask("y")]).await })
            })
            .collect();
        let mut limited = 0;
        for call in calls {
            limited += u64::from(matches!(
                call.await.unwrap(),
                Err(ProviderError::RateLimited)
            ));
        }
        assert!(limited >= 10, "burst 15 admits at most ~16 of 40 at once");
        assert_eq!(provider.refused.load(Ordering::Relaxed), limited);
        assert_eq!(provider.calls.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn latency_grows_with_completion_length() {
        let short: Duration = (0..200).map(|_| latency(10, 1)).sum();
        let long: Duration = (0..200).map(|_| latency(2000, 1)).sum();
        assert!(long > short + Duration::from_millis(200 * 80));
    }
}
