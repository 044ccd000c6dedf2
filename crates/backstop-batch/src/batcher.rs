//! The batcher: callers submit single items, a dispatcher task forms batches.

use crate::builder::BatcherBuilder;
use crate::config::BatchConfig;
use crate::dispatch::dispatch;
use crate::error::BatchError;
use crate::handler::BatchHandler;
use crate::queue::Queued;
use crate::shared::{Item, Shared, erase_handler};
use crate::stats::{BatchStats, bump};
use backstop_core::config::ConfigError;
use backstop_core::{LoadSignal, LoadSnapshot, RejectKind, Rejected, Service, contain};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{SemaphorePermit, TryAcquireError, oneshot};
use tokio::time::Instant;

/// The owner handle: when the last clone of a [`Batcher`] goes, the batcher closes.
pub(crate) struct Owner<Req, Resp, K>(pub(crate) Arc<Shared<Req, Resp, K>>);

impl<Req, Resp, K> Drop for Owner<Req, Resp, K> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Gathers single requests into batches for a [`BatchHandler`] and hands each caller its
/// own item's result.
///
/// A batch for a key is dispatched when it reaches `max_batch_size`, when it reaches a
/// preferred size, or when its oldest item has waited `max_delay`, with at most
/// `max_concurrent_batches` batches in the handler at once. Clones share one queue; when
/// the last clone is dropped the batcher closes as if [`close`](Self::close) were called.
///
/// ```
/// use backstop_batch::Batcher;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher = Batcher::builder(|texts: Vec<String>| async move {
///         // One backend call for the whole batch.
///         Ok::<_, std::io::Error>(texts.iter().map(|t| t.len()).collect::<Vec<_>>())
///     })
///     .max_batch_size(16)
///     .max_delay(Duration::from_millis(2))
///     .build()
///     .unwrap();
///
/// let (a, b) = tokio::join!(batcher.submit("hello".into()), batcher.submit("hi".into()));
/// assert_eq!((a.unwrap(), b.unwrap()), (5, 2));
/// assert_eq!(batcher.stats().batches, 1);
/// # }
/// ```
pub struct Batcher<Req, Resp, K = ()> {
    pub(crate) owner: Arc<Owner<Req, Resp, K>>,
}

impl<Req, Resp, K> Clone for Batcher<Req, Resp, K> {
    fn clone(&self) -> Self {
        Self {
            owner: self.owner.clone(),
        }
    }
}

impl<Req, Resp, K> fmt::Debug for Batcher<Req, Resp, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.owner.0;
        f.debug_struct("Batcher")
            .field("config", &shared.config)
            .field(
                "queued",
                &shared.stats.counters.queued.load(Ordering::Relaxed),
            )
            .field(
                "in_flight",
                &shared.stats.counters.in_flight.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// A builder with the default [`BatchConfig`], no grouping and a single priority level.
    pub fn builder<H>(handler: H) -> BatcherBuilder<Req, Resp>
    where
        H: BatchHandler<Req, Response = Resp>,
    {
        BatcherBuilder {
            config: BatchConfig::default(),
            handler: erase_handler(handler),
            key_fn: Arc::new(|_: &Req| ()),
            priority_fn: Arc::new(|_: &Req| 0),
        }
    }

    /// A batcher from a validated config, with no grouping and a single priority level.
    pub fn new<H>(config: BatchConfig, handler: H) -> Result<Self, ConfigError>
    where
        H: BatchHandler<Req, Response = Resp>,
    {
        Self::builder(handler).config(config).build()
    }
}

impl<Req, Resp, K> Batcher<Req, Resp, K>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn shared(&self) -> &Arc<Shared<Req, Resp, K>> {
        &self.owner.0
    }

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

    /// Stops intake: later and waiting submits fail with [`BatchError::Closed`]; queued
    /// items are flushed or failed according to [`BatchConfig::on_close`]. Batches already
    /// in the handler finish normally. Idempotent.
    pub fn close(&self) {
        self.shared().close();
    }

    /// Whether [`close`](Self::close) was called (or every other handle was dropped).
    pub fn is_closed(&self) -> bool {
        self.shared().state.lock().closed
    }

    /// Counters, batch-size distribution and wait/latency percentiles.
    pub fn stats(&self) -> BatchStats {
        let shared = self.shared();
        shared.stats.snapshot(shared.limit())
    }

    /// The configuration this batcher runs with.
    pub fn config(&self) -> &BatchConfig {
        &self.shared().config
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
