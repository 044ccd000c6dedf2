//! `BatchLayer`: a batch service behind a single-request `Service`.

use crate::batcher::Batcher;
use crate::builder::BatcherBuilder;
use crate::config::BatchConfig;
use crate::error::BoxError;
use crate::handler::BatchHandler;
use crate::shared::{KeyFn, PriorityFn, erase_handler};
use backstop_core::config::{ConfigError, Validate};
use backstop_core::{Layer, Service};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

/// Turns a service over batches (`Service<Vec<Req>, Response = Vec<Resp>>`) into a
/// [`Batcher`], which is a `Service<Req>` for single requests.
///
/// ```
/// use backstop_batch::{BatchConfig, BatchLayer};
/// use backstop_core::{Layer, Service, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let embed_many = service_fn(|texts: Vec<String>| async move {
///     Ok::<_, std::io::Error>(texts.into_iter().map(|t| t.len()).collect::<Vec<_>>())
/// });
/// let embed_one = BatchLayer::new(BatchConfig::default()).unwrap().layer(embed_many);
/// assert_eq!(embed_one.call("four".to_string()).await.unwrap(), 4);
/// # }
/// ```
pub struct BatchLayer<Req, K = ()> {
    config: BatchConfig,
    key_fn: KeyFn<Req, K>,
    priority_fn: PriorityFn<Req>,
}

impl<Req, K> Clone for BatchLayer<Req, K> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            key_fn: self.key_fn.clone(),
            priority_fn: self.priority_fn.clone(),
        }
    }
}

impl<Req, K> fmt::Debug for BatchLayer<Req, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<Req> BatchLayer<Req> {
    /// A layer with a validated config, no grouping and every request at level 0.
    pub fn new(config: BatchConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            key_fn: Arc::new(|_: &Req| ()),
            priority_fn: Arc::new(|_: &Req| 0),
        })
    }
}

impl<Req, K> BatchLayer<Req, K> {
    /// Groups requests by key; see [`BatcherBuilder::key`].
    pub fn key<K2, F>(self, key_fn: F) -> BatchLayer<Req, K2>
    where
        F: Fn(&Req) -> K2 + Send + Sync + 'static,
    {
        BatchLayer {
            config: self.config,
            key_fn: Arc::new(key_fn),
            priority_fn: self.priority_fn,
        }
    }

    /// Assigns priority levels; see [`BatcherBuilder::priority`].
    pub fn priority<F>(mut self, priority_fn: F) -> Self
    where
        F: Fn(&Req) -> usize + Send + Sync + 'static,
    {
        self.priority_fn = Arc::new(priority_fn);
        self
    }
}

/// Adapts a batch [`Service`] to a [`BatchHandler`].
struct ServiceHandler<S>(S);

impl<S, Req, Resp> BatchHandler<Req> for ServiceHandler<S>
where
    S: Service<Vec<Req>, Response = Vec<Resp>> + 'static,
    S::Error: Into<BoxError>,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;

    fn call(&self, batch: Vec<Req>) -> impl Future<Output = Result<Vec<Resp>, S::Error>> + Send {
        self.0.call(batch)
    }
}

impl<S, Req, Resp, K> Layer<S> for BatchLayer<Req, K>
where
    S: Service<Vec<Req>, Response = Vec<Resp>> + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Service = Batcher<Req, Resp, K>;

    fn layer(&self, inner: S) -> Batcher<Req, Resp, K> {
        let key_fn = self.key_fn.clone();
        let priority_fn = self.priority_fn.clone();
        BatcherBuilder::from_erased(erase_handler(ServiceHandler(inner)))
            .config(self.config.clone())
            .key(move |req: &Req| key_fn(req))
            .priority(move |req| priority_fn(req))
            .build_validated()
    }
}
