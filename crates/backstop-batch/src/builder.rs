//! Building a batcher from code.

use crate::adaptive::AdaptiveLimit;
use crate::batcher::{Batcher, Owner};
use crate::config::{AdaptiveBatchConfig, BatchConfig, CloseMode};
use crate::queue::Queues;
use crate::shared::{HandlerFn, Routing, Shared, State};
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
    pub(crate) routing: Routing<Req, K>,
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

    backstop_core::config_setters! {
        BatchConfig;
        max_batch_size: usize,
        max_delay: Duration,
        queue_capacity: usize,
        queue_timeout: Some(Duration),
        max_concurrent_batches: usize,
        priority_levels: usize,
        /// See [`BatchConfig::priority_aging`]; `None` makes priorities strict.
        priority_aging: Option<Duration>,
        on_close: CloseMode,
    }

    /// See [`BatchConfig::preferred_batch_sizes`].
    pub fn preferred_batch_sizes(mut self, sizes: impl IntoIterator<Item = usize>) -> Self {
        self.config.preferred_batch_sizes = sizes.into_iter().collect();
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

    /// Groups requests: only requests with equal keys share a batch, and each key has its
    /// own queue and delay timer (e.g. model name and a temperature bucket).
    pub fn key<K2, F>(self, key_fn: F) -> BatcherBuilder<Req, Resp, K2>
    where
        F: Fn(&Req) -> K2 + Send + Sync + 'static,
    {
        BatcherBuilder {
            config: self.config,
            handler: self.handler,
            routing: self.routing.key(key_fn),
        }
    }

    /// Assigns each request a priority level (`0` lowest); values above the configured
    /// levels count as the highest level.
    pub fn priority<F>(mut self, priority_fn: F) -> Self
    where
        F: Fn(&Req) -> usize + Send + Sync + 'static,
    {
        self.routing = self.routing.priority(priority_fn);
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
            key_fn: self.routing.key_fn,
            priority_fn: self.routing.priority_fn,
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
