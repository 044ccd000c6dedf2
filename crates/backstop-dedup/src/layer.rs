use std::fmt;
use std::future::Future;
use std::sync::Arc;

use backstop_core::{Layer, Service};

use crate::error::DedupError;
use crate::group::Group;
use crate::outcome::Outcome;
use crate::window::DedupWindow;

/// Something that deduplicates work by key: a [`Group`], a [`DedupWindow`], or (feature
/// `redis`) a `DistributedGroup`.
///
/// [`DedupLayer`] is generic over it so one layer serves all of them.
pub trait Coalesce<V, E>: Clone + Send + Sync + 'static {
    /// The key identical requests share.
    type Key;

    /// Runs `work` once for every concurrent (or, for a window, recent) call with `key`.
    fn coalesce<F, Fut>(
        &self,
        key: Self::Key,
        work: F,
    ) -> impl Future<Output = Result<Outcome<V>, DedupError<E>>> + Send
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static;
}

impl<K, V, E> Coalesce<V, E> for Group<K, V, E>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    type Key = K;

    fn coalesce<F, Fut>(
        &self,
        key: K,
        work: F,
    ) -> impl Future<Output = Result<Outcome<V>, DedupError<E>>> + Send
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        self.work(key, work)
    }
}

impl<K, V, E> Coalesce<V, E> for DedupWindow<K, V, E>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    type Key = K;

    fn coalesce<F, Fut>(
        &self,
        key: K,
        work: F,
    ) -> impl Future<Output = Result<Outcome<V>, DedupError<E>>> + Send
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        self.work(key, work)
    }
}

#[cfg(feature = "redis")]
impl<K, V, E> Coalesce<V, E> for crate::distributed::DistributedGroup<K, V, E>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    type Key = K;

    fn coalesce<F, Fut>(
        &self,
        key: K,
        work: F,
    ) -> impl Future<Output = Result<Outcome<V>, DedupError<E>>> + Send
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        self.work(key, work)
    }
}

/// Wraps a [`Service`] so identical requests (same key, extracted by a closure) share
/// one call to the inner service.
///
/// Clones of the layer, and every service it builds, share the same [`Group`],
/// [`DedupWindow`] or `DistributedGroup`. Only the first request of a coalesced set reaches the inner
/// service; the others get clones of its response or error (as [`DedupError`]).
///
/// ```
/// use backstop_core::{Layer, Service, service_fn};
/// use backstop_dedup::{DedupLayer, Group};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let backend = service_fn(|prompt: String| async move {
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///     Ok::<_, String>(prompt.len())
/// });
/// let layer = DedupLayer::new(Group::new(), |prompt: &String| prompt.clone());
/// let service = layer.layer(backend);
/// let (a, b) = tokio::join!(service.call("hello".into()), service.call("hello".into()));
/// assert_eq!((a.unwrap(), b.unwrap()), (5, 5));
/// # }
/// ```
pub struct DedupLayer<D, F> {
    dedup: D,
    key_fn: Arc<F>,
}

impl<D, F> DedupLayer<D, F> {
    /// A layer deduplicating through `dedup`, keyed by `key_fn(&request)`.
    pub fn new(dedup: D, key_fn: F) -> Self {
        Self {
            dedup,
            key_fn: Arc::new(key_fn),
        }
    }
}

impl<D: Clone, F> Clone for DedupLayer<D, F> {
    fn clone(&self) -> Self {
        Self {
            dedup: self.dedup.clone(),
            key_fn: Arc::clone(&self.key_fn),
        }
    }
}

impl<D: fmt::Debug, F> fmt::Debug for DedupLayer<D, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupLayer")
            .field("dedup", &self.dedup)
            .finish_non_exhaustive()
    }
}

impl<S, D: Clone, F> Layer<S> for DedupLayer<D, F> {
    type Service = DedupService<S, D, F>;

    fn layer(&self, inner: S) -> Self::Service {
        DedupService {
            inner: Arc::new(inner),
            dedup: self.dedup.clone(),
            key_fn: Arc::clone(&self.key_fn),
        }
    }
}

/// The service built by [`DedupLayer`].
pub struct DedupService<S, D, F> {
    inner: Arc<S>,
    dedup: D,
    key_fn: Arc<F>,
}

impl<S, D: Clone, F> Clone for DedupService<S, D, F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            dedup: self.dedup.clone(),
            key_fn: Arc::clone(&self.key_fn),
        }
    }
}

impl<S, D: fmt::Debug, F> fmt::Debug for DedupService<S, D, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupService")
            .field("dedup", &self.dedup)
            .finish_non_exhaustive()
    }
}

impl<S, D, F, Req> Service<Req> for DedupService<S, D, F>
where
    S: Service<Req> + 'static,
    S::Response: Clone + Send + Sync + 'static,
    S::Error: Clone + Send + Sync + 'static,
    D: Coalesce<S::Response, S::Error>,
    F: Fn(&Req) -> D::Key + Send + Sync,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = DedupError<S::Error>;

    async fn call(&self, req: Req) -> Result<S::Response, DedupError<S::Error>> {
        let key = (self.key_fn)(&req);
        let inner = Arc::clone(&self.inner);
        self.dedup
            .coalesce(key, move || async move { inner.call(req).await })
            .await
            .map(Outcome::into_value)
    }
}
