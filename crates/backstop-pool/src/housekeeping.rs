//! The background task: keep `min_idle` warm, reap idle and expired connections,
//! health-check idle ones (keepalive) and run the adaptive sizing policy.
//!
//! It holds only a `Weak` to the pool and upgrades it once per tick, so dropping the
//! last `Pool` handle ends the task at its next tick.

use std::sync::Weak;
use std::time::Duration;

use backstop_core::time::clamp;
use futures::future::join_all;
use tokio::time::Instant;

use crate::adaptive::{Adaptive, Window};
use crate::conn::PoolManager;
use crate::pool::{Hold, Inner};
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
        if inner.slots.is_closed() {
            return;
        }
        let now = Instant::now();
        reap(&inner);
        if let Some(keepalive) = inner.config.keepalive_interval {
            let due = next_keepalive.get_or_insert(now + clamp(keepalive));
            if now >= *due {
                check_idle(&inner).await;
                *due = Instant::now() + clamp(keepalive);
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
            let status = inner.status();
            let window = Window {
                max_size: status.max_size,
                in_use: status.size - status.idle,
                waiters: status.waiters,
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
fn reap<M>(inner: &Inner<M>)
where
    M: PoolManager,
{
    let rules = inner.rules;
    let now = inner.clock.now_nanos();
    let mut spare = inner.status().idle.saturating_sub(inner.config.min_idle);
    let removed = inner.slots.remove_idle(false, |conn| {
        if conn.expired(now) {
            spare = spare.saturating_sub(1);
            return Some(CloseReason::Lifetime);
        }
        if spare > 0 && rules.idle_too_long(conn, now) {
            spare -= 1;
            return Some(CloseReason::Idle);
        }
        None
    });
    if removed.is_empty() {
        return;
    }
    tracing::debug!(reaped = removed.len(), "pool reaped connections");
    for (conn, reason) in removed {
        inner.close(conn, reason);
    }
}

/// Brings idle connections up to `min_idle`, creating at most `fill_concurrency` at a
/// time. Returns false when a creation failed.
async fn fill<M>(inner: &Inner<M>) -> bool
where
    M: PoolManager,
{
    let deficit = inner
        .config
        .min_idle
        .saturating_sub(inner.status().idle)
        .min(inner.config.fill_concurrency);
    let reserved = (0..deficit).take_while(|_| inner.slots.reserve()).count();
    let created = join_all((0..reserved).map(|_| create_idle(inner))).await;
    created.into_iter().all(|ok| ok)
}

async fn create_idle<M>(inner: &Inner<M>) -> bool
where
    M: PoolManager,
{
    let hold = Hold::new(inner, None);
    match inner.create().await {
        Ok(conn) => {
            hold.finish();
            inner.give_back(conn, None);
            true
        }
        Err(_) => false,
    }
}

/// Keepalive: health-checks every connection idle longer than the bypass window,
/// returning those that pass and closing the rest (refill replaces them).
async fn check_idle<M>(inner: &Inner<M>)
where
    M: PoolManager,
{
    let now = inner.clock.now_nanos();
    let bypass = inner.rules.bypass;
    let due = inner
        .slots
        .remove_idle(true, |conn| (conn.idle_for(now) >= bypass).then_some(()));
    for (conn, ()) in due {
        let mut hold = Hold::new(inner, None);
        let passed = inner.health_check(hold.conn.insert(conn), now).await;
        // A passed check is not a use: the idle timeout still runs from the last one.
        if !passed {
            continue;
        }
        if let Some(conn) = hold.conn.take() {
            hold.finish();
            inner.give_back(conn, None);
        }
    }
}
