use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use backstop_core::{Rejected, Service, StackError, in_span, record_key_hash};

use crate::error::DedupError;
use crate::group::Group;
use crate::outcome::DedupOutcome;
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
    ) -> impl Future<Output = Result<DedupOutcome<V>, DedupError<E>>> + Send
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static;
}

// Every deduplicator coalesces with its own `work`; the distributed group also needs keys
// it can print into Redis and values it can serialize.
macro_rules! coalesce_with_work {
    ($(#[$attr:meta])* $dedup:ty, key: [$($key:tt)*], value: [$($value:tt)*]) => {
        $(#[$attr])*
        impl<K, V, E> Coalesce<V, E> for $dedup
        where
            K: std::hash::Hash + Eq + Clone + Send + Sync + 'static $($key)*,
            V: Clone + Send + Sync + 'static $($value)*,
            E: Clone + Send + Sync + 'static,
        {
            type Key = K;

            fn coalesce<F, Fut>(
                &self,
                key: K,
                work: F,
            ) -> impl Future<Output = Result<DedupOutcome<V>, DedupError<E>>> + Send
            where
                F: FnOnce() -> Fut + Send + 'static,
                Fut: Future<Output = Result<V, E>> + Send + 'static,
            {
                self.work(key, work)
            }
        }
    };
}

coalesce_with_work!(Group<K, V, E>, key: [], value: []);
coalesce_with_work!(DedupWindow<K, V, E>, key: [], value: []);
coalesce_with_work!(
    #[cfg(feature = "redis")]
    crate::distributed::DistributedGroup<K, V, E>,
    key: [+ std::fmt::Display],
    value: [+ serde::Serialize + serde::de::DeserializeOwned]
);

// A keyed layer and the service it builds hold a cheap-clone handle and the shared key
// extractor; only the handle differs between the coalescing and the stream layers. This
// declares both and writes their constructor, builder, accessor, clones, debug output
// and `Layer` once. (`Debug` and `Clone` are by hand so the key closure need be neither.)
macro_rules! keyed_layer {
    (
        $(#[$layer_doc:meta])* pub struct $layer:ident<$H:ident>;
        $(#[$service_doc:meta])* pub struct $service:ident;
        handle $handle:ident;
        $(#[$new_doc:meta])* fn new;
        $(#[$doc:meta])* fn $accessor:ident
    ) => {
        $(#[$layer_doc])*
        pub struct $layer<$H, K = $crate::layer::RequestKey> {
            $handle: $H,
            key: std::sync::Arc<K>,
        }

        $(#[$service_doc])*
        pub struct $service<S, $H, K = $crate::layer::RequestKey> {
            inner: std::sync::Arc<S>,
            $handle: $H,
            key: std::sync::Arc<K>,
        }

        impl<$H> $layer<$H> {
            $(#[$new_doc])*
            pub fn new($handle: $H) -> Self {
                Self {
                    $handle,
                    key: std::sync::Arc::new($crate::layer::RequestKey),
                }
            }
        }

        impl<$H, K> $layer<$H, K> {
            /// Keys requests by `key(&request)`.
            pub fn key<F>(self, key: F) -> $layer<$H, F> {
                $layer {
                    $handle: self.$handle,
                    key: std::sync::Arc::new(key),
                }
            }

            $(#[$doc])*
            pub fn $accessor(&self) -> &$H {
                &self.$handle
            }
        }

        impl<$H: Clone, K> Clone for $layer<$H, K> {
            fn clone(&self) -> Self {
                Self {
                    $handle: self.$handle.clone(),
                    key: std::sync::Arc::clone(&self.key),
                }
            }
        }

        impl<$H: std::fmt::Debug, K> std::fmt::Debug for $layer<$H, K> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($layer))
                    .field(stringify!($handle), &self.$handle)
                    .finish_non_exhaustive()
            }
        }

        impl<S, $H: Clone, K> backstop_core::Layer<S> for $layer<$H, K> {
            type Service = $service<S, $H, K>;

            fn layer(&self, inner: S) -> Self::Service {
                $service {
                    inner: std::sync::Arc::new(inner),
                    $handle: self.$handle.clone(),
                    key: std::sync::Arc::clone(&self.key),
                }
            }
        }

        impl<S, $H: Clone, K> Clone for $service<S, $H, K> {
            fn clone(&self) -> Self {
                Self {
                    inner: std::sync::Arc::clone(&self.inner),
                    $handle: self.$handle.clone(),
                    key: std::sync::Arc::clone(&self.key),
                }
            }
        }

        impl<S, $H: std::fmt::Debug, K> std::fmt::Debug for $service<S, $H, K> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($service))
                    .field(stringify!($handle), &self.$handle)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use keyed_layer;

/// How a [`DedupLayer`] finds the key of a request: a closure `Fn(&Req) -> Key` given
/// to [`DedupLayer::key`], or [`RequestKey`] (the request itself is the key).
pub trait DedupKey<Req>: Send + Sync {
    /// The key identical requests share.
    type Key;
    /// The key of `request`.
    fn key_of(&self, request: &Req) -> Self::Key;
}

impl<F, Req, K> DedupKey<Req> for F
where
    F: Fn(&Req) -> K + Send + Sync,
{
    type Key = K;

    fn key_of(&self, request: &Req) -> K {
        self(request)
    }
}

/// The default key of a [`DedupLayer`]: a clone of the request itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestKey;

impl<Req: Clone> DedupKey<Req> for RequestKey {
    type Key = Req;

    fn key_of(&self, request: &Req) -> Req {
        request.clone()
    }
}

keyed_layer! {
    /// Wraps a [`Service`] so identical requests (same key) share one call to the inner
    /// service.
    ///
    /// `DedupLayer::new(handle)` keys requests by the request itself; [`key`](DedupLayer::key)
    /// sets a closure that extracts the key. Clones of the layer, and every service it
    /// builds, share the same [`Group`], [`DedupWindow`] or `DistributedGroup` (cheap-clone
    /// handles). Only the first request of a coalesced set reaches the inner service; the
    /// others get clones of its response, or its error shared through
    /// [`StackError::shared`], so the service's error is the inner service's own `S::Error`
    /// and need not be `Clone`. The handle's error type is therefore `Arc<S::Error>`.
    ///
    /// ```
    /// use backstop_core::{Error, Layer, Service, ServiceExt, service_fn};
    /// use backstop_dedup::{DedupLayer, Group};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let backend = service_fn(|prompt: String| async move {
    ///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    ///     Ok::<_, std::io::Error>(prompt.len())
    /// })
    /// .lift();
    /// let layer = DedupLayer::new(Group::new()).key(|prompt: &String| prompt.to_lowercase());
    /// let service = layer.layer(backend);
    /// let (a, b) = tokio::join!(service.call("hello".into()), service.call("HELLO".into()));
    /// assert_eq!((a.unwrap(), b.unwrap()), (5, 5));
    /// # let _: Option<Error<std::io::Error>> = None;
    /// # }
    /// ```
    pub struct DedupLayer<D>;
    /// The service built by [`DedupLayer`]; its error is the inner service's.
    pub struct DedupService;
    handle dedup;
    /// A layer deduplicating through `dedup`, keyed by the request itself until
    /// [`key`](DedupLayer::key) says otherwise.
    fn new;
    /// The deduplicating handle this layer shares.
    fn handle
}

impl<S, D, K, Req> Service<Req> for DedupService<S, D, K>
where
    S: Service<Req> + 'static,
    S::Response: Clone + Send + Sync + 'static,
    S::Error: StackError,
    D: Coalesce<S::Response, Arc<S::Error>, Key = K::Key>,
    K: DedupKey<Req>,
    K::Key: Hash,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<S::Response, S::Error> {
        let span = backstop_core::layer_span!("backstop.dedup", key_hash, shared);
        in_span(&span, || async {
            // Hashed in a block of its own: a borrowed local would count as held across the
            // await below, and the key need not be `Send`.
            let key = {
                let key = self.key.key_of(&req);
                record_key_hash(&span, &key);
                key
            };
            let inner = Arc::clone(&self.inner);
            let work = move || async move { inner.call(req).await.map_err(Arc::new) };
            match self.dedup.coalesce(key, work).await {
                Ok(outcome) => {
                    span.record("shared", outcome.shared);
                    Ok(outcome.into_value())
                }
                // The only holder when nobody joined: the caller gets the error itself.
                Err(DedupError::Inner(error)) => {
                    Err(Arc::try_unwrap(error).unwrap_or_else(S::Error::shared))
                }
                Err(DedupError::Panicked(panicked)) => Err(S::Error::panicked(panicked)),
                Err(DedupError::Rejected(rejected)) => Err(S::Error::rejected(rejected)),
                // A misconfigured Redis refuses the call (logged as an error by the group).
                #[cfg(feature = "redis")]
                Err(DedupError::Misconfigured(_)) => Err(S::Error::rejected(Rejected::new(
                    backstop_core::RejectKind::Unavailable,
                ))),
            }
        })
        .await
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
