//! What a provider said about a target's quota (its `x-ratelimit-remaining-*` and
//! `x-ratelimit-reset-*` headers): the source of truth when a key is shared with traffic
//! this router does not see.

use std::sync::atomic::{AtomicU64, Ordering};

/// One reported quota of one target, valid until its reset. The three words are written
/// together but read without a lock, so a read racing a new report may mix two recent
/// reports; either is a fair estimate.
#[derive(Debug, Default)]
pub(crate) struct ReportedQuota {
    remaining: AtomicU64,
    limit: AtomicU64,
    /// Nanoseconds since the router's origin when the report expires (0: no report).
    until: AtomicU64,
}

impl ReportedQuota {
    pub(crate) fn set(&self, remaining: u64, limit: u64, until: u64) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
        self.remaining
            .store(remaining.min(limit), Ordering::Relaxed);
        self.until.store(until, Ordering::Relaxed);
    }

    /// `(remaining, limit)` while the report holds.
    #[inline]
    pub(crate) fn view(&self, now: u64) -> Option<(u64, u64)> {
        if now >= self.until.load(Ordering::Relaxed) {
            return None;
        }
        Some((
            self.remaining.load(Ordering::Relaxed),
            self.limit.load(Ordering::Relaxed),
        ))
    }

    /// Nanoseconds until the report expires (when it holds), the time a refusal waits.
    pub(crate) fn left(&self, now: u64) -> u64 {
        self.until.load(Ordering::Relaxed).saturating_sub(now)
    }

    /// A call routed to the target spends `cost` of what was reported, until the next
    /// report replaces it.
    pub(crate) fn spend(&self, cost: u64, now: u64) {
        if self.view(now).is_some() {
            let _ = self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    Some(r.saturating_sub(cost))
                });
        }
    }
}
