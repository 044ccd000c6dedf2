//! The batcher handle: construction, lifecycle (close when the last clone goes), stats.
//! Submitting is in `submit`, the batcher as a `Service` and a `LoadSignal` in `service`.

use crate::builder::BatcherBuilder;
use crate::config::BatchConfig;
use crate::handler::BatchHandler;
use crate::shared::{Routing, Shared, erase_handler};
use crate::stats::BatchStats;
use backstop_core::config::ConfigError;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
            routing: Routing::ungrouped(),
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
    pub(crate) fn shared(&self) -> &Arc<Shared<Req, Resp, K>> {
        &self.owner.0
    }

    /// Stops intake: later and waiting submits fail with
    /// [`BatchError::Closed`](crate::BatchError::Closed); queued items are flushed or failed
    /// according to [`BatchConfig::on_close`]. Batches already in the handler finish
    /// normally. Idempotent.
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
