//! The router handle: construction, inspection, readiness and the entry points.

use crate::class::{ClassifyRoute, StandardRouteClassify};
use crate::config::RouteConfig;
use crate::hints::RouteHints;
use crate::pick::Attempted;
use crate::stats::{RouterStats, router_counters::*};
use crate::target::{Target, TargetInfo};
use backstop_core::{
    ConfigError, Error, LoadSignal, LoadSnapshot, QuotaState, RejectKind, Rejected, StackError,
    StripedCounters, deadline,
};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// A set of upstream targets with fallback, balancing, cooldowns and per-target breakers
/// and budgets: a cheap-clone handle (clones share all of it).
///
/// Use it standalone with [`call`](Router::call) or [`run`](Router::run), or in front of
/// a service with [`RouteLayer`](crate::RouteLayer).
///
/// A request goes to the first priority group with a usable target (not tried, not
/// cooling down, circuit admitting, budget with room, window large enough); within the
/// group a sticky key picks by rendezvous hashing, otherwise weighted power of two
/// choices over Peak-EWMA latency and budget headroom. A failure is classified
/// ([`ErrorClass`](crate::ErrorClass)) and the chain moves on, within one deadline and `max_attempts` calls.
///
/// ```
/// use backstop_route::{RouteConfig, RouteHints, TargetConfig};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # rt.block_on(async {
/// let router = RouteConfig {
///     targets: vec![
///         TargetConfig { group: 0, ..TargetConfig::named("primary") },
///         TargetConfig { group: 1, ..TargetConfig::named("backup") },
///     ],
///     ..RouteConfig::default()
/// }
/// .build()
/// .unwrap();
///
/// let answer = router
///     .call(&RouteHints::new(), |target| {
///         let name = target.name().to_string();
///         async move {
///             if name == "primary" { Err("503") } else { Ok(format!("answered by {name}")) }
///         }
///     })
///     .await;
/// assert_eq!(answer.unwrap(), "answered by backup");
/// assert_eq!(router.stats().fallbacks, 1);
/// # });
/// ```
#[derive(Clone)]
pub struct Router {
    pub(crate) shared: Arc<RouterState>,
}

pub(crate) struct RouterState {
    pub(crate) config: RouteConfig,
    pub(crate) targets: Box<[Target]>,
    /// Target indices per priority group, lowest group first.
    pub(crate) groups: Box<[Box<[u8]>]>,
    origin: Instant,
    pub(crate) counters: StripedCounters<COUNTERS>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("targets", &self.shared.targets.len())
            .field("groups", &self.shared.groups.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Validates `config` and builds the handle; the same as [`RouteConfig::build`].
    pub fn new(config: RouteConfig) -> Result<Self, ConfigError> {
        config.build()
    }

    pub(crate) fn from_valid(config: RouteConfig) -> Self {
        let origin = Instant::now();
        let targets: Box<[Target]> = config
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Target::new(
                    i,
                    t,
                    config.balance.default_latency,
                    config.balance.decay,
                    0,
                )
            })
            .collect();
        let mut levels: Vec<u32> = config.targets.iter().map(|t| t.group).collect();
        levels.sort_unstable();
        levels.dedup();
        let groups = levels
            .iter()
            .map(|level| {
                (0..config.targets.len())
                    .filter(|&i| config.targets[i].group == *level)
                    .map(|i| i as u8)
                    .collect()
            })
            .collect();
        Self {
            shared: Arc::new(RouterState {
                config,
                targets,
                groups,
                origin,
                counters: StripedCounters::new(),
            }),
        }
    }

    /// The validated config.
    pub fn config(&self) -> &RouteConfig {
        &self.shared.config
    }

    /// Every target, in config order.
    pub fn targets(&self) -> impl Iterator<Item = &TargetInfo> {
        self.shared.targets.iter().map(|t| &t.info)
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&TargetInfo> {
        self.targets().find(|t| t.name() == name)
    }

    /// The target's circuit breaker, to force it open or read its stats.
    pub fn breaker(
        &self,
        target: &TargetInfo,
    ) -> Option<&backstop_breaker::Breaker<backstop_core::TokioClock>> {
        self.shared.targets.get(target.index()).map(|t| &t.breaker)
    }

    /// Nanoseconds since the router was built, on Tokio's clock (paused in tests).
    pub(crate) fn now(&self) -> u64 {
        backstop_core::time::nanos(Instant::now().saturating_duration_since(self.shared.origin))
    }

    /// The target a request with `hints` would be sent to first, without charging or
    /// calling anything (a sticky key always gives the same answer; otherwise the choice is
    /// randomised).
    pub fn pick(&self, hints: &RouteHints) -> Option<&TargetInfo> {
        let mut req = Attempted {
            tokens: hints.token_cost(),
            sticky: hints.sticky_key(),
            ..Attempted::default()
        };
        let now = self.now();
        self.shared
            .select(&mut req, now)
            .map(|i| &self.shared.targets[i].info)
    }

    /// Cools `target` down for `length` (lengthening, never shortening, a cooldown), as a
    /// failure would: for a health check or an operator that knows better.
    pub fn cool_down(&self, target: &TargetInfo, length: Duration) {
        if let Some(t) = self.shared.targets.get(target.index()) {
            t.cool_down(
                self.now(),
                length.min(self.shared.config.cooldown.max),
                "manual",
            );
        }
    }

    /// Tells the router what `target`'s provider reported of its quotas with an answer
    /// (its `x-ratelimit-remaining-*`, `-limit-*` and `-reset-*` headers), the source of
    /// truth when the key is shared with traffic this router does not see.
    ///
    /// A quota whose name contains `token` is compared with requests' token costs, any
    /// other with one per request. Until its `reset` (at most `cooldown.max`), a report
    /// caps the target's headroom, a target reported without room for a request is
    /// skipped without a call, and each call routed there is taken off what was reported.
    ///
    /// ```
    /// use backstop_core::QuotaState;
    /// use backstop_route::{RouteConfig, RouteHints, TargetConfig};
    /// use std::time::Duration;
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    /// # rt.block_on(async {
    /// let router = RouteConfig {
    ///     targets: vec![TargetConfig::named("shared-key"), TargetConfig::named("own-key")],
    ///     ..RouteConfig::default()
    /// }
    /// .build()
    /// .unwrap();
    /// let shared = router.target("shared-key").unwrap().clone();
    /// let minute = Duration::from_secs(60);
    /// router.observe_quotas(&shared, &[
    ///     QuotaState::new("requests", 500, 420, Duration::from_secs(8), minute),
    ///     QuotaState::new("tokens", 90_000, 300, Duration::from_secs(12), minute),
    /// ]);
    /// // 300 tokens left: a 1,000-token request goes to the other key.
    /// let hints = RouteHints::new().tokens(1_000);
    /// assert_eq!(router.pick(&hints).unwrap().name(), "own-key");
    /// # });
    /// ```
    pub fn observe_quotas(&self, target: &TargetInfo, quotas: &[QuotaState]) {
        let Some(t) = self.shared.targets.get(target.index()) else {
            return;
        };
        let now = self.now();
        for quota in quotas {
            let name = quota.name.as_bytes();
            let tokens = name.windows(5).any(|w| w.eq_ignore_ascii_case(b"token"));
            let kind = usize::from(tokens);
            let reset = quota.reset.min(self.shared.config.cooldown.max);
            let until = now.saturating_add(backstop_core::time::nanos(reset));
            t.reported[kind].set(quota.remaining, quota.limit, until);
        }
    }

    /// Totals since creation, and every target's state.
    pub fn stats(&self) -> RouterStats {
        let c = &self.shared.counters;
        let now = self.now();
        RouterStats {
            calls: c.get(CALLS),
            succeeded: c.get(SUCCEEDED),
            fallbacks: c.get(FALLBACKS),
            exhausted: c.get(EXHAUSTED),
            all_cooling_refusals: c.get(ALL_COOLING),
            probes: c.get(PROBES),
            deadline_exhaustions: c.get(DEADLINE_EXHAUSTED),
            panics: c.get(PANICKED),
            waited_retry_after: c.get(WAITED),
            targets: self.shared.targets.iter().map(|t| t.stats(now)).collect(),
        }
    }

    /// `Ok` when some target is usable now (not cooling down, circuit admitting);
    /// otherwise the refusal a call would get, with the soonest `retry_after`.
    pub fn readiness(&self) -> Result<(), Rejected> {
        let now = self.now();
        let usable = self
            .shared
            .targets
            .iter()
            .any(|t| !t.cooling(now) && t.breaker.readiness().is_ok());
        if usable {
            Ok(())
        } else {
            Err(self.all_cooling(now, 0, 0))
        }
    }

    /// The refusal when no target can be called: `Unavailable`, after the soonest time a
    /// target that fits the request could take it (its cooldown over, its circuit
    /// admitting, its budgets with room), when known.
    pub(crate) fn all_cooling(&self, now: u64, tokens: u64, min_window: u64) -> Rejected {
        let soonest = self
            .shared
            .targets
            .iter()
            .filter(|t| t.fits(tokens, min_window))
            .filter_map(|t| {
                let circuit = match t.breaker.readiness() {
                    Ok(()) => Some(Duration::ZERO),
                    Err(refused) => refused.retry_after,
                }?;
                let budget = t.budget_wait(tokens, now)?;
                Some(circuit.max(budget).max(t.cooldown_left(now)))
            })
            .min();
        let refused = Rejected::new(RejectKind::Unavailable);
        match soonest {
            Some(wait) => refused.with_retry_after(wait),
            None => refused,
        }
    }

    /// Routes one request with the standard classification; the attempt's own error `E`
    /// comes back lifted into [`Error<E>`] (the router's refusals, such as every target
    /// cooling down, are [`Error::Rejected`]).
    pub async fn call<T, E, F, Fut>(&self, hints: &RouteHints, attempt: F) -> Result<T, Error<E>>
    where
        E: Send + Sync + 'static,
        F: Fn(&TargetInfo) -> Fut + Sync,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(hints, &StandardRouteClassify, |target| {
            let call = attempt(target);
            async move { call.await.map_err(Error::Inner) }
        })
        .await
    }

    /// Routes one request: calls `attempt` with a chosen target until it succeeds,
    /// `classify` calls the error fatal, `max_attempts` calls were made, the deadline
    /// leaves too little time, or no target is left. The error returned is the last
    /// attempt's, or a refusal when no call could be made (`Unavailable` with the soonest
    /// `retry_after` when every target is cooling down, `DeadlineExceeded` when the
    /// deadline was too close).
    pub async fn run<T, E, C, F, Fut>(
        &self,
        hints: &RouteHints,
        classify: &C,
        attempt: F,
    ) -> Result<T, E>
    where
        E: StackError,
        C: ClassifyRoute<E> + ?Sized,
        F: Fn(&TargetInfo) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        deadline::scope_opt(
            self.shared.config.timeout,
            self.chain(hints, classify, &attempt),
        )
        .await
    }
}

impl LoadSignal for Router {
    /// Attempts in flight over every target; a router has no queue and no fixed capacity.
    fn load(&self) -> LoadSnapshot {
        LoadSnapshot {
            in_flight: self
                .shared
                .targets
                .iter()
                .map(|t| t.pending.load(Ordering::Relaxed))
                .sum(),
            ..LoadSnapshot::default()
        }
    }
}
