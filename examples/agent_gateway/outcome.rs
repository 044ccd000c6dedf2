//! What happened to each request, and the counters every agent writes into.

use backstop::batch::BatchError;
use backstop::breaker::BreakerError;
use backstop::cache::LoadError;
use backstop::core::Histogram;
use backstop::dedup::DedupError;
use backstop::limit::RateLimitError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::provider::Answer;

/// What a caller would turn into an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    RateLimited,
    Shed,
    ProviderFailed,
    Overloaded,
    TimedOut,
}

pub(crate) const OUTCOMES: [Outcome; 6] = [
    Outcome::Ok,
    Outcome::RateLimited,
    Outcome::Shed,
    Outcome::ProviderFailed,
    Outcome::Overloaded,
    Outcome::TimedOut,
];

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "200 ok",
            Outcome::RateLimited => "429 rate limited (user quota or token budget)",
            Outcome::Shed => "503 shed while the circuit was open",
            Outcome::ProviderFailed => "502 provider error",
            Outcome::Overloaded => "503 queue full",
            Outcome::TimedOut => "504 timed out",
        }
    }

    /// A 429 is the gateway doing its job, not an error against the SLO.
    pub(crate) fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::RateLimited)
    }

    /// Whether an agent tries again: failures that may pass, not its own quota.
    pub(crate) fn is_retryable(self) -> bool {
        matches!(
            self,
            Outcome::ProviderFailed | Outcome::Shed | Outcome::TimedOut
        )
    }

    fn index(self) -> usize {
        OUTCOMES.iter().position(|o| *o == self).unwrap_or(0)
    }
}

pub(crate) type GatewayResult = Result<Answer, RateLimitError<DedupError<LoadError>>>;

/// Unwraps the layers' errors, outermost first: limiter, dedup, cache loader, breaker,
/// batcher, provider.
pub(crate) fn classify(result: &GatewayResult) -> Outcome {
    let dedup = match result {
        Ok(_) => return Outcome::Ok,
        Err(RateLimitError::Limited(_)) => return Outcome::RateLimited,
        Err(RateLimitError::Inner(error)) => error,
    };
    let load = match dedup {
        DedupError::Inner(load) => load,
        DedupError::Rejected(_) => return Outcome::TimedOut,
        _ => return Outcome::ProviderFailed,
    };
    let inner = match load {
        LoadError::Loader(inner) => inner,
        LoadError::Timeout(_) => return Outcome::TimedOut,
        LoadError::Panicked(_) => return Outcome::ProviderFailed,
    };
    match inner.downcast_ref::<BreakerError<BatchError>>() {
        Some(BreakerError::Rejected(_)) => Outcome::Shed,
        Some(BreakerError::Inner(BatchError::QueueFull)) => Outcome::Overloaded,
        Some(BreakerError::Inner(BatchError::QueueTimeout { .. })) => Outcome::TimedOut,
        _ => Outcome::ProviderFailed,
    }
}

/// Counters every agent writes into.
#[derive(Default)]
pub(crate) struct Tally {
    outcomes: [AtomicU64; OUTCOMES.len()],
    /// Latency of successful requests, as the agent saw it.
    pub(crate) latency: Histogram,
    /// Tokens the requests would have cost had each gone to the provider.
    pub(crate) tokens_without_backstop: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) plans: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Tally {
    pub(crate) fn record(&self, outcome: Outcome, took: Duration) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Ok {
            self.latency.record(took);
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn total(&self) -> u64 {
        OUTCOMES.iter().map(|o| self.count(*o)).sum()
    }

    pub(crate) fn errors(&self) -> u64 {
        OUTCOMES
            .iter()
            .filter(|o| o.is_error())
            .map(|o| self.count(*o))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop::breaker::Breaker;

    fn through_loader(error: BreakerError<BatchError>) -> GatewayResult {
        Err(RateLimitError::Inner(DedupError::Inner(LoadError::Loader(
            std::sync::Arc::new(error),
        ))))
    }

    #[test]
    fn every_layer_error_maps_to_its_status() {
        let answer = Answer {
            text: "hi".into(),
            tokens: 3,
        };
        assert_eq!(classify(&Ok(answer)), Outcome::Ok);
        assert_eq!(
            classify(&through_loader(BreakerError::Inner(BatchError::QueueFull))),
            Outcome::Overloaded
        );
        let open = Breaker::builder()
            .name("t")
            .count_window(2)
            .minimum_calls(1)
            .build()
            .unwrap();
        open.force_open();
        let rejected = open.try_acquire().map(|_| ()).unwrap_err();
        assert_eq!(
            classify(&through_loader(BreakerError::Rejected(rejected))),
            Outcome::Shed
        );
        assert_eq!(
            classify(&Err(RateLimitError::Inner(DedupError::Inner(
                LoadError::Timeout(Duration::from_secs(1))
            )))),
            Outcome::TimedOut
        );
    }

    #[test]
    fn the_tally_adds_up() {
        let tally = Tally::default();
        tally.record(Outcome::Ok, Duration::from_millis(20));
        tally.record(Outcome::RateLimited, Duration::from_millis(1));
        tally.record(Outcome::Shed, Duration::from_millis(1));
        tally.record(Outcome::ProviderFailed, Duration::from_millis(1));
        assert_eq!(tally.total(), 4);
        assert_eq!(tally.errors(), 2, "429s are not errors");
        assert_eq!(
            tally.latency.snapshot().count(),
            1,
            "only successes are timed"
        );
        assert!(Outcome::Shed.is_retryable() && !Outcome::RateLimited.is_retryable());
    }
}
