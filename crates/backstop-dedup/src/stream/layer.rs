//! `StreamDedupLayer`: identical streamed requests through any service share one upstream.

use std::hash::Hash;
use std::sync::Arc;

use backstop_core::{Rejected, Service, StackError, record_key_hash};
use futures::Stream;
use tracing::Instrument;

use super::group::StreamGroup;
use super::shared::SharedStream;
use crate::layer::{DedupKey, keyed_layer};

keyed_layer! {
    /// Wraps a streaming [`Service`] (its response is a `Stream` of `Result<T, S::Error>`
    /// chunks) so identical requests in flight share one upstream stream through a
    /// [`StreamGroup`].
    ///
    /// `StreamDedupLayer::new(group)` keys requests by the request itself;
    /// [`key`](Self::key) sets a closure that extracts the key. The service's response is a
    /// [`SharedStream`]; its error type is the inner service's own (`S::Error: StackError`),
    /// so it stacks with every other Backstop layer. `call` returns at once: the inner
    /// service is called (once per shared stream) when the stream is first polled, and a
    /// failure to open it is the stream's first item, as a failure mid-stream is a later one.
    ///
    /// ```
    /// use backstop_core::{Error, Layer, Service, ServiceExt, service_fn};
    /// use backstop_dedup::{StreamDedupLayer, StreamGroup};
    /// use futures::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let model = service_fn(|prompt: String| async move {
    ///     let tokens = prompt.split(' ').map(|t| Ok(t.to_string())).collect::<Vec<_>>();
    ///     Ok::<_, Error<std::io::Error>>(futures::stream::iter(tokens))
    /// });
    /// let group = StreamGroup::new();
    /// let service = StreamDedupLayer::new(group.clone()).layer(model);
    /// let (a, b) = tokio::join!(service.call("hello there".into()), service.call("hello there".into()));
    /// let (a, b) = tokio::join!(a.unwrap().collect::<Vec<_>>(), b.unwrap().collect::<Vec<_>>());
    /// assert_eq!(a.len(), 2);
    /// assert_eq!(b[1].as_deref().unwrap(), "there");
    /// assert_eq!(group.stats().streams, 1);
    /// # }
    /// ```
    pub struct StreamDedupLayer<G>;
    /// The service built by [`StreamDedupLayer`]; its error is the inner service's.
    pub struct StreamDedupService;
    handle group;
    /// A layer sharing streams through `group`, keyed by the request itself until
    /// [`key`](Self::key) says otherwise.
    fn new;
    /// The group this layer shares streams through.
    fn group
}

impl<S, St, T, K, Req> Service<Req> for StreamDedupService<S, StreamGroup<K::Key, T, S::Error>, K>
where
    S: Service<Req, Response = St> + 'static,
    S::Error: StackError,
    St: Stream<Item = Result<T, S::Error>> + Send + 'static,
    T: Clone + Send + Sync + 'static,
    K: DedupKey<Req>,
    K::Key: Hash + Eq + Clone + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = SharedStream<T, S::Error>;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<SharedStream<T, S::Error>, S::Error> {
        // One span per call (issue 27); disabled without a subscriber. The upstream, if
        // this call opens it, opens inside the span, so the layers below nest under it.
        let span = backstop_core::layer_span!("backstop.stream_dedup", key_hash);
        let key = self.key.key_of(&req);
        let inner = Arc::clone(&self.inner);
        if span.is_disabled() {
            return Ok(self
                .group
                .share(key, move || async move { inner.call(req).await }));
        }
        record_key_hash(&span, &key);
        let open = span.clone();
        let stream = span.in_scope(|| {
            self.group.share(key, move || {
                async move { inner.call(req).await }.instrument(open)
            })
        });
        // Sharing never refuses: a failure to open is the stream's first item.
        span.record("outcome", "ok");
        Ok(stream)
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
