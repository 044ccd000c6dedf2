//! `BatchLayer`: a batch service behind a single-request `Service`.

use crate::batcher::Batcher;
use crate::builder::BatcherBuilder;
use crate::config::BatchConfig;
use crate::error::BatchError;
use crate::shared::{Routing, erase_handler};
use backstop_core::config::{ConfigError, Validate};
use backstop_core::{Layer, Panicked, Rejected, Service, StackError, contain, in_span, key_hash};
use futures::TryFutureExt;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

/// Turns a service over batches (`Service<Vec<Req>, Response = Vec<Resp>>`) into a
/// [`BatchService`], a `Service<Req>` for single requests with the batch service's own
/// error type.
///
/// A failed batch reaches every caller in it as the same error, shared
/// (`StackError::shared`), so the batch service's error stays typed and needs no `Clone`.
/// A full queue, a queue timeout or a closed batcher is `StackError::rejected`; a panic in
/// the handler or the key and priority closures is `StackError::panicked`.
///
/// ```
/// use backstop_batch::{BatchConfig, BatchLayer};
/// use backstop_core::{Error, Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let embed_many = service_fn(|texts: Vec<String>| async move {
///     if texts.iter().any(String::is_empty) {
///         return Err(std::io::Error::other("empty text"));
///     }
///     Ok(texts.into_iter().map(|t| t.len()).collect::<Vec<_>>())
/// })
/// .lift();
/// let embed_one = BatchLayer::new(BatchConfig::default()).unwrap().layer(embed_many);
/// assert_eq!(embed_one.call("four".to_string()).await.unwrap(), 4);
/// let failed = embed_one.call(String::new()).await.unwrap_err();
/// assert_eq!(failed.inner().unwrap().to_string(), "empty text"); // typed, not erased
/// # }
/// ```
pub struct BatchLayer<Req, K = ()> {
    config: BatchConfig,
    routing: Routing<Req, K>,
}

impl<Req, K> Clone for BatchLayer<Req, K> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            routing: self.routing.clone(),
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
            routing: Routing::ungrouped(),
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
            routing: self.routing.key(key_fn),
        }
    }

    /// Assigns priority levels; see [`BatcherBuilder::priority`].
    pub fn priority<F>(mut self, priority_fn: F) -> Self
    where
        F: Fn(&Req) -> usize + Send + Sync + 'static,
    {
        self.routing = self.routing.priority(priority_fn);
        self
    }
}

/// A batch service's error, carried through the batcher's type-erased handler so the
/// layer's service can hand the same typed error to every caller of the batch.
struct BatchFailure<E>(Arc<E>);

impl<E> fmt::Debug for BatchFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BatchFailure")
    }
}

impl<E> fmt::Display for BatchFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the batch service failed")
    }
}

impl<E> std::error::Error for BatchFailure<E> {}

/// Adapts a batch [`Service`] to the batcher's handler, keeping its error typed.
struct ServiceHandler<S>(S);

impl<S, Req, Resp> crate::BatchHandler<Req> for ServiceHandler<S>
where
    S: Service<Vec<Req>, Response = Vec<Resp>> + 'static,
    S::Error: StackError,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Error = BatchFailure<S::Error>;

    fn call(
        &self,
        batch: Vec<Req>,
    ) -> impl Future<Output = Result<Vec<Resp>, BatchFailure<S::Error>>> + Send {
        self.0
            .call(batch)
            .map_err(|error| BatchFailure(Arc::new(error)))
    }
}

impl<S, Req, Resp, K> Layer<S> for BatchLayer<Req, K>
where
    S: Service<Vec<Req>, Response = Vec<Resp>> + 'static,
    S::Error: StackError,
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Service = BatchService<Req, Resp, S::Error, K>;

    fn layer(&self, inner: S) -> Self::Service {
        let batcher = BatcherBuilder {
            config: self.config.clone(),
            handler: erase_handler(ServiceHandler(inner)),
            routing: self.routing.clone(),
        }
        .build_validated();
        BatchService {
            batcher,
            error: PhantomData,
        }
    }
}

/// A single-request service over a batch service, made by [`BatchLayer`]; its error is
/// the batch service's own.
pub struct BatchService<Req, Resp, E, K = ()> {
    batcher: Batcher<Req, Resp, K>,
    error: PhantomData<fn() -> E>,
}

impl<Req, Resp, E, K> Clone for BatchService<Req, Resp, E, K> {
    fn clone(&self) -> Self {
        Self {
            batcher: self.batcher.clone(),
            error: PhantomData,
        }
    }
}

impl<Req, Resp, E, K> fmt::Debug for BatchService<Req, Resp, E, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchService")
            .field("batcher", &self.batcher)
            .finish()
    }
}

impl<Req, Resp, E, K> BatchService<Req, Resp, E, K> {
    /// The batcher behind the service, for `stats()`, `close()` and its load signal.
    pub fn batcher(&self) -> &Batcher<Req, Resp, K> {
        &self.batcher
    }
}

impl<Req, Resp, E, K> Service<Req> for BatchService<Req, Resp, E, K>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    E: StackError,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Response = Resp;
    type Error = E;

    async fn call(&self, req: Req) -> Result<Resp, E> {
        // One span per call (issue 27); disabled without a subscriber.
        let span = backstop_core::layer_span!("backstop.batch", key_hash);
        // The batcher runs the key closure again under `contain` (only when a subscriber
        // listens); a panic here is contained too and leaves the span without a key.
        if !span.is_disabled()
            && let Ok(key) = contain("batch.key", || (self.batcher.shared().key_fn)(&req))
        {
            span.record("key_hash", key_hash(&key));
        }
        in_span(&span, || async {
            self.batcher.submit(req).await.map_err(stack_error)
        })
        .await
    }

    fn readiness(&self) -> Result<(), Rejected> {
        Service::readiness(&self.batcher)
    }
}

/// The batcher's outcome in the stack's vocabulary.
fn stack_error<E: StackError>(error: BatchError) -> E {
    if let Some(rejected) = error.rejection() {
        return E::rejected(rejected);
    }
    match error {
        BatchError::Handler(failure) => match failure.downcast_ref::<BatchFailure<E>>() {
            Some(BatchFailure(shared)) => E::shared(shared.clone()),
            // Only `ServiceHandler` feeds this batcher, so every handler error is its own.
            None => E::backend(failure),
        },
        BatchError::Panicked(panicked) => E::panicked(panicked),
        BatchError::HandlerPanicked => E::panicked(Panicked::from_payload(
            "batch handler",
            &"the batch handler panicked",
        )),
        other => E::backend(Arc::new(other)),
    }
}
