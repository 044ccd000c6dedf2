//! The fallback chain every entry point (standalone, layer) runs: select a target, charge
//! its budget, take its breaker's permit, call it within the deadline, classify a failure,
//! cool the target down by class, move on.

use crate::class::{ClassifyRoute, ErrorClass};
use crate::config::AllCooling;
use crate::hints::RouteHints;
use crate::pick::Attempted;
use crate::router::Router;
use crate::stats::{router_counters::*, target_counters};
use crate::target::{InFlight, TargetInfo};
use backstop_core::{RejectKind, Rejected, StackError, contain, deadline};
use std::future::Future;
use std::sync::atomic::Ordering;

impl Router {
    pub(crate) async fn chain<T, E, C, F, Fut>(
        &self,
        hints: &RouteHints,
        classify: &C,
        attempt: &F,
    ) -> Result<T, E>
    where
        E: StackError,
        C: ClassifyRoute<E> + ?Sized,
        F: Fn(&TargetInfo) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let s = &*self.shared;
        let config = &s.config;
        s.counters.add(CALLS);
        let mut req = Attempted {
            tokens: hints.token_cost(),
            sticky: hints.sticky_key(),
            ..Attempted::default()
        };
        let mut last_error: Option<E> = None;
        let mut attempts = 0;
        let mut probed = false;
        let mut waited = false;
        let mut again: Option<usize> = None;
        while attempts < config.max_attempts {
            let now = self.now();
            let index = match again.take().or_else(|| s.select(&mut req, now)) {
                Some(index) => index,
                None if !probed
                    && config.when_all_cooling == AllCooling::ProbeLeastRecentlyFailed =>
                {
                    let Some(index) = s.least_recently_failed(&req, now) else {
                        break;
                    };
                    probed = true;
                    s.counters.add(PROBES);
                    tracing::debug!(target_name = %s.targets[index].info.name(), "route: every target cooling down; probing the least recently failed");
                    index
                }
                None => break,
            };
            req.tried |= 1u64 << index;
            let target = &s.targets[index];
            if deadline::too_close(config.min_attempt_time) {
                s.counters.add(DEADLINE_EXHAUSTED);
                tracing::debug!("route: deadline too close to start an attempt");
                return Err(last_error
                    .unwrap_or_else(|| E::rejected(Rejected::new(RejectKind::DeadlineExceeded))));
            }
            // The permit first: a budget refusal then returns it unused, and a circuit
            // refusal (a race past selection) spends no budget.
            let Ok(permit) = target.breaker.try_acquire() else {
                target.count(target_counters::SKIPPED_CIRCUIT_OPEN);
                continue;
            };
            if !target.charge(req.tokens, now) {
                permit.ignore();
                target.count(target_counters::SKIPPED_NO_BUDGET);
                continue;
            }
            if attempts > 0 {
                s.counters.add(FALLBACKS);
                tracing::debug!(target_name = %target.info.name(), attempt = attempts + 1, "route: falling back");
            }
            attempts += 1;
            target.count(target_counters::CHOSEN);
            // The clock read at selection, a few atomics ago, is the start.
            let started = now;
            let result = {
                let _in_flight = InFlight::enter(&target.pending);
                deadline::attempt(config.attempt_timeout, attempt(&target.info)).await
            };
            let ended = self.now();
            let latency = ended.saturating_sub(started);
            let (error, class) = match result {
                Ok(Ok(value)) => {
                    target.ewma.observe(latency, ended);
                    target.succeeded();
                    permit.success();
                    target.count(target_counters::SUCCEEDED);
                    s.counters.add(SUCCEEDED);
                    return Ok(value);
                }
                Ok(Err(error)) => match contain("route.classify", || classify.classify(&error)) {
                    Ok(class) => (error, class),
                    Err(panicked) => {
                        permit.ignore();
                        s.counters.add(PANICKED);
                        tracing::warn!(%panicked, "route: classifier panicked");
                        return Err(E::panicked(panicked));
                    }
                },
                Err(RejectKind::DeadlineExceeded) => {
                    // The caller's deadline, not the target's fault; the wait still bounds
                    // the target's latency from below.
                    target.ewma.observe(latency, ended);
                    permit.ignore();
                    s.counters.add(DEADLINE_EXHAUSTED);
                    return Err(E::rejected(Rejected::new(RejectKind::DeadlineExceeded)));
                }
                // The router's own attempt timeout: a timeout whatever the classifier says.
                Err(_) => (
                    E::rejected(Rejected::new(RejectKind::Timeout)),
                    ErrorClass::Timeout,
                ),
            };
            target.count(class_counter(class));
            let cooldown = &config.cooldown;
            match class {
                ErrorClass::Fatal => {
                    permit.ignore();
                    return Err(error);
                }
                ErrorClass::ContextLength => {
                    permit.ignore();
                    let larger = target
                        .info
                        .context_window()
                        .map_or(u64::MAX, |w| w.saturating_add(1));
                    req.min_window = req.min_window.max(larger);
                    tracing::debug!(target_name = %target.info.name(), min_window = req.min_window, "route: context too long; trying larger windows");
                }
                ErrorClass::ServerError | ErrorClass::Timeout => {
                    permit.failure();
                    target.ewma.observe(latency, ended);
                    if target.failed(ended) >= cooldown.consecutive_failures {
                        let length = if class == ErrorClass::Timeout {
                            cooldown.timeout
                        } else {
                            cooldown.server_error
                        };
                        target.cool_down(ended, length.min(cooldown.max), class.as_str());
                    }
                }
                ErrorClass::RateLimited { retry_after } => {
                    permit.ignore();
                    target.last_failure.store(ended.max(1), Ordering::Relaxed);
                    let wait = retry_after
                        .unwrap_or(cooldown.rate_limited)
                        .min(cooldown.max);
                    target.cool_down(ended, wait, class.as_str());
                    let short = retry_after.is_some_and(|w| w <= cooldown.wait_for_retry_after);
                    let time_left = deadline::remaining()
                        .is_none_or(|left| left > wait.saturating_add(config.min_attempt_time));
                    if short && !waited && time_left && attempts < config.max_attempts {
                        waited = true;
                        s.counters.add(WAITED);
                        tokio::time::sleep(wait).await;
                        again = Some(index);
                    }
                }
                ErrorClass::CircuitOpen { retry_after }
                | ErrorClass::Unavailable { retry_after } => {
                    permit.ignore();
                    target.last_failure.store(ended.max(1), Ordering::Relaxed);
                    let fallback = if matches!(class, ErrorClass::CircuitOpen { .. }) {
                        cooldown.circuit_open
                    } else {
                        cooldown.unavailable
                    };
                    target.cool_down(
                        ended,
                        retry_after.unwrap_or(fallback).min(cooldown.max),
                        class.as_str(),
                    );
                }
            }
            last_error = Some(error);
        }
        match last_error {
            Some(error) => {
                s.counters.add(EXHAUSTED);
                Err(error)
            }
            None => {
                s.counters.add(ALL_COOLING);
                let unavailable = self.all_cooling(self.now(), req.tokens, req.min_window);
                let refused = if req.no_budget != 0 {
                    // A target had no budget left for it: the caller is rate limited.
                    let limited = Rejected::new(RejectKind::RateLimited { quota: 0 });
                    match unavailable.retry_after {
                        Some(wait) => limited.with_retry_after(wait),
                        None => limited,
                    }
                } else {
                    unavailable
                };
                tracing::debug!(%refused, "route: no target can take the request");
                Err(E::rejected(refused))
            }
        }
    }
}

fn class_counter(class: ErrorClass) -> usize {
    use target_counters::*;
    match class {
        ErrorClass::ServerError => SERVER_ERROR,
        ErrorClass::Timeout => TIMEOUT,
        ErrorClass::RateLimited { .. } => RATE_LIMITED,
        ErrorClass::CircuitOpen { .. } => CIRCUIT_OPEN,
        ErrorClass::Unavailable { .. } => UNAVAILABLE,
        ErrorClass::ContextLength => CONTEXT_LENGTH,
        ErrorClass::Fatal => FATAL,
    }
}
