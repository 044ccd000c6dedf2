//! The dispatcher task and the batch tasks: planning steps, running the handler,
//! delivering each caller its result.

use crate::error::BatchError;
use crate::queue::{DispatchReason, Queued};
use crate::shared::{HandlerFn, Item, Reply, Shared, State};
use crate::stats::bump;
use backstop_core::contain;
use futures::FutureExt;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Fails whatever is still queued if the dispatcher stops for any reason (including its
/// runtime shutting down), so no caller waits forever.
pub(crate) struct DispatcherExit<Req, Resp, K>(Arc<Shared<Req, Resp, K>>);

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
pub(crate) struct Step<Req, Resp> {
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
    pub(crate) fn step(&self, state: &mut State<K, Req, Resp>, now: Instant) -> Step<Req, Resp> {
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
    pub(crate) fn finish_step(self: &Arc<Self>, step: Step<Req, Resp>) -> bool {
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

pub(crate) async fn dispatch<Req, Resp, K>(shared: Arc<Shared<Req, Resp, K>>)
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
