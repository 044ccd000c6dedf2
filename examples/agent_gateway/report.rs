//! What happened to each request, the live progress line and the final summary.

use backstop::breaker::BreakerError;
use backstop::cache::{LoadError, TieredStats};
use backstop::config::SloSection;
use backstop::core::{Histogram, HistogramSnapshot};
use backstop::dedup::DedupError;
use backstop::limit::RateLimitError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::provider::{Answer, ProviderError};

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

    pub(crate) fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::RateLimited)
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
        DedupError::Timeout { .. } => return Outcome::TimedOut,
        _ => return Outcome::ProviderFailed,
    };
    let inner = match load {
        LoadError::Loader(inner) => inner,
        LoadError::Timeout(_) => return Outcome::TimedOut,
        LoadError::Panicked(_) => return Outcome::ProviderFailed,
    };
    use backstop::batch::BatchError;
    match inner.downcast_ref::<BreakerError<BatchError>>() {
        Some(BreakerError::Rejected(_)) => Outcome::Shed,
        Some(BreakerError::Inner(BatchError::QueueFull)) => Outcome::Overloaded,
        Some(BreakerError::Inner(BatchError::QueueTimeout { .. })) => Outcome::TimedOut,
        Some(BreakerError::Inner(BatchError::Handler(error)))
            if error.downcast_ref::<ProviderError>().is_some() =>
        {
            Outcome::ProviderFailed
        }
        _ => Outcome::ProviderFailed,
    }
}

/// Counters every agent writes into.
#[derive(Default)]
pub(crate) struct Tally {
    outcomes: [AtomicU64; OUTCOMES.len()],
    pub(crate) latency: Histogram,
    /// Tokens the requests would have cost had each gone to the provider.
    pub(crate) tokens_without_backstop: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Tally {
    pub(crate) fn record(&self, outcome: Outcome, took: Duration) {
        let index = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Ok {
            self.latency.record(took);
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) -> u64 {
        let index = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[index].load(Ordering::Relaxed)
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

/// Fraction of cache lookups answered by each tier, and by any.
pub(crate) fn hit_rates(stats: &TieredStats) -> (Vec<(String, f64)>, f64) {
    let hits: u64 = stats.hits_by_tier.iter().sum();
    let lookups = (hits + stats.misses).max(1) as f64;
    let per_tier = stats
        .tiers
        .iter()
        .zip(&stats.hits_by_tier)
        .map(|((name, _), tier_hits)| (name.clone(), *tier_hits as f64 / lookups))
        .collect();
    (per_tier, hits as f64 / lookups)
}

/// `None` prints as a dash: no successful request in the interval.
pub(crate) fn ms_or_dash(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_string(), ms)
}

pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1e3)
}

pub(crate) fn percent(fraction: f64) -> String {
    format!("{:.1} %", fraction * 100.0)
}

/// Latency of successful requests completed since `previous`.
pub(crate) fn p95_since(
    tally: &Tally,
    previous: &HistogramSnapshot,
) -> (HistogramSnapshot, Option<Duration>) {
    let now = tally.latency.snapshot();
    let interval = now.since(previous);
    let p95 = (interval.count() > 0).then(|| interval.quantile(0.95));
    (now, p95)
}

/// One SLO check for the summary.
pub(crate) struct SloCheck {
    pub(crate) name: &'static str,
    pub(crate) target: String,
    pub(crate) actual: String,
    pub(crate) pass: bool,
}

/// Of the requests the limiter admitted, the fraction answered without a provider call:
/// from a cache tier, the dedup window, or by sharing another caller's in-flight call.
pub(crate) fn answered_without_provider(
    tally: &Tally,
    cache: &TieredStats,
    dedup: &backstop::dedup::WindowStats,
) -> f64 {
    let tier_hits: u64 = cache.hits_by_tier.iter().sum();
    let saved = tier_hits + dedup.window_hits + dedup.group.coalesced;
    let admitted = tally.total() - tally.count(Outcome::RateLimited);
    saved as f64 / admitted.max(1) as f64
}

pub(crate) fn check_slos(slo: &SloSection, tally: &Tally, hit_rate: f64) -> Vec<SloCheck> {
    let p95 = tally.latency.snapshot().quantile(0.95);
    let error_rate = tally.errors() as f64 / tally.total().max(1) as f64;
    vec![
        SloCheck {
            name: "p95 latency",
            target: format!("<= {}", ms(slo.p95_latency)),
            actual: ms(p95),
            pass: p95 <= slo.p95_latency,
        },
        SloCheck {
            name: "error rate",
            target: format!("<= {}", percent(slo.max_error_rate)),
            actual: percent(error_rate),
            pass: error_rate <= slo.max_error_rate,
        },
        SloCheck {
            name: "served from cache",
            target: format!(">= {}", percent(slo.min_cache_hit_rate)),
            actual: percent(hit_rate),
            pass: hit_rate >= slo.min_cache_hit_rate,
        },
    ]
}
