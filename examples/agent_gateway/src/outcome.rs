//! What happened to each request, and the counters every agent writes into.

use backstop::core::{Error, Histogram, RejectKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::fleet::Priority;
use crate::provider::{Answer, ProviderError};
use crate::streaming::Role;

/// What a caller would turn into an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    RateLimited,
    Shed,
    ProviderFailed,
    Overloaded,
    OverLimit,
    TimedOut,
}

pub(crate) const OUTCOMES: [Outcome; 7] = [
    Outcome::Ok,
    Outcome::RateLimited,
    Outcome::Shed,
    Outcome::ProviderFailed,
    Outcome::Overloaded,
    Outcome::OverLimit,
    Outcome::TimedOut,
];

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "200 ok",
            Outcome::RateLimited => "429 rate limited (user quota or token budget)",
            Outcome::Shed => "503 shed while the circuit was open",
            Outcome::ProviderFailed => "502 provider error",
            Outcome::Overloaded => "503 queue full or no provider available",
            Outcome::OverLimit => "503 over the adaptive limit (lowest class first)",
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
            Outcome::ProviderFailed | Outcome::Shed | Outcome::OverLimit | Outcome::TimedOut
        )
    }

    fn index(self) -> usize {
        OUTCOMES.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// The one error of the whole stack, whatever the order of its layers.
pub(crate) type GatewayError = Error<ProviderError>;
pub(crate) type GatewayResult<T = Answer> = Result<T, GatewayError>;

/// One `match` from the stack's error to a status: a refusal says which primitive refused,
/// anything else is the provider's (possibly shared by a dedup or batch) failure.
pub(crate) fn classify<T>(result: &GatewayResult<T>) -> Outcome {
    let Err(error) = result else {
        return Outcome::Ok;
    };
    let Some(refused) = error.rejection() else {
        return Outcome::ProviderFailed;
    };
    match refused.kind {
        RejectKind::RateLimited { .. } | RejectKind::TooLarge { .. } | RejectKind::TooManyKeys => {
            Outcome::RateLimited
        }
        RejectKind::CircuitOpen => Outcome::Shed,
        RejectKind::ConcurrencyLimited | RejectKind::Shed => Outcome::OverLimit,
        RejectKind::Timeout | RejectKind::DeadlineExceeded => Outcome::TimedOut,
        _ => Outcome::Overloaded,
    }
}

/// Requests of one priority class, and how many succeeded.
#[derive(Default)]
pub(crate) struct ClassTally {
    pub(crate) requests: AtomicU64,
    pub(crate) ok: AtomicU64,
    /// Latency of its successful requests.
    pub(crate) latency: Histogram,
}

/// Counters every agent writes into.
#[derive(Default)]
pub(crate) struct Tally {
    outcomes: [AtomicU64; OUTCOMES.len()],
    /// Per priority class, as `Priority::index` orders them.
    pub(crate) classes: [ClassTally; 2],
    /// Time to the first token of streamed answers, by how the stream was served.
    pub(crate) first_token: [Histogram; 3],
    /// Latency of successful requests from their actual send, for the live progress line
    /// (the summary's figures are backstop-load's, from the scheduled send).
    pub(crate) latency: Histogram,
    /// Tokens the requests would have cost had each gone to the provider.
    pub(crate) tokens_without_backstop: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Tally {
    pub(crate) fn record(&self, priority: Priority, outcome: Outcome, took: Duration) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let class = &self.classes[priority.index()];
        class.requests.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Ok {
            self.latency.record(took);
            class.ok.fetch_add(1, Ordering::Relaxed);
            class.latency.record(took);
        }
    }

    pub(crate) fn record_first_token(&self, role: Role, took: Duration) {
        self.first_token[role.index()].record(took);
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
    use backstop::core::Rejected;
    use std::sync::Arc;

    fn refused(kind: RejectKind) -> GatewayResult {
        Err(backstop::core::StackError::rejected(Rejected::new(kind)))
    }

    #[test]
    fn every_layer_error_maps_to_its_status() {
        let answer = Answer {
            text: "hi".into(),
            tokens: 3,
            completion_tokens: 2,
            model: "m".into(),
        };
        assert_eq!(classify(&Ok(answer)), Outcome::Ok);
        assert_eq!(
            classify(&refused(RejectKind::QueueFull)),
            Outcome::Overloaded
        );
        assert_eq!(classify(&refused(RejectKind::CircuitOpen)), Outcome::Shed);
        assert_eq!(classify(&refused(RejectKind::Shed)), Outcome::OverLimit);
        assert_eq!(
            classify(&refused(RejectKind::ConcurrencyLimited)),
            Outcome::OverLimit
        );
        assert_eq!(classify(&refused(RejectKind::Timeout)), Outcome::TimedOut);
        assert_eq!(
            classify(&refused(RejectKind::RateLimited { quota: 1 })),
            Outcome::RateLimited
        );
        assert_eq!(
            classify::<Answer>(&Err(Error::Inner(ProviderError::Outage))),
            Outcome::ProviderFailed
        );
        // A provider failure shared by every caller of one batch or dedup flight is still
        // the provider's, and a refusal shared the same way is still a refusal.
        let shared = |error: GatewayError| -> GatewayResult {
            Err(backstop::core::StackError::shared(Arc::new(error)))
        };
        assert_eq!(
            classify(&shared(Error::Inner(ProviderError::Transient))),
            Outcome::ProviderFailed
        );
        assert_eq!(
            classify(&shared(refused(RejectKind::CircuitOpen).unwrap_err())),
            Outcome::Shed
        );
    }

    #[test]
    fn the_tally_adds_up() {
        let tally = Tally::default();
        tally.record(Priority::Critical, Outcome::Ok, Duration::from_millis(20));
        tally.record(
            Priority::Background,
            Outcome::RateLimited,
            Duration::from_millis(1),
        );
        tally.record(
            Priority::Background,
            Outcome::Shed,
            Duration::from_millis(1),
        );
        tally.record(
            Priority::Background,
            Outcome::ProviderFailed,
            Duration::from_millis(1),
        );
        assert_eq!(tally.total(), 4);
        let critical = &tally.classes[Priority::Critical.index()];
        let background = &tally.classes[Priority::Background.index()];
        assert_eq!(critical.ok.load(Ordering::Relaxed), 1);
        assert_eq!(background.requests.load(Ordering::Relaxed), 3);
        assert_eq!(background.ok.load(Ordering::Relaxed), 0);
        assert_eq!(tally.errors(), 2, "429s are not errors");
        assert_eq!(
            tally.latency.snapshot().count(),
            1,
            "only successes are timed"
        );
        assert!(Outcome::Shed.is_retryable() && !Outcome::RateLimited.is_retryable());
    }
}
