//! The breaker as a [`Layer`] over any [`Service`].

use std::sync::Arc;

use backstop_core::{Clock, DefaultClock, Layer, Rejected, Service, StackError, in_span};

use crate::{Breaker, Classify, IgnoreRejections, Outcome};

/// Wraps services so every call goes through one shared [`Breaker`]; clones of the layer
/// and of the services it makes share the circuit.
///
/// The service keeps the stack's error type: a refusal is `StackError::rejected` with
/// [`RejectKind::CircuitOpen`](backstop_core::RejectKind) and the rest of the open period
/// as `retry_after`. By default ([`IgnoreRejections`]) an error counts as a failure unless
/// it is a refusal by a primitive below the breaker; [`classify`](Self::classify) decides
/// otherwise.
///
/// ```
/// use backstop_breaker::{Breaker, BreakerLayer};
/// use backstop_core::{Service, ServiceExt, Stack, service_fn};
///
/// let breaker = Breaker::builder().name("model").build().unwrap();
/// let model = service_fn(|prompt: String| async move { Ok::<_, std::io::Error>(prompt.len()) })
///     .lift();
/// let stack = Stack::new().layer(BreakerLayer::new(breaker.clone())).service(model);
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert_eq!(stack.call("hello".to_string()).await.unwrap(), 5);
/// # });
/// assert_eq!(breaker.stats().buffered_calls, 1);
/// ```
#[derive(Debug)]
pub struct BreakerLayer<C: Clock = DefaultClock, K = IgnoreRejections> {
    breaker: Breaker<C>,
    classifier: Arc<K>,
}

impl<C: Clock, K> Clone for BreakerLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C: Clock> BreakerLayer<C, IgnoreRejections> {
    /// Counts `Ok` as success and `Err` as failure, ignoring refusals from below.
    pub fn new(breaker: Breaker<C>) -> Self {
        Self {
            breaker,
            classifier: Arc::new(IgnoreRejections),
        }
    }
}

impl<C: Clock, K> BreakerLayer<C, K> {
    /// Lets `classifier` decide how each result counts (a panicking classifier is
    /// contained: the call counts as neither success nor failure).
    pub fn classify<K2>(self, classifier: K2) -> BreakerLayer<C, K2> {
        BreakerLayer {
            breaker: self.breaker,
            classifier: Arc::new(classifier),
        }
    }

    /// The shared breaker.
    pub fn breaker(&self) -> &Breaker<C> {
        &self.breaker
    }
}

impl<S, C: Clock, K> Layer<S> for BreakerLayer<C, K> {
    type Service = BreakerService<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service behind a circuit breaker, made by [`BreakerLayer`].
#[derive(Debug)]
pub struct BreakerService<S, C: Clock = DefaultClock, K = IgnoreRejections> {
    inner: S,
    breaker: Breaker<C>,
    classifier: Arc<K>,
}

impl<S: Clone, C: Clock, K> Clone for BreakerService<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, C: Clock, K> BreakerService<S, C, K> {
    /// The shared breaker.
    pub fn breaker(&self) -> &Breaker<C> {
        &self.breaker
    }
}

impl<S, Req, C, K> Service<Req> for BreakerService<S, C, K>
where
    S: Service<Req>,
    S::Error: StackError,
    Req: Send,
    C: Clock,
    K: Classify<Result<S::Response, S::Error>, Outcome>,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<S::Response, S::Error> {
        // One span per call (issue 27); `in_span` builds the guard future in each branch,
        // so without a subscriber the call is the unspanned one.
        let span = backstop_core::layer_span!("backstop.breaker", name);
        if !span.is_disabled() {
            span.record("name", self.breaker.name());
        }
        in_span(&span, move || {
            self.breaker.guard(
                &*self.classifier,
                move || self.inner.call(req),
                S::Error::rejected,
                |error| error,
            )
        })
        .await
    }

    /// Not ready while the circuit would refuse a call; then the inner service's answer.
    fn readiness(&self) -> Result<(), Rejected> {
        self.breaker.readiness()?;
        self.inner.readiness()
    }
}
