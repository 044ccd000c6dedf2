//! A pooled connection's bookkeeping, and the rules that decide at checkout whether it
//! can be handed out as it is, needs a health check, or must be closed.
//!
//! Times are nanoseconds from the pool's [`Clock`](backstop_core::Clock): one integer
//! per timestamp, and one cheap clock read per checkout and per return.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{Manager, Metrics};

use crate::stats::CloseReason;

/// A pooled object with the timestamps the pool's rules need.
#[derive(Debug)]
pub(crate) struct Conn<T> {
    pub(crate) obj: T,
    created: u64,
    pub(crate) last_used: u64,
    /// When the current checkout began.
    pub(crate) checked_out: u64,
    /// `u64::MAX` when connections live for ever.
    expires_at: u64,
    uses: usize,
    /// Set when a caller reported the connection broken; checked at the next checkout.
    pub(crate) broken: Arc<AtomicBool>,
}

impl<T> Conn<T> {
    pub(crate) fn new(obj: T, now: u64, rules: &Rules) -> Self {
        let lifetime = rules.max_lifetime.map_or(u64::MAX, |life| {
            let jitter = life.mul_f64(rules.lifetime_jitter * fastrand::f64());
            nanos(life.saturating_sub(jitter))
        });
        Self {
            obj,
            created: now,
            last_used: now,
            checked_out: now,
            expires_at: now.saturating_add(lifetime),
            uses: 0,
            broken: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    pub(crate) fn idle_for(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_used)
    }

    /// Stamps the start of a checkout.
    pub(crate) fn lease(&mut self, now: u64) {
        self.checked_out = now;
        self.uses += 1;
    }

    /// deadpool's view of this connection, for [`Manager::recycle`]: built only on the
    /// health-check path, with wall-clock instants derived from the pool clock's ages.
    pub(crate) fn metrics(&self, now: u64) -> Metrics {
        let wall = Instant::now();
        let ago = |at: u64| {
            wall.checked_sub(Duration::from_nanos(now.saturating_sub(at)))
                .unwrap_or(wall)
        };
        Metrics {
            created: ago(self.created),
            recycled: (self.uses > 1).then(|| ago(self.last_used)),
            recycle_count: self.uses.saturating_sub(1),
        }
    }
}

/// What checkout does with a connection taken from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Used within the bypass window: hand it out without a check.
    Ready,
    /// Idle longer than the bypass window: health-check it first.
    Check,
    /// Close it and try the next.
    Close(CloseReason),
}

/// Time rules shared by checkout and the reaper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// `u64::MAX` when idle connections are kept for ever.
    pub(crate) idle_timeout: u64,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) lifetime_jitter: f64,
    pub(crate) bypass: u64,
    pub(crate) recycle_timeout: Duration,
}

impl Rules {
    pub(crate) fn verdict<T>(&self, conn: &Conn<T>, now: u64) -> Verdict {
        let idle = conn.idle_for(now);
        if conn.broken.load(Ordering::Relaxed) {
            Verdict::Close(CloseReason::Broken)
        } else if conn.expired(now) {
            Verdict::Close(CloseReason::Lifetime)
        } else if idle >= self.idle_timeout {
            Verdict::Close(CloseReason::Idle)
        } else if idle < self.bypass {
            Verdict::Ready
        } else {
            Verdict::Check
        }
    }

    pub(crate) fn idle_too_long<T>(&self, conn: &Conn<T>, now: u64) -> bool {
        conn.idle_for(now) >= self.idle_timeout
    }
}

/// A duration in the pool clock's nanoseconds, saturating.
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A deadpool [`Manager`] the pool can use: its errors display, so a wait timeout can
/// report the last creation error. Implemented for every such manager.
pub trait PoolManager: Manager<Error: std::fmt::Display> + 'static {}

impl<M: Manager<Error: std::fmt::Display> + 'static> PoolManager for M {}
