//! Counters, latency histograms and the serializable [`PoolStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use backstop_core::{Histogram, LatencySummary};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

/// Why the pool closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Idle,
    Lifetime,
    HealthCheck,
    Broken,
    Resize,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle timeout",
            Self::Lifetime => "max lifetime",
            Self::HealthCheck => "failed health check",
            Self::Broken => "reported broken",
            Self::Resize => "pool shrank",
        }
    }
}

/// Live counters shared by the pool, its manager wrapper and its background task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    created: AtomicU64,
    create_failures: AtomicU64,
    closed: [AtomicU64; 5],
    pub(crate) checkouts: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) leaks_suspected: AtomicU64,
    pub(crate) resizes: AtomicU64,
    pub(crate) wait: Histogram,
    pub(crate) usage: Histogram,
    last_create_error: Mutex<Option<(Instant, String)>>,
}

impl Counters {
    pub(crate) fn on_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_create_failed(&self, error: String) {
        self.create_failures.fetch_add(1, Ordering::Relaxed);
        *self.last_create_error.lock() = Some((Instant::now(), error));
    }

    pub(crate) fn on_closed(&self, reason: CloseReason) {
        self.on_closed_n(reason, 1);
    }

    pub(crate) fn on_closed_n(&self, reason: CloseReason, n: u64) {
        self.closed[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The last creation error if it happened at or after `since`.
    pub(crate) fn create_error_since(&self, since: Instant) -> Option<String> {
        self.last_create_error
            .lock()
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, error)| error.clone())
    }

    pub(crate) fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    pub(crate) fn create_failures(&self) -> u64 {
        self.create_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn closed(&self) -> ClosedStats {
        let get = |r: CloseReason| self.closed[r as usize].load(Ordering::Relaxed);
        ClosedStats {
            idle: get(CloseReason::Idle),
            lifetime: get(CloseReason::Lifetime),
            health_check: get(CloseReason::HealthCheck),
            broken: get(CloseReason::Broken),
            resize: get(CloseReason::Resize),
        }
    }
}

/// Connections closed, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ClosedStats {
    /// Idle longer than `idle_timeout`.
    pub idle: u64,
    /// Older than their (jittered) `max_lifetime`.
    pub lifetime: u64,
    /// Failed or timed out a health check.
    pub health_check: u64,
    /// Reported broken by a caller or a [`PoolLayer`](crate::PoolLayer).
    pub broken: u64,
    /// Dropped because the pool shrank.
    pub resize: u64,
}

impl ClosedStats {
    /// All closed connections.
    pub fn total(&self) -> u64 {
        self.idle + self.lifetime + self.health_check + self.broken + self.resize
    }
}

/// A point-in-time view of a pool, ready to serialize into a metrics endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    /// Current `max_size` (moves under adaptive sizing).
    pub max_size: usize,
    /// Open connections (in use plus idle).
    pub size: usize,
    /// Connections checked out.
    pub in_use: usize,
    /// Connections idle in the pool.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiters: usize,
    /// Connections created since start.
    pub created: u64,
    /// Failed creation attempts since start.
    pub create_failures: u64,
    /// Connections closed, by reason.
    pub closed: ClosedStats,
    /// Successful checkouts.
    pub checkouts: u64,
    /// Checkouts that timed out.
    pub timeouts: u64,
    /// Checkouts held past the leak-detection threshold.
    pub leaks_suspected: u64,
    /// Resizes applied (adaptive or manual).
    pub resizes: u64,
    /// Time spent waiting in `get()`.
    pub wait: LatencySummary,
    /// Time connections were held by callers.
    pub usage: LatencySummary,
}
