//! The wrapper manager that gives deadpool's objects lifetimes, idle tracking, a
//! health-check bypass and per-reason close counts.
//!
//! deadpool stamps its own `Metrics` with `std::time::Instant`, which paused Tokio time
//! cannot move; tracking times here with `tokio::time::Instant` keeps every time-based
//! rule deterministic in tests and lets the reaper and checkout apply the same rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use tokio::time::Instant;

use crate::stats::{CloseReason, Counters};

/// A pooled object with the bookkeeping the pool's rules need.
#[derive(Debug)]
pub(crate) struct Conn<T> {
    pub(crate) obj: T,
    pub(crate) last_used: Instant,
    /// When the current checkout began (stamped in create/recycle, which already read
    /// the clock, so the hot path reads it only once more, on return).
    pub(crate) checked_out: Instant,
    pub(crate) counters: Arc<Counters>,
    pub(crate) expires_at: Option<Instant>,
    /// Set when a caller reported the connection broken; checked at the next checkout.
    pub(crate) broken: Arc<AtomicBool>,
}

/// Time rules shared by checkout and the reaper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) lifetime_jitter: f64,
    pub(crate) bypass: Duration,
    pub(crate) recycle_timeout: Duration,
}

impl<T> Conn<T> {
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    pub(crate) fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_used)
    }
}

/// deadpool manager that wraps the user's manager.
#[derive(Debug)]
pub(crate) struct Tracked<M> {
    pub(crate) inner: M,
    pub(crate) rules: Rules,
    pub(crate) counters: Arc<Counters>,
}

impl<M> Manager for Tracked<M>
where
    M: PoolManager,
{
    type Type = Conn<M::Type>;
    type Error = M::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        match self.inner.create().await {
            Ok(obj) => {
                let now = Instant::now();
                let expires_at = self.rules.max_lifetime.map(|life| {
                    let jitter = life.mul_f64(self.rules.lifetime_jitter * fastrand::f64());
                    now + life.saturating_sub(jitter)
                });
                self.counters.on_created();
                tracing::debug!("pool created a connection");
                Ok(Conn {
                    obj,
                    last_used: now,
                    checked_out: now,
                    counters: Arc::clone(&self.counters),
                    expires_at,
                    broken: Arc::new(AtomicBool::new(false)),
                })
            }
            Err(error) => {
                self.counters.on_create_failed(error.to_string());
                tracing::warn!(%error, "pool failed to create a connection");
                Err(error)
            }
        }
    }

    async fn recycle(&self, conn: &mut Self::Type, metrics: &Metrics) -> RecycleResult<M::Error> {
        let now = Instant::now();
        let reason = if conn.broken.load(Ordering::Relaxed) {
            Some(CloseReason::Broken)
        } else if conn.expired(now) {
            Some(CloseReason::Lifetime)
        } else if self
            .rules
            .idle_timeout
            .is_some_and(|idle| conn.idle_for(now) >= idle)
        {
            Some(CloseReason::Idle)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.counters.on_closed(reason);
            return Err(RecycleError::message(reason.as_str()));
        }
        conn.checked_out = now;
        if conn.idle_for(now) < self.rules.bypass {
            return Ok(());
        }
        // Boxed so the timer and the manager's future live only on this slow path and do
        // not bloat the checkout future every fast-path checkout moves around.
        let check = Box::pin(tokio::time::timeout(
            self.rules.recycle_timeout,
            self.inner.recycle(&mut conn.obj, metrics),
        ));
        match check.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.counters.on_closed(CloseReason::HealthCheck);
                tracing::debug!("pool discarded a connection that failed its health check");
                Err(error)
            }
            Err(_) => {
                self.counters.on_closed(CloseReason::HealthCheck);
                tracing::debug!("pool discarded a connection whose health check timed out");
                Err(RecycleError::message("health check timed out"))
            }
        }
    }

    fn detach(&self, conn: &mut Self::Type) {
        self.inner.detach(&mut conn.obj);
    }
}

/// A deadpool [`Manager`] the pool can use: its errors display, so a wait timeout can
/// report the last creation error. Implemented for every such manager.
pub trait PoolManager: Manager<Error: std::fmt::Display> + 'static {}

impl<M: Manager<Error: std::fmt::Display> + 'static> PoolManager for M {}
