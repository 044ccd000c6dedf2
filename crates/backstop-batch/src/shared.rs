//! State shared by every handle, the dispatcher and the batch tasks.

use crate::adaptive::AdaptiveLimit;
use crate::config::{BatchConfig, CloseMode};
use crate::error::BatchError;
use crate::handler::BatchHandler;
use crate::queue::Queues;
use crate::stats::{Recorder, bump};
use backstop_core::BoxError;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{Notify, Semaphore, oneshot};

pub(crate) type Reply<Resp> = oneshot::Sender<Result<Resp, BatchError>>;
pub(crate) type HandlerFn<Req, Resp> =
    Arc<dyn Fn(Vec<Req>) -> BoxFuture<'static, Result<Vec<Resp>, BoxError>> + Send + Sync>;
pub(crate) type KeyFn<Req, K> = Arc<dyn Fn(&Req) -> K + Send + Sync>;
pub(crate) type PriorityFn<Req> = Arc<dyn Fn(&Req) -> usize + Send + Sync>;

/// How requests are grouped into batches and ranked in the queue: the closures a
/// [`BatcherBuilder`](crate::BatcherBuilder) and a [`BatchLayer`](crate::BatchLayer)
/// collect before a batcher exists.
pub(crate) struct Routing<Req, K> {
    pub(crate) key_fn: KeyFn<Req, K>,
    pub(crate) priority_fn: PriorityFn<Req>,
}

impl<Req> Routing<Req, ()> {
    /// No grouping, every request at level 0.
    pub(crate) fn ungrouped() -> Self {
        Self {
            key_fn: Arc::new(|_: &Req| ()),
            priority_fn: Arc::new(|_: &Req| 0),
        }
    }
}

impl<Req, K> Routing<Req, K> {
    pub(crate) fn key<K2>(
        self,
        key_fn: impl Fn(&Req) -> K2 + Send + Sync + 'static,
    ) -> Routing<Req, K2> {
        Routing {
            key_fn: Arc::new(key_fn),
            priority_fn: self.priority_fn,
        }
    }

    pub(crate) fn priority(
        self,
        priority_fn: impl Fn(&Req) -> usize + Send + Sync + 'static,
    ) -> Self {
        Self {
            key_fn: self.key_fn,
            priority_fn: Arc::new(priority_fn),
        }
    }
}

impl<Req, K> Clone for Routing<Req, K> {
    fn clone(&self) -> Self {
        Self {
            key_fn: self.key_fn.clone(),
            priority_fn: self.priority_fn.clone(),
        }
    }
}

/// A queued item: the request and where its result goes.
///
/// Each queued item holds one permit of `Shared::room`, forgotten when it is queued and
/// given back in bulk when items leave the queue (dispatch, removal, timeout), so a batch
/// of 64 releases its room with one semaphore operation instead of 64.
pub(crate) struct Item<Req, Resp> {
    pub(crate) req: Req,
    pub(crate) reply: Reply<Resp>,
}

pub(crate) struct State<K, Req, Resp> {
    pub(crate) queues: Queues<K, Item<Req, Resp>>,
    pub(crate) next_id: u64,
    pub(crate) closed: bool,
    pub(crate) dispatcher_started: bool,
}

pub(crate) struct Shared<Req, Resp, K> {
    pub(crate) config: BatchConfig,
    pub(crate) state: Mutex<State<K, Req, Resp>>,
    /// Wakes the dispatcher: a key may have become ready, a batch finished, or closing.
    pub(crate) wake: Notify,
    pub(crate) room: Semaphore,
    pub(crate) handler: HandlerFn<Req, Resp>,
    pub(crate) key_fn: KeyFn<Req, K>,
    pub(crate) priority_fn: PriorityFn<Req>,
    pub(crate) stats: Recorder,
    pub(crate) adaptive: Option<AdaptiveLimit>,
}

pub(crate) fn erase_handler<Req, H>(handler: H) -> HandlerFn<Req, H::Response>
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

impl<Req, Resp, K> Shared<Req, Resp, K> {
    /// The effective maximum batch size.
    pub(crate) fn limit(&self) -> usize {
        self.adaptive
            .as_ref()
            .map_or(self.config.max_batch_size, AdaptiveLimit::limit)
    }

    pub(crate) fn close(&self) {
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
