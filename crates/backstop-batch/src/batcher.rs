//! The batcher: callers submit single items, a dispatcher task forms batches.

use crate::adaptive::AdaptiveLimit;
use crate::config::{AdaptiveConfig, BatchConfig, CloseMode};
use crate::error::{BatchError, BoxError};
use crate::handler::BatchHandler;
use crate::queue::{DispatchReason, Queued, Queues};
use crate::stats::{BatchStats, Recorder, bump};
use backstop_core::config::{ConfigError, Validate};
use backstop_core::{LoadSignal, LoadSnapshot, RejectKind, Rejected, Service, contain};
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, SemaphorePermit, TryAcquireError, oneshot};
use tokio::time::Instant;

type Reply<Resp> = oneshot::Sender<Result<Resp, BatchError>>;
pub(crate) type HandlerFn<Req, Resp> =
    Arc<dyn Fn(Vec<Req>) -> BoxFuture<'static, Result<Vec<Resp>, BoxError>> + Send + Sync>;
pub(crate) type KeyFn<Req, K> = Arc<dyn Fn(&Req) -> K + Send + Sync>;
pub(crate) type PriorityFn<Req> = Arc<dyn Fn(&Req) -> usize + Send + Sync>;

/// A queued item: the request and where its result goes.
///
/// Each queued item holds one permit of `Shared::room`, forgotten when it is queued and
/// given back in bulk when items leave the queue (dispatch, removal, timeout), so a batch
/// of 64 releases its room with one semaphore operation instead of 64.
struct Item<Req, Resp> {
    req: Req,
    reply: Reply<Resp>,
}

struct State<K, Req, Resp> {
    queues: Queues<K, Item<Req, Resp>>,
    next_id: u64,
    closed: bool,
    dispatcher_started: bool,
}

struct Shared<Req, Resp, K> {
    config: BatchConfig,
    state: Mutex<State<K, Req, Resp>>,
    /// Wakes the dispatcher: a key may have become ready, a batch finished, or closing.
    wake: Notify,
    room: Semaphore,
    handler: HandlerFn<Req, Resp>,
    key_fn: KeyFn<Req, K>,
    priority_fn: PriorityFn<Req>,
    stats: Recorder,
    adaptive: Option<AdaptiveLimit>,
}

/// The owner handle: when the last clone of a [`Batcher`] goes, the batcher closes.
struct Owner<Req, Resp, K>(Arc<Shared<Req, Resp, K>>);

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
    owner: Arc<Owner<Req, Resp, K>>,
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
            handler: erase(handler),
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

fn erase<Req, H>(handler: H) -> HandlerFn<Req, H::Response>
where
    Req: Send + 'static,
    H: BatchHandler<Req>,
{
    let handler = Arc::new(handler);
    Arc::new(move |batch| {
        let handler = handler.clone();
        Box::pin(async move { handler.call(batch).await.map_err(Into::into) })
    })
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

impl<Req, Resp, K> Shared<Req, Resp, K> {
    /// The effective maximum batch size.
    fn limit(&self) -> usize {
        self.adaptive
            .as_ref()
            .map_or(self.config.max_batch_size, AdaptiveLimit::limit)
    }

    fn close(&self) {
        let drained = {
            let mut state = self.state.lock();
            if state.closed {
                return;
            }
            state.closed = true;
            let drained = match self.config.on_close {
                CloseMode::Fail => state.queues.drain(),
                CloseMode::Flush => Vec::new(),
            };
            let queued_now = state.queues.len() as u64;
            self.stats
                .counters
                .queued
                .store(queued_now, Ordering::Relaxed);
            drained
        };
        self.room.close();
        tracing::debug!(
            failed = drained.len(),
            mode = ?self.config.on_close,
            "batcher closed"
        );
        self.room.add_permits(drained.len());
        bump(&self.stats.counters.rejected_closed, drained.len() as u64);
        for queued in drained {
            // The caller may be gone already; nothing to deliver then.
            let _ = queued.item.reply.send(Err(BatchError::Closed));
        }
        self.wake.notify_one();
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

/// Fails whatever is still queued if the dispatcher stops for any reason (including its
/// runtime shutting down), so no caller waits forever.
struct DispatcherExit<Req, Resp, K>(Arc<Shared<Req, Resp, K>>);

impl<Req, Resp, K> Drop for DispatcherExit<Req, Resp, K> {
    fn drop(&mut self) {
        let drained = {
            let mut state = self.0.state.lock();
            state.closed = true;
            state.queues.drain()
        };
        self.0.room.close();
        self.0.room.add_permits(drained.len());
        bump(&self.0.stats.counters.rejected_closed, drained.len() as u64);
        for queued in drained {
            let _ = queued.item.reply.send(Err(BatchError::Closed));
        }
    }
}

type Batch<Req, Resp> = (Vec<Queued<Item<Req, Resp>>>, DispatchReason);

/// What one planning step took out of the queue: timed-out items, and the next batch.
struct Step<Req, Resp> {
    now: Instant,
    expired: Vec<Queued<Item<Req, Resp>>>,
    batch: Option<Batch<Req, Resp>>,
}

impl<Req, Resp, K> Shared<Req, Resp, K>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Under the lock: takes out timed-out items and, when a batch slot is free, the batch
    /// that should go next. Shared by the dispatcher and the arrival that fills a batch.
    fn step(&self, state: &mut State<K, Req, Resp>, now: Instant) -> Step<Req, Resp> {
        let config = &self.config;
        let counters = &self.stats.counters;
        let expired = match config.queue_timeout {
            Some(timeout) => state.queues.expire(now, timeout),
            None => Vec::new(),
        };
        let mut batch = None;
        if counters.in_flight.load(Ordering::Acquire) < config.max_concurrent_batches as u64 {
            let closed = state.closed;
            if let Some(pick) = state.queues.pick(now, config, closed, self.limit()) {
                let items = state
                    .queues
                    .take(&pick.key, pick.size, now, config.priority_aging);
                counters.in_flight.fetch_add(1, Ordering::AcqRel);
                batch = Some((items, pick.reason));
            }
        }
        Step {
            now,
            expired,
            batch,
        }
    }

    /// Outside the lock: rejects the expired items and starts the batch, if any. Returns
    /// whether a batch was started.
    fn finish_step(self: &Arc<Self>, step: Step<Req, Resp>) -> bool {
        let Step {
            now,
            expired,
            batch,
        } = step;
        if let Some(timeout) = self.config.queue_timeout {
            self.room.add_permits(expired.len());
            bump(&self.stats.counters.rejected_timeout, expired.len() as u64);
            for queued in expired {
                let waited = now.saturating_duration_since(queued.enqueued);
                tracing::debug!(?waited, "batch item rejected after its queue timeout");
                let _ = queued
                    .item
                    .reply
                    .send(Err(BatchError::QueueTimeout { waited, timeout }));
            }
        }
        match batch {
            Some((items, reason)) => {
                run_batch(self.clone(), items, reason, now);
                true
            }
            None => false,
        }
    }
}

/// How long the dispatcher pauses after an iteration panicked.
const PANIC_PAUSE: Duration = Duration::from_millis(10);

async fn dispatch<Req, Resp, K>(shared: Arc<Shared<Req, Resp, K>>)
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    let exit = DispatcherExit(shared);
    let shared = &exit.0;
    let config = &shared.config;
    let counters = &shared.stats.counters;
    loop {
        // One iteration runs user code (the key type's `Hash` and `Eq`) under the queue
        // lock; a panic there must cost that iteration, not every later caller.
        let iteration = contain("batch.dispatcher", || {
            let (step, deadline, done) = {
                let mut state = shared.state.lock();
                let step = shared.step(&mut state, Instant::now());
                counters
                    .queued
                    .store(state.queues.len() as u64, Ordering::Relaxed);
                let can_dispatch = counters.in_flight.load(Ordering::Acquire)
                    < config.max_concurrent_batches as u64;
                let deadline = state.queues.next_deadline(config, can_dispatch);
                (step, deadline, state.closed && state.queues.is_empty())
            };
            (shared.finish_step(step), deadline, done)
        });
        let (started, deadline, done) = match iteration {
            Ok(iteration) => iteration,
            Err(panicked) => {
                bump(&counters.dispatcher_panics, 1);
                tracing::error!(%panicked, "batch dispatcher iteration panicked; continuing");
                // A pause, so a panic that recurs on every iteration cannot spin a core.
                tokio::time::sleep(PANIC_PAUSE).await;
                continue;
            }
        };
        if started {
            continue;
        }
        if done {
            return;
        }
        match deadline {
            Some(at) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// Frees the in-flight slot however the batch task ends.
struct InFlight<Req, Resp, K>(Arc<Shared<Req, Resp, K>>);

impl<Req, Resp, K> Drop for InFlight<Req, Resp, K> {
    fn drop(&mut self) {
        self.0
            .stats
            .counters
            .in_flight
            .fetch_sub(1, Ordering::AcqRel);
        self.0.wake.notify_one();
    }
}

fn run_batch<Req, Resp, K>(
    shared: Arc<Shared<Req, Resp, K>>,
    items: Vec<Queued<Item<Req, Resp>>>,
    reason: DispatchReason,
    now: Instant,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Send + Sync + 'static,
{
    let size = items.len();
    shared.room.add_permits(size);
    shared.stats.dispatched(size, reason);
    let mut requests = Vec::with_capacity(size);
    let mut replies = Vec::with_capacity(size);
    for queued in items {
        shared
            .stats
            .queue_wait
            .record(now.saturating_duration_since(queued.enqueued));
        requests.push(queued.item.req);
        replies.push(queued.item.reply);
    }
    tracing::trace!(size, ?reason, "batch dispatched");
    let slot = InFlight(shared);
    tokio::spawn(async move {
        let shared = &slot.0;
        let started = Instant::now();
        let outcome = call_handler(&shared.handler, requests).await;
        let latency = started.elapsed();
        shared.stats.handler_time.record(latency);
        if let Some(limit) = shared
            .adaptive
            .as_ref()
            .and_then(|adaptive| adaptive.observe(size, latency))
        {
            tracing::debug!(limit, ?latency, "adaptive batch size changed");
        }
        deliver(shared, replies, outcome);
        drop(slot);
    });
}

async fn call_handler<Req, Resp>(
    handler: &HandlerFn<Req, Resp>,
    requests: Vec<Req>,
) -> Result<Vec<Resp>, BatchError> {
    let expected = requests.len();
    let call = AssertUnwindSafe(async { handler(requests).await });
    match call.catch_unwind().await {
        Err(_) => Err(BatchError::HandlerPanicked),
        Ok(Err(error)) => Err(BatchError::Handler(Arc::from(error))),
        Ok(Ok(responses)) if responses.len() != expected => Err(BatchError::ResultCount {
            expected,
            got: responses.len(),
        }),
        Ok(Ok(responses)) => Ok(responses),
    }
}

fn deliver<Req, Resp, K>(
    shared: &Shared<Req, Resp, K>,
    replies: Vec<Reply<Resp>>,
    outcome: Result<Vec<Resp>, BatchError>,
) {
    let counters = &shared.stats.counters;
    let size = replies.len() as u64;
    let mut discarded = 0;
    match outcome {
        Ok(responses) => {
            bump(&counters.succeeded, size);
            for (reply, response) in replies.into_iter().zip(responses) {
                discarded += u64::from(reply.send(Ok(response)).is_err());
            }
        }
        Err(error) => {
            bump(&counters.failed, size);
            match &error {
                BatchError::HandlerPanicked => {
                    bump(&counters.handler_panics, 1);
                    tracing::error!(size, "batch handler panicked; failing its callers");
                }
                BatchError::ResultCount { expected, got } => {
                    bump(&counters.result_count_mismatches, 1);
                    tracing::warn!(expected, got, "batch handler returned a wrong result count");
                }
                other => {
                    bump(&counters.handler_errors, 1);
                    tracing::warn!(error = %other, size, "batch handler failed");
                }
            }
            for reply in replies {
                discarded += u64::from(reply.send(Err(error.clone())).is_err());
            }
        }
    }
    bump(&counters.discarded, discarded);
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

/// Builds a [`Batcher`]: the handler, then config setters, grouping and priority.
pub struct BatcherBuilder<Req, Resp, K = ()> {
    config: BatchConfig,
    handler: HandlerFn<Req, Resp>,
    key_fn: KeyFn<Req, K>,
    priority_fn: PriorityFn<Req>,
}

impl<Req, Resp, K> fmt::Debug for BatcherBuilder<Req, Resp, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatcherBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<Req, Resp, K> BatcherBuilder<Req, Resp, K>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Replaces the whole configuration (e.g. one deserialized from a file).
    pub fn config(mut self, config: BatchConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`BatchConfig::max_batch_size`].
    pub fn max_batch_size(mut self, size: usize) -> Self {
        self.config.max_batch_size = size;
        self
    }

    /// See [`BatchConfig::max_delay`].
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.config.max_delay = delay;
        self
    }

    /// See [`BatchConfig::preferred_batch_sizes`].
    pub fn preferred_batch_sizes(mut self, sizes: impl IntoIterator<Item = usize>) -> Self {
        self.config.preferred_batch_sizes = sizes.into_iter().collect();
        self
    }

    /// See [`BatchConfig::queue_capacity`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = capacity;
        self
    }

    /// See [`BatchConfig::queue_timeout`].
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.config.queue_timeout = Some(timeout);
        self
    }

    /// See [`BatchConfig::max_concurrent_batches`].
    pub fn max_concurrent_batches(mut self, batches: usize) -> Self {
        self.config.max_concurrent_batches = batches;
        self
    }

    /// See [`BatchConfig::priority_levels`].
    pub fn priority_levels(mut self, levels: usize) -> Self {
        self.config.priority_levels = levels;
        self
    }

    /// See [`BatchConfig::priority_aging`]; `None` makes priorities strict.
    pub fn priority_aging(mut self, aging: Option<Duration>) -> Self {
        self.config.priority_aging = aging;
        self
    }

    /// Turns on adaptive mode; see [`AdaptiveConfig`].
    pub fn adaptive(mut self, target_latency: Duration, min_batch_size: usize) -> Self {
        self.config.adaptive = Some(AdaptiveConfig {
            target_latency,
            min_batch_size,
        });
        self
    }

    /// See [`BatchConfig::on_close`].
    pub fn on_close(mut self, mode: CloseMode) -> Self {
        self.config.on_close = mode;
        self
    }

    /// Groups requests: only requests with equal keys share a batch, and each key has its
    /// own queue and delay timer (e.g. model name and a temperature bucket).
    pub fn key<K2, F>(self, key_fn: F) -> BatcherBuilder<Req, Resp, K2>
    where
        F: Fn(&Req) -> K2 + Send + Sync + 'static,
    {
        BatcherBuilder {
            config: self.config,
            handler: self.handler,
            key_fn: Arc::new(key_fn),
            priority_fn: self.priority_fn,
        }
    }

    /// Assigns each request a priority level (`0` lowest); values above the configured
    /// levels count as the highest level.
    pub fn priority<F>(mut self, priority_fn: F) -> Self
    where
        F: Fn(&Req) -> usize + Send + Sync + 'static,
    {
        self.priority_fn = Arc::new(priority_fn);
        self
    }

    /// Validates the configuration and builds the batcher. The dispatcher task starts on
    /// the first submit, on that caller's tokio runtime.
    pub fn build(self) -> Result<Batcher<Req, Resp, K>, ConfigError> {
        self.config.validate()?;
        Ok(self.build_validated())
    }

    pub(crate) fn build_validated(self) -> Batcher<Req, Resp, K> {
        let config = self.config;
        let shared = Shared {
            state: Mutex::new(State {
                queues: Queues::new(config.priority_levels),
                next_id: 0,
                closed: false,
                dispatcher_started: false,
            }),
            wake: Notify::new(),
            room: Semaphore::new(config.queue_capacity),
            handler: self.handler,
            key_fn: self.key_fn,
            priority_fn: self.priority_fn,
            stats: Recorder::new(config.max_batch_size),
            adaptive: config
                .adaptive
                .as_ref()
                .map(|adaptive| AdaptiveLimit::new(adaptive, config.max_batch_size)),
            config,
        };
        Batcher {
            owner: Arc::new(Owner(Arc::new(shared))),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> BatcherBuilder<Req, Resp> {
    pub(crate) fn from_erased(handler: HandlerFn<Req, Resp>) -> Self {
        Self {
            config: BatchConfig::default(),
            handler,
            key_fn: Arc::new(|_: &Req| ()),
            priority_fn: Arc::new(|_: &Req| 0),
        }
    }
}

pub(crate) fn erase_handler<Req, H>(handler: H) -> HandlerFn<Req, H::Response>
where
    Req: Send + 'static,
    H: BatchHandler<Req>,
{
    erase(handler)
}
