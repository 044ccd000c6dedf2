//! One upstream target's shared state: identity, breaker, budgets, latency estimate,
//! cooldown and counters.

use crate::config::TargetConfig;
use crate::ewma::PeakEwma;
use crate::reported::ReportedQuota;
use crate::stats::{TargetStats, target_counters::*};
use backstop_breaker::Breaker;
use backstop_core::{StripedCounters, TokioClock};
use backstop_limit::{Quota, RateLimiter};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Who a routed attempt goes to: the target's index and labels, cheap to clone (one
/// `Arc`). An attempt function or inner service dispatches on it.
#[derive(Clone)]
pub struct TargetInfo(Arc<TargetLabels>);

struct TargetLabels {
    index: usize,
    name: String,
    provider: String,
    model: String,
    key: String,
    region: String,
    group: u32,
    context_window: Option<u64>,
}

impl TargetInfo {
    /// The target's position in the config's `targets` (also its index in
    /// [`TargetServices`](crate::TargetServices)).
    pub fn index(&self) -> usize {
        self.0.index
    }

    /// The target's unique name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The provider label.
    pub fn provider(&self) -> &str {
        &self.0.provider
    }

    /// The model label.
    pub fn model(&self) -> &str {
        &self.0.model
    }

    /// The API key reference.
    pub fn key(&self) -> &str {
        &self.0.key
    }

    /// The region label.
    pub fn region(&self) -> &str {
        &self.0.region
    }

    /// The priority group.
    pub fn group(&self) -> u32 {
        self.0.group
    }

    /// The model's context window, when configured.
    pub fn context_window(&self) -> Option<u64> {
        self.0.context_window
    }
}

impl fmt::Debug for TargetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetInfo")
            .field("index", &self.0.index)
            .field("name", &self.0.name)
            .field("group", &self.0.group)
            .finish_non_exhaustive()
    }
}

/// Everything the router keeps about one target.
pub(crate) struct Target {
    pub(crate) info: TargetInfo,
    pub(crate) weight: f64,
    /// The name's hash, for rendezvous hashing of sticky keys.
    pub(crate) name_hash: u64,
    pub(crate) breaker: Breaker<TokioClock>,
    requests: Option<RateLimiter<TokioClock>>,
    tokens: Option<RateLimiter<TokioClock>>,
    pub(crate) ewma: PeakEwma,
    pub(crate) pending: AtomicU64,
    /// Nanoseconds since the router's origin until which the target cools down (0: never).
    cooling_until: AtomicU64,
    /// When the target last failed (0: never), for the least-recently-failed probe.
    pub(crate) last_failure: AtomicU64,
    consecutive: AtomicU32,
    /// What the provider last reported of its request (0) and token (1) quotas.
    pub(crate) reported: [ReportedQuota; 2],
    pub(crate) counters: StripedCounters<COUNTERS>,
}

/// The budgets' view of a request: room, and how much of the tightest budget is left.
pub(crate) enum Room {
    /// No budget configured.
    Unlimited,
    /// Room for this request; the fraction (0, 1] of the tightest budget left after it.
    Some(f64),
    /// Not enough left for this request now.
    None,
}

impl Target {
    pub(crate) fn new(
        index: usize,
        config: &TargetConfig,
        default_latency: Duration,
        decay: Duration,
        now: u64,
    ) -> Self {
        let limiter = |per_minute: Option<u64>| {
            per_minute
                .and_then(|rate| Quota::per_minute(rate).ok())
                .map(|quota| RateLimiter::with_clock(quota, TokioClock))
        };
        // Validated: `Breaker::new` cannot fail here, and a default breaker is the fallback
        // for a config that bypassed validation.
        let breaker = Breaker::builder()
            .name(&config.name)
            .config(config.breaker.clone())
            .clock(TokioClock)
            .build()
            .unwrap_or_else(|_| {
                Breaker::builder()
                    .name(&config.name)
                    .clock(TokioClock)
                    .build()
                    .expect("the default breaker config is valid")
            });
        Self {
            info: TargetInfo(Arc::new(TargetLabels {
                index,
                name: config.name.clone(),
                provider: config.provider.clone(),
                model: config.model.clone(),
                key: config.key.clone(),
                region: config.region.clone(),
                group: config.group,
                context_window: config.context_window,
            })),
            weight: f64::from(config.weight.max(1)),
            name_hash: crate::hints::sticky_hash(config.name.as_str()),
            breaker,
            requests: limiter(config.requests_per_minute),
            tokens: limiter(config.tokens_per_minute),
            ewma: PeakEwma::new(
                backstop_core::time::nanos(default_latency),
                backstop_core::time::nanos(decay),
                now,
            ),
            pending: AtomicU64::new(0),
            cooling_until: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            reported: Default::default(),
            counters: StripedCounters::new(),
        }
    }

    #[inline]
    pub(crate) fn count(&self, counter: usize) {
        self.counters.add(counter);
    }

    /// Whether the request's size fits: a request larger than the window, or not larger
    /// than `min_window` allows after a context-length error, skips the target.
    #[inline]
    pub(crate) fn fits(&self, tokens: u64, min_window: u64) -> bool {
        match self.info.0.context_window {
            Some(window) => window >= tokens && window >= min_window,
            None => min_window == 0,
        }
    }

    #[inline]
    pub(crate) fn cooling(&self, now: u64) -> bool {
        now < self.cooling_until.load(Ordering::Relaxed)
    }

    /// Time left of the cooldown, zero when not cooling.
    pub(crate) fn cooldown_left(&self, now: u64) -> Duration {
        Duration::from_nanos(
            self.cooling_until
                .load(Ordering::Relaxed)
                .saturating_sub(now),
        )
    }

    /// Cools the target down until `now + length` (never shortening a longer cooldown).
    /// Counted in `cooldowns` whenever it starts or lengthens one.
    pub(crate) fn cool_down(&self, now: u64, length: Duration, reason: &'static str) {
        let until = now.saturating_add(backstop_core::time::nanos(length));
        let before = self.cooling_until.fetch_max(until, Ordering::Relaxed);
        if until <= before {
            return;
        }
        self.count(COOLDOWNS);
        if before <= now {
            tracing::info!(
                target_name = %self.info.name(),
                reason,
                cooldown = ?length,
                "route: target cooling down"
            );
        } else {
            // Concurrent failures of a target already cooling: one info event is enough.
            tracing::debug!(
                target_name = %self.info.name(),
                reason,
                cooldown = ?length,
                "route: cooldown lengthened"
            );
        }
    }

    pub(crate) fn failed(&self, now: u64) -> u32 {
        self.last_failure.store(now.max(1), Ordering::Relaxed);
        self.consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    pub(crate) fn succeeded(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Room in the target's budgets (its own limiters, and what the provider reported) for
    /// one request of `tokens` tokens, without charging.
    pub(crate) fn room(&self, tokens: u64, now: u64) -> Room {
        let mut tightest = 1.0_f64;
        let mut limited = false;
        for (limiter, cost) in [(&self.requests, 1), (&self.tokens, tokens)] {
            let Some(limiter) = limiter else { continue };
            limited = true;
            let burst = limiter.quota().burst().max(1);
            let remaining = limiter.stats().remaining;
            if remaining < cost {
                return Room::None;
            }
            tightest = tightest.min((remaining - cost) as f64 / burst as f64);
        }
        for (reported, cost) in self.reported.iter().zip([1, tokens]) {
            let Some((remaining, limit)) = reported.view(now) else {
                continue;
            };
            limited = true;
            if remaining < cost {
                return Room::None;
            }
            tightest = tightest.min((remaining - cost) as f64 / limit as f64);
        }
        if !limited {
            return Room::Unlimited;
        }
        // A request that spends the last of a budget still has room; weigh it as nearly
        // spent, never as zero.
        Room::Some(tightest.max(1e-3))
    }

    /// How long until the budgets have room for one request of `tokens` tokens (zero when
    /// they have it now), or `None` when they never will (a cost above a budget's burst).
    pub(crate) fn budget_wait(&self, tokens: u64, now: u64) -> Option<Duration> {
        let mut wait = Duration::ZERO;
        for (limiter, cost) in [(&self.requests, 1), (&self.tokens, tokens)] {
            let Some(limiter) = limiter else { continue };
            let quota = limiter.quota();
            if cost > quota.burst() {
                return None;
            }
            let missing = cost.saturating_sub(limiter.stats().remaining);
            let nanos = u128::from(missing) * quota.replenish_interval().as_nanos();
            wait = wait.max(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ));
        }
        for (reported, cost) in self.reported.iter().zip([1, tokens]) {
            if let Some((remaining, limit)) = reported.view(now) {
                if cost > limit {
                    return None;
                }
                if remaining < cost {
                    wait = wait.max(Duration::from_nanos(reported.left(now)));
                }
            }
        }
        Some(wait)
    }

    /// Charges one request of `tokens` tokens, or nothing when a budget refuses. Tokens are
    /// charged first: they are the budget that usually refuses, and a refusal of the
    /// request budget after an admitted token charge (only under a race past [`room`])
    /// leaves those tokens spent — the budgets can under-admit, never over-admit.
    pub(crate) fn charge(&self, tokens: u64, now: u64) -> bool {
        if let Some(limiter) = &self.tokens
            && tokens > 0
            && limiter.check_n(tokens).is_err()
        {
            return false;
        }
        if let Some(limiter) = &self.requests
            && limiter.check().is_err()
        {
            return false;
        }
        for (reported, cost) in self.reported.iter().zip([1, tokens]) {
            reported.spend(cost, now);
        }
        true
    }

    pub(crate) fn stats(&self, now: u64) -> TargetStats {
        let c = &self.counters;
        TargetStats {
            name: self.info.name().to_string(),
            group: self.info.group(),
            chosen: c.get(CHOSEN),
            succeeded: c.get(SUCCEEDED),
            failed: crate::stats::FailedByClass {
                server_error: c.get(SERVER_ERROR),
                timeout: c.get(TIMEOUT),
                rate_limited: c.get(RATE_LIMITED),
                circuit_open: c.get(CIRCUIT_OPEN),
                unavailable: c.get(UNAVAILABLE),
                context_length: c.get(CONTEXT_LENGTH),
                fatal: c.get(FATAL),
            },
            skipped_no_budget: c.get(SKIPPED_NO_BUDGET),
            skipped_circuit_open: c.get(SKIPPED_CIRCUIT_OPEN),
            cooldowns: c.get(COOLDOWNS),
            cooling_down: Some(self.cooldown_left(now)).filter(|d| !d.is_zero()),
            in_flight: self.pending.load(Ordering::Relaxed),
            ewma_latency: Duration::from_nanos(self.ewma.get(now) as u64),
            circuit: self.breaker.state().as_str(),
        }
    }
}

/// Counts a request in flight on a target until dropped (completion, error or
/// cancellation alike).
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    pub(crate) fn enter(pending: &'a AtomicU64) -> Self {
        pending.fetch_add(1, Ordering::Relaxed);
        Self(pending)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
