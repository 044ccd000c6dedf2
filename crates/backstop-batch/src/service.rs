//! The batcher seen from outside: a [`Service`] whose readiness is the queue's room, and a
//! [`LoadSignal`] for autoscalers.

use crate::batcher::Batcher;
use crate::error::BatchError;
use backstop_core::{LoadSignal, LoadSnapshot, RejectKind, Rejected, Service};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

impl<Req, Resp, K> LoadSignal for Batcher<Req, Resp, K>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// In-flight batches against `max_concurrent_batches`, queued items, and the queue
    /// wait of items dispatched over the last 10 to 20 seconds.
    fn load(&self) -> LoadSnapshot {
        let shared = self.shared();
        let counters = &shared.stats.counters;
        let waits = shared.stats.recent_waits(Instant::now());
        LoadSnapshot {
            in_flight: counters.in_flight.load(Ordering::Relaxed),
            queued: counters.queued.load(Ordering::Relaxed),
            capacity: Some(shared.config.max_concurrent_batches as u64),
            mean_wait: waits.mean(),
            p95_wait: waits.quantile(0.95),
        }
    }
}

impl<Req, Resp, K> Service<Req> for Batcher<Req, Resp, K>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Response = Resp;
    type Error = BatchError;

    fn call(&self, req: Req) -> impl Future<Output = Result<Resp, BatchError>> + Send {
        self.submit(req)
    }

    /// Not ready when closed, or when the queue is full (a `try_submit` now would be
    /// refused); charges nothing.
    fn readiness(&self) -> Result<(), Rejected> {
        let shared = self.shared();
        if shared.room.is_closed() {
            Err(Rejected::new(RejectKind::Closed))
        } else if shared.room.available_permits() == 0 {
            Err(Rejected::new(RejectKind::QueueFull))
        } else {
            Ok(())
        }
    }
}
