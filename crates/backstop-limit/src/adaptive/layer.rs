//! [`AdaptiveLayer`]: an adaptive limit with priority classes in front of any service.

use super::limiter::AdaptiveLimiter;
use super::partition::PriorityClass;
use super::permit::AdaptiveOutcome;
use backstop_core::{Clock, DefaultClock, Layer, Rejected, Service, StackError, contain, in_span};
use std::fmt;

/// Says which priority class a request belongs to: a closure
/// `Fn(&Req) -> PriorityClass`, or [`DefaultPriority`].
pub trait PriorityKey<Req>: Send + Sync {
    /// The request's class; `None` for the limiter's default (lowest) class.
    fn class_of(&self, request: &Req) -> Option<PriorityClass>;
}

impl<Req, F: Fn(&Req) -> PriorityClass + Send + Sync> PriorityKey<Req> for F {
    fn class_of(&self, request: &Req) -> Option<PriorityClass> {
        Some(self(request))
    }
}

/// The default key of an [`AdaptiveLayer`]: every request is of the limiter's default
/// class.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPriority;

impl<Req> PriorityKey<Req> for DefaultPriority {
    fn class_of(&self, _: &Req) -> Option<PriorityClass> {
        None
    }
}

/// Says how a call's result counts for the limit: a closure
/// `Fn(&Result<T, E>) -> AdaptiveOutcome`, or [`DefaultOutcome`].
pub trait ClassifyOutcome<T, E>: Send + Sync {
    /// The outcome of one call.
    fn outcome(&self, result: &Result<T, E>) -> AdaptiveOutcome;
}

impl<T, E, F: Fn(&Result<T, E>) -> AdaptiveOutcome + Send + Sync> ClassifyOutcome<T, E> for F {
    fn outcome(&self, result: &Result<T, E>) -> AdaptiveOutcome {
        self(result)
    }
}

/// The default classifier of an [`AdaptiveLayer`]: `Ok` is a success, a refusal from a
/// layer below ([`StackError::rejection`]: a breaker, a rate limit, a pool) is dropped
/// (overload), any other error a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultOutcome;

impl<T, E: StackError> ClassifyOutcome<T, E> for DefaultOutcome {
    fn outcome(&self, result: &Result<T, E>) -> AdaptiveOutcome {
        match result {
            Ok(_) => AdaptiveOutcome::Success,
            Err(error) if error.rejection().is_some() => AdaptiveOutcome::Dropped,
            Err(_) => AdaptiveOutcome::Failure,
        }
    }
}

/// Layer that runs every call under an [`AdaptiveLimiter`] permit.
///
/// `AdaptiveLayer::new(limiter)` admits every request as the limiter's default class;
/// [`key`](Self::key) picks a class per request and [`classify`](Self::classify) says how a
/// result counts (default [`DefaultOutcome`]). The service's error is the inner service's
/// own (`S::Error: StackError`): a refusal is [`StackError::rejected`]
/// ([`RejectKind::ConcurrencyLimited`](backstop_core::RejectKind::ConcurrencyLimited),
/// [`Shed`](backstop_core::RejectKind::Shed), `Timeout` or `DeadlineExceeded` from a
/// queue), a panicking key closure [`StackError::panicked`]; a panicking classifier counts
/// the call as ignored and returns its result unchanged. Clones of the layer and every
/// service it makes share the limiter.
///
/// ```
/// use backstop_core::{Error, Layer, RejectKind, Service, ServiceExt, service_fn};
/// use backstop_limit::{AdaptiveLayer, AdaptiveLimitConfig, AdaptiveLimiter, PriorityClassConfig};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = AdaptiveLimiter::new(AdaptiveLimitConfig {
///     initial_limit: 2,
///     classes: vec![PriorityClassConfig::new("critical", 0.5), PriorityClassConfig::new("background", 0.0)],
///     ..Default::default()
/// })
/// .unwrap();
/// let (critical, background) = (limiter.class("critical").unwrap(), limiter.class("background").unwrap());
/// let agent = AdaptiveLayer::new(limiter.clone())
///     .key(move |prompt: &String| if prompt.starts_with('!') { critical } else { background })
///     .layer(service_fn(|prompt: String| async move { Ok::<_, std::io::Error>(prompt.len()) }).lift());
///
/// assert_eq!(agent.call("!urgent".to_string()).await.unwrap(), 7);
/// let _held = limiter.acquire_as(background).await.unwrap(); // one background call in flight
/// let refused: Error<std::io::Error> = agent.call("later".to_string()).await.unwrap_err();
/// assert_eq!(refused.rejection().unwrap().kind, RejectKind::Shed);
/// assert!(agent.call("!still served".to_string()).await.is_ok());
/// # }
/// ```
pub struct AdaptiveLayer<K = DefaultPriority, F = DefaultOutcome, C: Clock = DefaultClock> {
    limiter: AdaptiveLimiter<C>,
    key: K,
    classify: F,
}

impl<C: Clock> AdaptiveLayer<DefaultPriority, DefaultOutcome, C> {
    /// A layer over `limiter`, every request of its default class.
    pub fn new(limiter: AdaptiveLimiter<C>) -> Self {
        Self {
            limiter,
            key: DefaultPriority,
            classify: DefaultOutcome,
        }
    }
}

impl<K, F, C: Clock> AdaptiveLayer<K, F, C> {
    /// Picks each request's class with `key` (run contained: a panic fails that call
    /// with [`StackError::panicked`]).
    pub fn key<K2>(self, key: K2) -> AdaptiveLayer<K2, F, C> {
        AdaptiveLayer {
            limiter: self.limiter,
            key,
            classify: self.classify,
        }
    }

    /// Counts each result as `classify` says (run contained: a panic counts the call as
    /// ignored).
    pub fn classify<F2>(self, classify: F2) -> AdaptiveLayer<K, F2, C> {
        AdaptiveLayer {
            limiter: self.limiter,
            key: self.key,
            classify,
        }
    }
}

impl<K: Clone, F: Clone, C: Clock> Clone for AdaptiveLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<K, F, C: Clock> fmt::Debug for AdaptiveLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone, F: Clone, C: Clock> Layer<S> for AdaptiveLayer<K, F, C> {
    type Service = AdaptiveService<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service [`AdaptiveLayer`] produces; its error is the inner service's.
pub struct AdaptiveService<S, K = DefaultPriority, F = DefaultOutcome, C: Clock = DefaultClock> {
    inner: S,
    limiter: AdaptiveLimiter<C>,
    key: K,
    classify: F,
}

impl<S, K, F, C: Clock> AdaptiveService<S, K, F, C> {
    /// The limiter this service admits calls through.
    pub fn limiter(&self) -> &AdaptiveLimiter<C> {
        &self.limiter
    }
}

impl<S: fmt::Debug, K, F, C: Clock> fmt::Debug for AdaptiveService<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, Req> Service<Req> for AdaptiveService<S, K, F, C>
where
    S: Service<Req>,
    S::Error: StackError,
    K: PriorityKey<Req>,
    F: ClassifyOutcome<S::Response, S::Error>,
    C: Clock,
    Req: Send,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, request: Req) -> Result<Self::Response, Self::Error> {
        // One span per call (issue 27); disabled without a subscriber.
        let span = backstop_core::layer_span!("backstop.adaptive");
        in_span(&span, || async {
            let class = match contain("AdaptiveLayer::key", || self.key.class_of(&request)) {
                Ok(class) => class.unwrap_or_else(|| self.limiter.default_class()),
                Err(panicked) => {
                    self.limiter.note_panicked();
                    return Err(S::Error::panicked(panicked));
                }
            };
            let permit = self
                .limiter
                .acquire_as(class)
                .await
                .map_err(S::Error::rejected)?;
            let result = self.inner.call(request).await;
            let outcome = contain("AdaptiveLayer::classify", || self.classify.outcome(&result))
                .unwrap_or_else(|_| {
                    self.limiter.note_panicked();
                    AdaptiveOutcome::Ignored
                });
            permit.complete(outcome);
            result
        })
        .await
    }

    /// Not ready when every permit is taken (a call now would be refused or wait), then
    /// the inner service's readiness.
    fn readiness(&self) -> Result<(), Rejected> {
        self.limiter.readiness()?;
        self.inner.readiness()
    }
}
