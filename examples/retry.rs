//! A flaky LLM provider (429s with `Retry-After`, 5xx bursts, calls that stall), called
//! with and without `backstop-retry`, on simulated time.
//!
//! `cargo run --example retry` prints, for each run, the calls that succeeded, the
//! attempts made, the retries the budget refused and the latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backstop::core::{Error, Layer, RetryHint, Service, service_fn};
use backstop::retry::{HintedClassify, RetryConfig, RetryLayer};
use tokio::time::Instant;

/// The provider's errors, as its HTTP statuses would say them.
#[derive(Debug)]
enum ProviderError {
    /// 429, with the wait its `Retry-After` header asked for.
    TooManyRequests(Duration),
    /// 503.
    Unavailable,
}

/// What each error says about another attempt: the retry layer's [`HintedClassify`] waits
/// a 429's `Retry-After` and backs off after a 503.
impl RetryHint for ProviderError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::TooManyRequests(wait) => Some(*wait),
            Self::Unavailable => None,
        }
    }

    fn is_rate_limited(&self) -> bool {
        matches!(self, Self::TooManyRequests(_))
    }
}

const CALLS: usize = 2_000;

/// 10 % of calls get a 429 asking for a 500 ms wait, 10 % a 503, 3 % stall forever, the
/// rest answer in 50 to 150 ms.
fn provider(
    attempts: Arc<AtomicU64>,
) -> impl Service<u64, Response = String, Error = Error<ProviderError>> {
    let rng = std::sync::Mutex::new(fastrand::Rng::with_seed(3));
    service_fn(move |prompt: u64| {
        attempts.fetch_add(1, Ordering::Relaxed);
        let (roll, latency) = {
            let mut rng = rng.lock().expect("not poisoned");
            (rng.f64(), Duration::from_millis(rng.u64(50..150)))
        };
        async move {
            if roll < 0.10 {
                return Err(Error::Inner(ProviderError::TooManyRequests(
                    Duration::from_millis(500),
                )));
            }
            if roll < 0.20 {
                tokio::time::sleep(latency).await;
                return Err(Error::Inner(ProviderError::Unavailable));
            }
            if roll < 0.23 {
                futures::future::pending::<()>().await;
            }
            tokio::time::sleep(latency).await;
            Ok(format!("answer {prompt}"))
        }
    })
}

/// Calls `service` `CALLS` times, 50 at a time, each call cut at 10 s by the caller.
async fn run<S>(name: &str, service: S, attempts: &AtomicU64)
where
    S: Service<u64, Response = String, Error = Error<ProviderError>>,
{
    use futures::StreamExt;
    let service = &service;
    let mut results: Vec<(bool, Duration)> = futures::stream::iter(0..CALLS as u64)
        .map(|n| async move {
            let started = Instant::now();
            let ok = tokio::time::timeout(Duration::from_secs(10), service.call(n))
                .await
                .is_ok_and(|r| r.is_ok());
            (ok, started.elapsed())
        })
        .buffer_unordered(50)
        .collect()
        .await;
    results.sort_by_key(|(_, latency)| *latency);
    let ok = results.iter().filter(|(ok, _)| *ok).count();
    let at = |q: f64| results[((results.len() as f64 * q).ceil() as usize).max(1) - 1].1;
    println!(
        "{name:>13}: {ok}/{CALLS} succeeded, {} attempts, p50 {:?}, p99 {:?}",
        attempts.load(Ordering::Relaxed),
        at(0.50),
        at(0.99),
    );
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let attempts = Arc::new(AtomicU64::new(0));
    run("without retry", provider(attempts.clone()), &attempts).await;

    let attempts = Arc::new(AtomicU64::new(0));
    let retry = RetryConfig {
        max_attempts: 4,
        timeout: Some(Duration::from_secs(8)), // one deadline over every attempt
        attempt_timeout: Some(Duration::from_secs(1)), // a stalled call is abandoned
        ..RetryConfig::default()
    }
    .build()
    .expect("valid config");
    let stack = RetryLayer::new(retry.clone())
        .classify(HintedClassify)
        .layer(provider(attempts.clone()));
    run("with retry", stack, &attempts).await;
    let stats = retry.stats();
    println!(
        "retry stats: {} retries, {} budget refusals, {} deadline exhaustions",
        stats.retries, stats.budget_refusals, stats.deadline_exhaustions
    );
}
