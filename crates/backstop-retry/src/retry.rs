//! The retry handle and the attempt loop every entry point (standalone, layer, streams)
//! runs.

use crate::backoff::BackoffSeries;
use crate::budget::RetryBudget;
use crate::classify::{ClassifyRetry, RetryDecision, StandardClassify};
use crate::config::RetryConfig;
use crate::hedge::HedgeDelay;
use crate::stats::*;
use backstop_core::{
    ConfigError, Error, RejectKind, Rejected, StackError, StripedCounters, contain, deadline,
};
use futures::future::{Either, select};
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A retry policy with its shared budget, hedge latency window and counters: a cheap-clone
/// handle (clones share all of it).
///
/// Use it standalone with [`call`](Retry::call) or [`run`](Retry::run), as a layer with
/// [`RetryLayer`](crate::RetryLayer), or for streams with [`stream`](Retry::stream).
///
/// ```
/// use backstop_retry::{Retry, RetryConfig};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # rt.block_on(async {
/// let retry = RetryConfig { max_attempts: 3, ..RetryConfig::default() }.build().unwrap();
/// let calls = AtomicU32::new(0);
/// let answer = retry
///     .call(|| async {
///         match calls.fetch_add(1, Ordering::Relaxed) {
///             0 => Err("503"),
///             _ => Ok("hello"),
///         }
///     })
///     .await;
/// assert_eq!(answer.unwrap(), "hello");
/// assert_eq!((retry.stats().attempts, retry.stats().retries), (2, 1));
/// # });
/// ```
#[derive(Clone)]
pub struct Retry {
    shared: Arc<RetryState>,
}

struct RetryState {
    config: RetryConfig,
    budget: RetryBudget,
    hedge: Option<(HedgeDelay, RetryBudget)>,
    counters: StripedCounters<COUNTERS>,
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for Retry {
    /// The default policy: 3 attempts, full-jitter backoff from 100 ms, a 20 % budget.
    fn default() -> Self {
        Self::from_valid(RetryConfig::default())
    }
}

impl Retry {
    /// Validates `config` and builds the handle; the same as [`RetryConfig::build`].
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        config.build()
    }

    pub(crate) fn from_valid(config: RetryConfig) -> Self {
        let budget = RetryBudget::new(config.budget);
        let hedge = config.hedge.map(|h| {
            // Earns from the same calls as the retry budget: one deposit per call feeds both.
            let hedge_budget = budget.sharing_calls(crate::RetryBudgetConfig {
                ratio: h.max_ratio,
                min_per_sec: 0,
                // Little banked: a quiet spell must not pay for a burst of hedges.
                max_banked: 10,
            });
            (HedgeDelay::new(h), hedge_budget)
        });
        Self {
            shared: Arc::new(RetryState {
                budget,
                hedge,
                counters: StripedCounters::new(),
                config,
            }),
        }
    }

    /// The validated policy.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// The retry budget shared by every clone.
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// Totals since creation.
    pub fn stats(&self) -> RetryStats {
        let s = &*self.shared;
        let c = &s.counters;
        // Refusals before retries before calls: each counted after the call's deposit, so
        // read in this order the derived attempts never run ahead of (or below) a count.
        let refused_at_start = c.get(REFUSED_AT_START);
        let retries = c.get(RETRIES);
        let calls = s.budget.calls();
        RetryStats {
            calls,
            attempts: calls.saturating_sub(refused_at_start) + retries,
            retries,
            budget_refusals: c.get(BUDGET_REFUSED),
            hedges_fired: c.get(HEDGES_FIRED),
            hedges_won: c.get(HEDGES_WON),
            deadline_exhaustions: refused_at_start + c.get(DEADLINE_EXHAUSTED),
            classifier_panics: c.get(PANICKED),
            streams_cut: c.get(STREAMS_CUT),
            hedge_delay: s.hedge.as_ref().and_then(|(d, _)| d.delay()),
        }
    }

    pub(crate) fn count(&self, counter: usize) {
        self.shared.counters.add(counter);
    }

    /// Calls `attempt` until it succeeds, with the standard classification; the closure's
    /// own error `E` comes back lifted into [`Error<E>`] (refusals of the retry itself, such
    /// as an exhausted deadline, are [`Error::Rejected`]).
    pub async fn call<T, E, F, Fut>(&self, attempt: F) -> Result<T, Error<E>>
    where
        E: Send + Sync + 'static,
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(&StandardClassify, || {
            let call = attempt();
            async move { call.await.map_err(Error::Inner) }
        })
        .await
    }

    /// Calls `attempt` until it succeeds or `classify` says stop, the attempts run out, the
    /// budget refuses a retry or the deadline leaves too little time. The error returned is
    /// the last attempt's, or a [`RejectKind::DeadlineExceeded`] refusal when no attempt
    /// could start in time.
    pub async fn run<T, E, C, F, Fut>(&self, classify: &C, attempt: F) -> Result<T, E>
    where
        E: StackError,
        C: ClassifyRetry<E> + ?Sized,
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<T, E>>,
    {
        // The deadline scope holds the attempts' future twice over (its argument and the
        // scoped future): boxed, a call without a deadline does not pay for it.
        match self.shared.config.timeout {
            Some(_) => Box::pin(self.run_inline(classify, attempt)).await,
            None => self.attempts(classify, &attempt).await,
        }
    }

    /// [`run`](Retry::run) for a caller that boxes the whole call itself: the deadline
    /// scope inline, so the call makes one allocation, not two.
    pub(crate) async fn run_inline<T, E, C, F, Fut>(&self, classify: &C, attempt: F) -> Result<T, E>
    where
        E: StackError,
        C: ClassifyRetry<E> + ?Sized,
        F: Fn() -> Fut + Sync,
        Fut: Future<Output = Result<T, E>>,
    {
        deadline::scope_opt(
            self.shared.config.timeout,
            self.attempts(classify, &attempt),
        )
        .await
    }

    /// Deposits the call and answers `true` when its first attempt can run as it is, with
    /// nothing around it: no deadline, attempt timeout or hedge could cut or race it. On
    /// `false` nothing is counted, and the call goes through the whole attempt loop.
    #[inline]
    pub(crate) fn start_plain(&self) -> bool {
        let s = &*self.shared;
        let c = &s.config;
        if c.timeout.is_some()
            || c.attempt_timeout.is_some()
            || s.hedge.is_some()
            || deadline::current().is_some()
        {
            return false;
        }
        s.budget.deposit();
        true
    }

    async fn attempts<T, E, C, F, Fut>(&self, classify: &C, attempt: &F) -> Result<T, E>
    where
        E: StackError,
        C: ClassifyRetry<E> + ?Sized,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let s = &*self.shared;
        let config = &s.config;
        // The call's one count: the budgets' deposit, which is also `stats().calls`.
        s.budget.deposit();
        // One read of the deadline for the start check and the choice of attempt below.
        let deadline = deadline::current();
        if let Some(at) = deadline
            && at.saturating_duration_since(Instant::now())
                < config.min_attempt_time.max(Duration::from_nanos(1))
        {
            self.count(REFUSED_AT_START);
            tracing::debug!("retry: deadline too close to start an attempt");
            return Err(E::rejected(Rejected::new(RejectKind::DeadlineExceeded)));
        }
        let first = if s.hedge.is_some() {
            Box::pin(self.attempt_once(attempt)).await
        } else if config.attempt_timeout.is_none() && deadline.is_none() {
            // Nothing can cut this attempt: its future as it is, with no wrapper around it.
            attempt().await
        } else {
            Box::pin(self.timed(attempt())).await
        };
        match first {
            Ok(value) => Ok(value),
            // Everything after a failed first attempt (classification, backoff, hedged
            // retries) is its own boxed future, so a call that succeeds at once carries a
            // future the size of one attempt: inline, the retry states made it 3 KB and
            // moving it was most of the success path's time (issue 20).
            Err(error) => Box::pin(self.after_failure(classify, attempt, error)).await,
        }
    }

    /// The retries after a failed first attempt, until one succeeds or a rule stops them.
    pub(crate) async fn after_failure<T, E, C, F, Fut>(
        &self,
        classify: &C,
        attempt: &F,
        first: E,
    ) -> Result<T, E>
    where
        E: StackError,
        C: ClassifyRetry<E> + ?Sized,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let s = &*self.shared;
        let config = &s.config;
        let mut error = first;
        let mut backoff = BackoffSeries::new(config.backoff);
        let mut made = 1;
        loop {
            let decision = match contain("retry.classify", || classify.classify(&error)) {
                Ok(decision) => decision,
                Err(panicked) => {
                    self.count(PANICKED);
                    tracing::warn!(%panicked, "retry: classifier panicked");
                    return Err(E::panicked(panicked));
                }
            };
            let wait = match decision {
                RetryDecision::Retry => backoff.next_wait(),
                RetryDecision::RetryAfter(wait) if wait <= config.max_retry_after => wait,
                RetryDecision::RetryAfter(wait) => {
                    tracing::debug!(?wait, "retry: retry-after beyond max_retry_after");
                    return Err(error);
                }
                _ => return Err(error),
            };
            if made >= config.max_attempts {
                return Err(error);
            }
            if let Some(left) = deadline::remaining()
                && wait.saturating_add(config.min_attempt_time) >= left
            {
                self.count(DEADLINE_EXHAUSTED);
                tracing::debug!(?wait, ?left, "retry: no time left for another attempt");
                return Err(error);
            }
            if !s.budget.try_withdraw() {
                self.count(BUDGET_REFUSED);
                tracing::debug!("retry: budget refused a retry");
                return Err(error);
            }
            self.count(RETRIES);
            tracing::debug!(attempt = made + 1, ?wait, "retry: retrying");
            tokio::time::sleep(wait).await;
            made += 1;
            error = match self.attempt_once(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
        }
    }

    /// One attempt, hedged when the policy says so and the attempt runs past the delay.
    async fn attempt_once<T, E, F, Fut>(&self, attempt: &F) -> Result<T, E>
    where
        E: StackError,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Some((delay, hedge_budget)) = &self.shared.hedge else {
            return self.timed(attempt()).await;
        };
        let started = Instant::now();
        let Some(after) = delay.delay() else {
            let out = self.timed(attempt()).await;
            if out.is_ok() {
                delay.record(started.elapsed());
            }
            return out;
        };
        let mut primary = pin!(self.timed(attempt()));
        let primary = match select(primary.as_mut(), pin!(tokio::time::sleep(after))).await {
            Either::Left((out, _)) => {
                if out.is_ok() {
                    delay.record(started.elapsed());
                }
                return out;
            }
            Either::Right(((), _)) => primary,
        };
        if !hedge_budget.try_withdraw() {
            let out = primary.await;
            if out.is_ok() {
                delay.record(started.elapsed());
            }
            return out;
        }
        self.count(HEDGES_FIRED);
        tracing::debug!(?after, "retry: hedging a slow attempt");
        let hedge_started = Instant::now();
        let hedge = pin!(self.timed(attempt()));
        // The first success wins; dropping the other future cancels it.
        match select(primary, hedge).await {
            Either::Left((Ok(value), _)) => {
                delay.record(started.elapsed());
                Ok(value)
            }
            Either::Right((Ok(value), _)) => {
                self.count(HEDGES_WON);
                delay.record(hedge_started.elapsed());
                Ok(value)
            }
            Either::Left((Err(_), hedge)) => {
                let out = hedge.await;
                if out.is_ok() {
                    self.count(HEDGES_WON);
                    delay.record(hedge_started.elapsed());
                }
                out
            }
            Either::Right((Err(_), primary)) => {
                let out = primary.await;
                if out.is_ok() {
                    delay.record(started.elapsed());
                }
                out
            }
        }
    }

    /// Runs one attempt within the attempt timeout and what remains of the deadline.
    async fn timed<T, E: StackError>(
        &self,
        attempt: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        deadline::attempt(self.shared.config.attempt_timeout, attempt)
            .await
            .unwrap_or_else(|cut| Err(E::rejected(Rejected::new(cut))))
    }
}
