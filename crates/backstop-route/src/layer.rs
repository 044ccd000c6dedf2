//! [`RouteLayer`]: a router in front of one service that can reach every target.

use crate::class::{ClassifyRoute, StandardRouteClassify};
use crate::hints::RouteHints;
use crate::router::Router;
use crate::target::TargetInfo;
use backstop_core::{Layer, RejectKind, Rejected, Service, StackError, contain, in_span};
use std::fmt;
use std::sync::Arc;

/// A request on its way to one target: the inner service of a [`RouteService`] reads the
/// target (provider, model, key, region) and sends the request there.
#[derive(Debug, Clone)]
pub struct Routed<Req> {
    /// Where the request goes.
    pub target: TargetInfo,
    /// The caller's request.
    pub request: Req,
}

/// Which sticky key a request has. Implemented by [`NoRouteKey`] and by every
/// `Fn(&Req) -> Option<u64>` closure (hash a key with [`sticky_hash`](crate::sticky_hash)).
pub trait RouteKey<Req>: Send + Sync {
    /// The request's hashed sticky key, if it has one.
    fn key(&self, request: &Req) -> Option<u64>;
}

/// No request has a sticky key.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRouteKey;

impl<Req> RouteKey<Req> for NoRouteKey {
    fn key(&self, _: &Req) -> Option<u64> {
        None
    }
}

impl<Req, F> RouteKey<Req> for F
where
    F: Fn(&Req) -> Option<u64> + Send + Sync,
{
    fn key(&self, request: &Req) -> Option<u64> {
        self(request)
    }
}

/// What a request costs in tokens. Implemented by [`NoRouteCost`] and by every
/// `Fn(&Req) -> u64` closure.
pub trait RouteCost<Req>: Send + Sync {
    /// The request's token cost (an estimate).
    fn tokens(&self, request: &Req) -> u64;
}

/// Every request costs no tokens (only request budgets apply).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRouteCost;

impl<Req> RouteCost<Req> for NoRouteCost {
    fn tokens(&self, _: &Req) -> u64 {
        0
    }
}

impl<Req, F> RouteCost<Req> for F
where
    F: Fn(&Req) -> u64 + Send + Sync,
{
    fn tokens(&self, request: &Req) -> u64 {
        self(request)
    }
}

/// Routes each request through a [`Router`] to an inner service of
/// [`Routed<Req>`] requests, which reaches the chosen target.
///
/// The request must be `Clone` (each attempt gets its own copy); the error is the inner
/// service's (`S::Error: StackError`), unwrapped. For several distinct services, one per
/// target, use [`TargetServices`] as the inner service.
///
/// ```
/// use backstop_core::{Error, Layer, Service, ServiceExt, service_fn};
/// use backstop_route::{ErrorClass, RouteConfig, RouteLayer, Routed, TargetConfig, standard_class, sticky_hash};
///
/// #[derive(Debug)]
/// struct Status(u16);
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # rt.block_on(async {
/// let router = RouteConfig {
///     targets: vec![
///         TargetConfig { provider: "openai".into(), ..TargetConfig::named("openai") },
///         TargetConfig { provider: "anthropic".into(), ..TargetConfig::named("anthropic") },
///     ],
///     ..RouteConfig::default()
/// }
/// .build()
/// .unwrap();
/// // One client that can reach every provider; openai is down.
/// let client = service_fn(|routed: Routed<String>| async move {
///     match routed.target.provider() {
///         "openai" => Err(Status(503)),
///         provider => Ok(format!("{provider}: {}", routed.request)),
///     }
/// })
/// .lift();
/// let gateway = RouteLayer::new(router.clone())
///     .key(|prompt: &String| Some(sticky_hash(&prompt[..2])))
///     .cost(|prompt: &String| prompt.len() as u64)
///     .classify(|e: &Error<Status>| match e.inner() {
///         Some(Status(400)) => ErrorClass::Fatal,
///         _ => standard_class(e),
///     })
///     .layer(client);
/// assert_eq!(gateway.call("hi there".into()).await.unwrap(), "anthropic: hi there");
/// # });
/// ```
pub struct RouteLayer<K = NoRouteKey, C = NoRouteCost, Cl = StandardRouteClassify> {
    router: Router,
    key: Arc<K>,
    cost: Arc<C>,
    classify: Arc<Cl>,
}

impl<K, C, Cl> Clone for RouteLayer<K, C, Cl> {
    fn clone(&self) -> Self {
        Self {
            router: self.router.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<K, C, Cl> fmt::Debug for RouteLayer<K, C, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteLayer")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl RouteLayer {
    /// A layer routing with `router`, no sticky key, no token cost and the standard
    /// classification.
    pub fn new(router: Router) -> Self {
        Self {
            router,
            key: Arc::new(NoRouteKey),
            cost: Arc::new(NoRouteCost),
            classify: Arc::new(StandardRouteClassify),
        }
    }
}

impl<K, C, Cl> RouteLayer<K, C, Cl> {
    /// Sticky routing by a key of each request (`Fn(&Req) -> Option<u64>`, or any
    /// [`RouteKey`]). A panic in it is contained and returned as the call's error.
    pub fn key<K2>(self, key: K2) -> RouteLayer<K2, C, Cl> {
        RouteLayer {
            router: self.router,
            key: Arc::new(key),
            cost: self.cost,
            classify: self.classify,
        }
    }

    /// Each request's token cost (`Fn(&Req) -> u64`, or any [`RouteCost`]), charged to the
    /// chosen target's token budget and compared with context windows.
    pub fn cost<C2>(self, cost: C2) -> RouteLayer<K, C2, Cl> {
        RouteLayer {
            router: self.router,
            key: self.key,
            cost: Arc::new(cost),
            classify: self.classify,
        }
    }

    /// Classifies each failed attempt (`Fn(&E) -> ErrorClass`, or any [`ClassifyRoute`]).
    pub fn classify<Cl2>(self, classify: Cl2) -> RouteLayer<K, C, Cl2> {
        RouteLayer {
            router: self.router,
            key: self.key,
            cost: self.cost,
            classify: Arc::new(classify),
        }
    }
}

impl<S, K, C, Cl> Layer<S> for RouteLayer<K, C, Cl> {
    type Service = RouteService<S, K, C, Cl>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service routed by a [`RouteLayer`].
pub struct RouteService<S, K = NoRouteKey, C = NoRouteCost, Cl = StandardRouteClassify> {
    inner: S,
    layer: RouteLayer<K, C, Cl>,
}

impl<S: Clone, K, C, Cl> Clone for RouteService<S, K, C, Cl> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, K, C, Cl> fmt::Debug for RouteService<S, K, C, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteService")
            .field("inner", &self.inner)
            .field("router", &self.layer.router)
            .finish()
    }
}

impl<S, K, C, Cl> RouteService<S, K, C, Cl> {
    /// The router (for its stats).
    pub fn router(&self) -> &Router {
        &self.layer.router
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S, K, C, Cl, Req> Service<Req> for RouteService<S, K, C, Cl>
where
    S: Service<Routed<Req>>,
    S::Response: Send,
    S::Error: StackError,
    K: RouteKey<Req>,
    C: RouteCost<Req>,
    Cl: ClassifyRoute<S::Error>,
    Req: Clone + Send + Sync,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, request: Req) -> Result<S::Response, S::Error> {
        // One span per call (issue 27); disabled without a subscriber.
        let span = backstop_core::layer_span!("backstop.route");
        in_span(&span, || async {
            let layer = &self.layer;
            let hints = contain("route.key", || layer.key.key(&request)).and_then(|key| {
                contain("route.cost", || layer.cost.tokens(&request)).map(|tokens| (key, tokens))
            });
            let (key, tokens) = match hints {
                Ok(hints) => hints,
                Err(panicked) => {
                    tracing::warn!(%panicked, "route: key or cost closure panicked");
                    return Err(S::Error::panicked(panicked));
                }
            };
            let hints = RouteHints::new().tokens(tokens);
            let hints = match key {
                Some(key) => hints.sticky_hash(key),
                None => hints,
            };
            layer
                .router
                .run(&hints, &*layer.classify, |target| {
                    self.inner.call(Routed {
                        target: target.clone(),
                        request: request.clone(),
                    })
                })
                .await
        })
        .await
    }

    /// The router's own readiness (some target usable), then the inner service's.
    fn readiness(&self) -> Result<(), Rejected> {
        self.layer.router.readiness()?;
        self.inner.readiness()
    }
}

/// One service per target, indexed as the config's `targets`: the inner service of a
/// [`RouteService`] when every target is its own client (or its own stack).
///
/// ```
/// use backstop_core::{Layer, Service, ServiceExt, service_fn};
/// use backstop_route::{RouteConfig, RouteLayer, TargetConfig, TargetServices};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # rt.block_on(async {
/// let router = RouteConfig {
///     targets: vec![TargetConfig::named("only")],
///     ..RouteConfig::default()
/// }
/// .build()
/// .unwrap();
/// let upstreams = TargetServices::new(vec![
///     service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }).lift().boxed(),
/// ]);
/// let routed = RouteLayer::new(router).layer(upstreams);
/// assert_eq!(routed.call(41).await.unwrap(), 42);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct TargetServices<S> {
    services: Box<[S]>,
}

impl<S> TargetServices<S> {
    /// `services[i]` serves target `i` of the router's config.
    pub fn new(services: Vec<S>) -> Self {
        Self {
            services: services.into_boxed_slice(),
        }
    }
}

impl<S, Req> Service<Routed<Req>> for TargetServices<S>
where
    S: Service<Req>,
    S::Error: StackError,
    Req: Send,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, routed: Routed<Req>) -> Result<S::Response, S::Error> {
        match self.services.get(routed.target.index()) {
            Some(service) => service.call(routed.request).await,
            // A target without a service cannot be reached; the router moves on.
            None => Err(S::Error::rejected(Rejected::new(RejectKind::Closed))),
        }
    }
}
