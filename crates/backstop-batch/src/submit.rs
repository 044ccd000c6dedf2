//! Submitting an item: room in the queue, its key and priority, the inline dispatch of a
//! batch it completes, and its removal if the caller stops waiting before dispatch.

use crate::batcher::Batcher;
use crate::dispatch::dispatch;
use crate::error::BatchError;
use crate::queue::Queued;
use crate::shared::{Item, Shared};
use crate::stats::bump;
use backstop_core::contain;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use tokio::sync::{SemaphorePermit, TryAcquireError, oneshot};
use tokio::time::Instant;

impl<Req, Resp, K> Batcher<Req, Resp, K>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Queues `req`, waiting for room if the queue is full, and returns its own result once
    /// its batch has run. Dropping the future before dispatch removes the item.
    pub async fn submit(&self, req: Req) -> Result<Resp, BatchError> {
        let shared = self.shared();
        let Ok(room) = shared.room.acquire().await else {
            bump(&shared.stats.counters.rejected_closed, 1);
            return Err(BatchError::Closed);
        };
        self.enqueue(req, room).await
    }

    /// Like [`submit`](Self::submit) but fails at once with [`BatchError::QueueFull`]
    /// instead of waiting for room.
    pub async fn try_submit(&self, req: Req) -> Result<Resp, BatchError> {
        let shared = self.shared();
        let room = match shared.room.try_acquire() {
            Ok(room) => room,
            Err(TryAcquireError::NoPermits) => {
                bump(&shared.stats.counters.rejected_full, 1);
                return Err(BatchError::QueueFull);
            }
            Err(TryAcquireError::Closed) => {
                bump(&shared.stats.counters.rejected_closed, 1);
                return Err(BatchError::Closed);
            }
        };
        self.enqueue(req, room).await
    }

    async fn enqueue(&self, req: Req, room: SemaphorePermit<'_>) -> Result<Resp, BatchError> {
        let shared = self.shared();
        let grouping = contain("batch.key", || {
            let key = (shared.key_fn)(&req);
            (key, (shared.priority_fn)(&req))
        });
        let (key, level) = match grouping {
            Ok((key, level)) => (key, level.min(shared.config.priority_levels - 1)),
            Err(panicked) => {
                bump(&shared.stats.counters.callback_panics, 1);
                tracing::error!(%panicked, "batch key or priority closure panicked");
                return Err(BatchError::Panicked(panicked));
            }
        };
        let (reply, result) = oneshot::channel();
        let (id, key_len, step, queued_now) = {
            let mut state = shared.state.lock();
            if state.closed {
                drop(state);
                bump(&shared.stats.counters.rejected_closed, 1);
                return Err(BatchError::Closed);
            }
            if !state.dispatcher_started {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return Err(BatchError::NoRuntime);
                };
                runtime.spawn(dispatch(shared.clone()));
                state.dispatcher_started = true;
            }
            let id = state.next_id;
            state.next_id += 1;
            let queued = Queued {
                id,
                enqueued: Instant::now(),
                item: Item { req, reply },
            };
            let key_len = state.queues.push(key.clone(), level, queued);
            room.forget();
            let config = &shared.config;
            // The arrival that makes a batch ready dispatches it itself, exactly as the
            // dispatcher would, saving a task hop on the hot path.
            let step = (key_len >= shared.limit()
                || config.preferred_batch_sizes.contains(&key_len))
            .then(|| shared.step(&mut state, Instant::now()));
            let queued_now = state.queues.len() as u64;
            shared
                .stats
                .counters
                .queued
                .store(queued_now, Ordering::Relaxed);
            (id, key_len, step, queued_now)
        };
        bump(&shared.stats.counters.submitted, 1);
        let dispatched = match step {
            Some(step) => shared.finish_step(step),
            None => false,
        };
        // A new key starts a timer, and after an inline dispatch another key may be ready
        // for a free slot. A batch left waiting for a slot is picked up when one frees
        // (finishing batches wake the dispatcher); other arrivals change nothing.
        if key_len == 1 || (dispatched && queued_now > 0) {
            shared.wake.notify_one();
        }
        let mut pending = Pending {
            shared,
            key: Some(key),
            level,
            id,
        };
        let outcome = result.await;
        pending.key = None;
        outcome.unwrap_or(Err(BatchError::Closed))
    }
}

/// Removes the item from the queue if its caller stops waiting before dispatch.
struct Pending<'a, Req, Resp, K: Hash + Eq + Clone> {
    shared: &'a Shared<Req, Resp, K>,
    key: Option<K>,
    level: usize,
    id: u64,
}

impl<Req, Resp, K: Hash + Eq + Clone> Drop for Pending<'_, Req, Resp, K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let removed = {
            let mut state = self.shared.state.lock();
            let removed = state.queues.remove(&key, self.level, self.id);
            let queued_now = state.queues.len() as u64;
            self.shared
                .stats
                .counters
                .queued
                .store(queued_now, Ordering::Relaxed);
            removed
        };
        if removed.is_some() {
            self.shared.room.add_permits(1);
            bump(&self.shared.stats.counters.cancelled, 1);
        }
    }
}
