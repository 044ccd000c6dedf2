//! Building a batcher from code.

use crate::adaptive::AdaptiveLimit;
use crate::batcher::{Batcher, Owner};
use crate::config::{AdaptiveBatchConfig, BatchConfig, CloseMode};
use crate::queue::Queues;
use crate::shared::{HandlerFn, KeyFn, PriorityFn, Shared, State};
use crate::stats::Recorder;
use backstop_core::config::{ConfigError, Validate};
use parking_lot::Mutex;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Builds a [`Batcher`]: the handler, then config setters, grouping and priority.
pub struct BatcherBuilder<Req, Resp, K = ()> {
    pub(crate) config: BatchConfig,
    pub(crate) handler: HandlerFn<Req, Resp>,
    pub(crate) key_fn: KeyFn<Req, K>,
    pub(crate) priority_fn: PriorityFn<Req>,
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

    /// Turns on adaptive mode; see [`AdaptiveBatchConfig`].
    pub fn adaptive(mut self, target_latency: Duration, min_batch_size: usize) -> Self {
        self.config.adaptive = Some(AdaptiveBatchConfig {
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
