//! The background task: keep `min_idle` warm, reap idle and expired connections,
//! health-check idle ones (keepalive) and run the adaptive sizing policy.
//!
//! It holds only a `Weak` to the pool and upgrades it once per tick, so dropping the
//! last `Pool` handle ends the task at its next tick.

use std::sync::Weak;
use std::time::Duration;

use deadpool::managed::{Object, Timeouts};
use futures::future::join_all;
use tokio::time::Instant;

use crate::adaptive::{Adaptive, Window};
use crate::conn::{PoolManager, Tracked};
use crate::pool::Inner;
use crate::stats::CloseReason;

const FILL_BACKOFF_START: Duration = Duration::from_millis(250);
const FILL_BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(crate) async fn run<M>(weak: Weak<Inner<M>>)
where
    M: PoolManager,
{
    let Some(interval) = weak
        .upgrade()
        .map(|inner| inner.config.housekeeping_interval)
    else {
        return;
    };
    let mut backoff = FILL_BACKOFF_START;
    let mut next_fill = Instant::now();
    let mut next_keepalive = None;
    let mut adaptive = weak.upgrade().and_then(|inner| {
        inner
            .config
            .adaptive
            .clone()
            .map(|c| Adaptive::new(c, &inner.counters.wait))
    });
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if inner.pool.is_closed() {
            return;
        }
        let now = Instant::now();
        reap(&inner, now);
        if let Some(keepalive) = inner.config.keepalive_interval {
            let due = next_keepalive.get_or_insert(now + keepalive);
            if now >= *due {
                check_idle(&inner).await;
                *due = Instant::now() + keepalive;
            }
        }
        if now >= next_fill {
            if fill(&inner).await {
                backoff = FILL_BACKOFF_START;
            } else {
                tracing::warn!(retry_in = ?backoff, "pool could not reach min_idle; backing off");
                next_fill = Instant::now() + backoff;
                backoff = (backoff * 2).min(FILL_BACKOFF_MAX);
            }
        }
        if let Some(adaptive) = adaptive.as_mut() {
            let status = inner.pool.status();
            let window = Window {
                max_size: status.max_size,
                in_use: status.size - status.available,
                waiters: status.waiting,
            };
            if let Some((size, reason)) = adaptive.observe(now, window, &inner.counters.wait) {
                inner.resize(size, &reason);
            }
        }
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

/// Closes idle connections past their lifetime, and those idle too long while the
/// pool holds more than `min_idle` idle ones.
fn reap<M>(inner: &Inner<M>, now: Instant)
where
    M: PoolManager,
{
    let rules = inner.rules;
    let idle = inner.pool.status().available;
    let mut spare = idle.saturating_sub(inner.config.min_idle);
    let (mut expired, mut idled) = (0, 0);
    let result = inner.pool.retain(|conn, _| {
        if conn.expired(now) {
            expired += 1;
            spare = spare.saturating_sub(1);
            return false;
        }
        if spare > 0
            && rules
                .idle_timeout
                .is_some_and(|limit| conn.idle_for(now) >= limit)
        {
            idled += 1;
            spare -= 1;
            return false;
        }
        true
    });
    drop(result);
    inner.counters.on_closed_n(CloseReason::Lifetime, expired);
    inner.counters.on_closed_n(CloseReason::Idle, idled);
    if expired + idled > 0 {
        tracing::debug!(expired, idled, "pool reaped connections");
    }
}

/// Checks out without waiting, so background work never queues behind callers.
fn no_wait() -> Timeouts {
    Timeouts {
        wait: Some(Duration::ZERO),
        ..Timeouts::default()
    }
}

/// Brings idle connections up to `min_idle`, creating at most `fill_concurrency` at a
/// time. Returns false when a creation failed.
async fn fill<M>(inner: &Inner<M>) -> bool
where
    M: PoolManager,
{
    let status = inner.pool.status();
    let deficit = inner
        .config
        .min_idle
        .saturating_sub(status.available)
        .min(status.max_size.saturating_sub(status.size))
        .min(inner.config.fill_concurrency);
    if deficit == 0 {
        return true;
    }
    // deadpool has no "add" call: holding every idle connection plus `deficit` more
    // forces exactly `deficit` creations; dropping them returns all as idle.
    let timeouts = Timeouts {
        create: Some(inner.config.create_timeout),
        ..no_wait()
    };
    let gets = (0..status.available + deficit).map(|_| inner.pool.timeout_get(&timeouts));
    let results: Vec<_> = join_all(gets).await;
    let mut ok = true;
    for result in results {
        match result {
            Ok(obj) => drop::<Object<Tracked<M>>>(obj),
            Err(deadpool::managed::PoolError::Timeout(deadpool::managed::TimeoutType::Wait)) => {}
            Err(_) => ok = false,
        }
    }
    ok
}

/// Keepalive: check out every idle connection without waiting, which runs the health
/// check on each one idle longer than the bypass window; failures are discarded.
async fn check_idle<M>(inner: &Inner<M>)
where
    M: PoolManager,
{
    let idle = inner.pool.status().available;
    let timeouts = no_wait();
    let mut held = Vec::with_capacity(idle);
    for _ in 0..idle {
        match inner.pool.timeout_get(&timeouts).await {
            Ok(obj) => held.push(obj),
            Err(_) => break,
        }
    }
}
