//! The simulated LLM provider: a batch completion API and a streaming one, with a latency
//! distribution that grows once more prompts are in generation than it has capacity for,
//! per-token cost, transient errors, a scripted outage and its own rate limit.

use backstop::core::{Error, RetryHint};
use backstop::limit::{Quota, RateLimiter};
use backstop::pool::{Manager, Metrics, RecycleResult};
use futures::StreamExt;
use futures::stream::BoxStream;
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
    /// Prompt and completion tokens.
    pub(crate) tokens: u64,
    pub(crate) completion_tokens: u64,
    /// The model that answered, as the cost table prices it.
    pub(crate) model: String,
}

/// The primary provider's model, and the price every estimate is reserved at.
pub(crate) const PRIMARY_MODEL: &str = "gpt-4o";
/// The fallback provider's model.
pub(crate) const FALLBACK_MODEL: &str = "gpt-4o-mini";

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProviderError {
    /// The provider's own 429, with its `Retry-After` when it sent one.
    #[error("provider rate limit exceeded (429)")]
    RateLimited { retry_after: Option<Duration> },
    #[error("provider returned a transient error (500)")]
    Transient,
    #[error("provider is down (503)")]
    Outage,
    #[error("no connection to the provider: {0}")]
    Connection(String),
}

/// What the provider's error says about another attempt, as its status and `Retry-After`
/// would: the retry and routing classifiers read it.
impl RetryHint for ProviderError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    fn is_rate_limited(&self) -> bool {
        matches!(self, Self::RateLimited { .. })
    }
}

/// One piece of a streamed answer, as stored in the stream cache's tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub(crate) text: String,
    /// Completion tokens in this chunk.
    pub(crate) tokens: u64,
}

/// A streamed answer: chunks, or the error that cut it.
pub(crate) type ChunkStream = BoxStream<'static, Result<Chunk, Error<ProviderError>>>;

/// Chunks per streamed answer.
pub(crate) const CHUNKS: usize = 8;

/// US dollars per 1,000 tokens, prompt and completion alike (a mid-size model's price).
pub(crate) const DOLLARS_PER_1K_TOKENS: f64 = 0.002;

pub(crate) struct Provider {
    /// The name targets in `[route]` give as their `provider`.
    pub(crate) name: &'static str,
    /// The model it serves.
    pub(crate) model: &'static str,
    started: Instant,
    outage: Option<(Duration, Duration)>,
    /// Its latency relative to the primary's.
    slowdown: f64,
    /// Prompts it generates at full speed at once; past that, each takes longer in
    /// proportion (its own queueing).
    capacity: u64,
    /// Prompts in generation now.
    active: AtomicU64,
    own_limit: RateLimiter,
    pub(crate) calls: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) tokens: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl Provider {
    /// The primary: down between 45 % and 60 % of `run`, answers at most 80 calls a
    /// second (burst 40) before it starts returning 429, and generates 48 prompts at once
    /// at full speed.
    pub(crate) fn new(run: Duration) -> Arc<Self> {
        Self::build(
            ("primary", PRIMARY_MODEL),
            Some((run.mul_f64(0.45), run.mul_f64(0.60))),
            (1.0, 48),
            (80, 40),
        )
    }

    /// The fallback: never down, but half again as slow and with less headroom.
    pub(crate) fn fallback() -> Arc<Self> {
        Self::build(("fallback", FALLBACK_MODEL), None, (1.5, 24), (50, 25))
    }

    fn build(
        (name, model): (&'static str, &'static str),
        outage: Option<(Duration, Duration)>,
        (slowdown, capacity): (f64, u64),
        (calls_per_second, burst): (u64, u64),
    ) -> Arc<Self> {
        let quota = Quota::per_second(calls_per_second)
            .and_then(|quota| quota.with_burst(burst))
            .expect("a positive quota");
        Arc::new(Self {
            name,
            model,
            started: Instant::now(),
            outage,
            slowdown,
            capacity,
            active: AtomicU64::new(0),
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

    /// How much slower than unloaded it is with `extra` more prompts in generation.
    fn congestion(&self, extra: u64) -> f64 {
        let active = self.active.load(Ordering::Relaxed) + extra;
        (active as f64 / self.capacity as f64).max(1.0) * self.slowdown
    }

    /// Admission by its own rate limit.
    fn admit(&self) -> Result<(), ProviderError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = self.own_limit.check() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            // A real provider's 429 says when to come back; the simulated one says when
            // its own limiter will admit again.
            return Err(ProviderError::RateLimited {
                retry_after: refused.retry_after,
            });
        }
        Ok(())
    }

    /// The outage, then 1 % transient errors: what an opened call may fail with.
    fn failure(&self, since_start: Duration) -> Option<ProviderError> {
        if self
            .outage
            .is_some_and(|(from, to)| since_start >= from && since_start < to)
        {
            return Some(ProviderError::Outage);
        }
        (fastrand::f64() < 0.01).then_some(ProviderError::Transient)
    }

    /// One batch completion over a pooled connection.
    pub(crate) async fn complete(
        self: &Arc<Self>,
        batch: Vec<Ask>,
    ) -> Result<Vec<Answer>, ProviderError> {
        self.admit()?;
        let elapsed = self.started.elapsed();
        let longest = batch.iter().map(|ask| ask.max_tokens).max().unwrap_or(0);
        let items = batch.len() as u64;
        let slowdown = self.congestion(items);
        let _active = Generating::enter(self, items);
        tokio::time::sleep(latency(longest, batch.len()).mul_f64(slowdown)).await;
        if let Some(error) = self.failure(elapsed) {
            return Err(error);
        }
        self.items.fetch_add(items, Ordering::Relaxed);
        Ok(batch
            .into_iter()
            .map(|ask| {
                let completion = ask.max_tokens / 2 + fastrand::u64(0..=ask.max_tokens / 2);
                let tokens = ask.prompt_tokens + completion;
                self.tokens.fetch_add(tokens, Ordering::Relaxed);
                Answer {
                    text: format!("[{completion} tokens] answer to: {}", ask.prompt),
                    tokens,
                    completion_tokens: completion,
                    model: self.model.to_string(),
                }
            })
            .collect())
    }

    /// One streamed completion: the stream opens with its first token (or the error that
    /// kept it from opening), then the rest come in [`CHUNKS`] chunks, one generation
    /// step apart; one stream in 200 is cut by a transient error midway.
    pub(crate) async fn stream(self: &Arc<Self>, ask: &Ask) -> Result<ChunkStream, ProviderError> {
        self.admit()?;
        let elapsed = self.started.elapsed();
        let slowdown = self.congestion(1);
        let active = Generating::enter(self, 1);
        tokio::time::sleep(Duration::from_secs_f64(first_token_ms() * slowdown / 1e3)).await;
        if let Some(error) = self.failure(elapsed) {
            return Err(error);
        }
        let completion = ask.max_tokens / 2 + fastrand::u64(0..=ask.max_tokens / 2);
        let usage = ask.prompt_tokens + completion;
        let step =
            Duration::from_secs_f64(generation_ms(completion) * slowdown / 1e3 / CHUNKS as f64);
        let cut_at = (fastrand::f64() < 0.005).then(|| fastrand::usize(1..CHUNKS));
        let per_chunk = completion / CHUNKS as u64;
        // Generation ends when the stream does, however it ends.
        let active = Arc::new(active);
        let chunks = futures::stream::iter(0..CHUNKS).then(move |i| {
            let active = active.clone();
            async move {
                if i > 0 {
                    tokio::time::sleep(step).await;
                }
                if cut_at == Some(i) {
                    return Err(Error::Inner(ProviderError::Transient));
                }
                let tokens = if i + 1 == CHUNKS {
                    completion - per_chunk * (CHUNKS as u64 - 1)
                } else {
                    per_chunk
                };
                if i + 1 == CHUNKS {
                    active.provider.items.fetch_add(1, Ordering::Relaxed);
                    active.provider.tokens.fetch_add(usage, Ordering::Relaxed);
                }
                Ok(Chunk {
                    text: format!("[{tokens} tokens] "),
                    tokens,
                })
            }
        });
        // A stream ends at its first error, as a provider's would.
        let mut failed = false;
        Ok(chunks
            .take_while(move |item| {
                let go = !failed;
                failed |= item.is_err();
                std::future::ready(go)
            })
            .boxed())
    }
}

/// Prompts in generation, counted while this lives.
struct Generating {
    provider: Arc<Provider>,
    items: u64,
}

impl Generating {
    fn enter(provider: &Arc<Provider>, items: u64) -> Self {
        provider.active.fetch_add(items, Ordering::Relaxed);
        Self {
            provider: provider.clone(),
            items,
        }
    }
}

impl Drop for Generating {
    fn drop(&mut self) {
        self.provider
            .active
            .fetch_sub(self.items, Ordering::Relaxed);
    }
}

/// Log-normal-ish time to the first token.
fn first_token_ms() -> f64 {
    let normal: f64 = (0..6).map(|_| fastrand::f64()).sum::<f64>() - 3.0;
    35.0 * (0.5 * normal).exp()
}

fn generation_ms(completion: u64) -> f64 {
    completion as f64 * 0.05
}

/// Time to first token plus generation time for the longest completion; batching adds a
/// little per item, far less than a call each.
fn latency(longest_completion: u64, items: usize) -> Duration {
    let per_item_ms = 1.5 * items as f64;
    Duration::from_secs_f64(
        (first_token_ms() + generation_ms(longest_completion) + per_item_ms) / 1e3,
    )
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
            id: 0,
            user: "user-0".into(),
            prompt: prompt.into(),
            prompt_tokens: 50,
            max_tokens: 200,
            priority: crate::fleet::Priority::Critical,
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
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let provider = provider.clone();
                tokio::spawn(async move { provider.complete(vec![ask("y")]).await })
            })
            .collect();
        let mut limited = 0;
        for call in calls {
            limited += u64::from(matches!(
                call.await.unwrap(),
                Err(ProviderError::RateLimited { .. })
            ));
        }
        assert!(limited >= 50, "burst 40 admits at most ~41 of 100 at once");
        assert_eq!(provider.refused.load(Ordering::Relaxed), limited);
        assert_eq!(provider.calls.load(Ordering::Relaxed), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_opens_with_its_first_token_and_counts_its_usage_at_the_end() {
        let provider = Provider::new(Duration::from_secs(100));
        let mut streamed = 0;
        for _ in 0..5 {
            let Ok(stream) = provider.stream(&ask("s")).await else {
                continue;
            };
            let chunks: Vec<_> = stream.collect().await;
            if chunks.iter().all(Result::is_ok) {
                assert_eq!(chunks.len(), CHUNKS);
                let completion: u64 = chunks.iter().map(|c| c.as_ref().unwrap().tokens).sum();
                assert!((100..=200).contains(&completion), "{completion}");
                streamed += 1;
            } else {
                assert!(
                    chunks.last().unwrap().is_err(),
                    "a cut stream ends at its error"
                );
            }
        }
        assert!(streamed >= 3);
        assert_eq!(provider.items.load(Ordering::Relaxed), streamed);
        assert_eq!(
            provider.active.load(Ordering::Relaxed),
            0,
            "generation ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn past_its_capacity_the_provider_slows_down() {
        let provider = Provider::new(Duration::from_secs(100));
        assert_eq!(provider.congestion(1), 1.0);
        let _busy = Generating::enter(&provider, 96);
        assert!((provider.congestion(0) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn latency_grows_with_completion_length() {
        let short: Duration = (0..200).map(|_| latency(10, 1)).sum();
        let long: Duration = (0..200).map(|_| latency(2000, 1)).sum();
        assert!(long > short + Duration::from_millis(200 * 80));
    }
}
