//! [`RetryLayer`]: the retry policy around any Backstop service.

use crate::Retry;
use crate::classify::{ClassifyRetry, StandardClassify};
use crate::first::FirstAttempt;
use backstop_core::{Layer, Rejected, Service, StackError, record_outcome};
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;

/// Retries the inner service's failed calls with a [`Retry`] handle's policy, budget,
/// deadline and hedging.
///
/// The request must be `Clone` (each attempt gets its own copy); the error is the inner
/// service's (`S::Error: StackError`), unwrapped.
///
/// ```
/// use backstop_core::{Error, Layer, Rejected, RejectKind, Service, ServiceExt, service_fn};
/// use backstop_retry::{RetryConfig, RetryDecision, RetryLayer, standard_decision};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// #[derive(Debug)]
/// struct Status(u16);
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # rt.block_on(async {
/// let calls = AtomicU32::new(0);
/// let provider = service_fn(|prompt: String| {
///     let n = calls.fetch_add(1, Ordering::Relaxed);
///     async move { if n == 0 { Err(Status(503)) } else { Ok(prompt.len()) } }
/// })
/// .lift();
/// let retry = RetryConfig::default().build().unwrap();
/// let stack = RetryLayer::new(retry.clone())
///     .classify(|e: &Error<Status>| match e.inner() {
///         Some(Status(400)) => RetryDecision::Stop, // a bad request never passes
///         _ => standard_decision(e),
///     })
///     .layer(provider);
/// assert_eq!(stack.call("hello".into()).await.unwrap(), 5);
/// assert_eq!(retry.stats().retries, 1);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct RetryLayer<C = StandardClassify> {
    retry: Retry,
    classify: Arc<C>,
}

impl RetryLayer {
    /// A layer retrying with `retry`'s policy and the standard classification.
    pub fn new(retry: Retry) -> Self {
        Self {
            retry,
            classify: Arc::new(StandardClassify),
        }
    }
}

impl<C> RetryLayer<C> {
    /// Classifies each failed attempt with `classify` (a closure `Fn(&E) -> RetryDecision`
    /// or any [`ClassifyRetry`]); a panic in it is contained and returned as the call's
    /// error.
    pub fn classify<C2>(self, classify: C2) -> RetryLayer<C2> {
        RetryLayer {
            retry: self.retry,
            classify: Arc::new(classify),
        }
    }
}

impl<S, C> Layer<S> for RetryLayer<C> {
    type Service = RetryService<S, C>;

    fn layer(&self, inner: S) -> RetryService<S, C> {
        RetryService {
            inner,
            retry: self.retry.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// A service retried by a [`RetryLayer`].
#[derive(Clone, Debug)]
pub struct RetryService<S, C = StandardClassify> {
    inner: S,
    retry: Retry,
    classify: Arc<C>,
}

impl<S, C> RetryService<S, C> {
    /// The retry handle (for its stats).
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// What a call that is not a plain first attempt does, in its boxed future.
enum Path<E> {
    /// Runs inside a `backstop.retry` span (a subscriber listens).
    Spanned,
    /// Runs under a deadline, an attempt timeout or a hedge.
    Guarded,
    /// Retries after the plain first attempt failed with this error.
    Failed(E),
}

impl<S, C> RetryService<S, C> {
    /// The call's slow paths, in one future type so a call is one [`FirstAttempt`] whatever
    /// its path.
    async fn slow<Req>(&self, req: Req, path: Path<S::Error>) -> Result<S::Response, S::Error>
    where
        S: Service<Req>,
        S::Error: StackError,
        C: ClassifyRetry<S::Error>,
        Req: Clone + Send + Sync,
    {
        let attempt = || self.inner.call(req.clone());
        match path {
            Path::Spanned => {
                let span = tracing::debug_span!(
                    target: "backstop",
                    "backstop.retry",
                    outcome = tracing::field::Empty,
                    reject_kind = tracing::field::Empty,
                    retry_after = tracing::field::Empty,
                );
                let result = self
                    .retry
                    .run_inline(&*self.classify, attempt)
                    .instrument(span.clone())
                    .await;
                record_outcome(&span, &result);
                result
            }
            Path::Guarded => self.retry.run_inline(&*self.classify, attempt).await,
            Path::Failed(error) => {
                self.retry
                    .after_failure(&*self.classify, &attempt, error)
                    .await
            }
        }
    }
}

impl<S, C, Req> Service<Req> for RetryService<S, C>
where
    S: Service<Req>,
    S::Response: Send,
    S::Error: StackError,
    C: ClassifyRetry<S::Error>,
    Req: Clone + Send + Sync,
{
    type Response = S::Response;
    type Error = S::Error;

    #[inline]
    fn call(&self, req: Req) -> impl Future<Output = Result<S::Response, S::Error>> + Send {
        // One span per call (issue 27), around every attempt. Without a subscriber that
        // wants it no span is made at all: with tracing's `log` feature on (as it is in
        // most dependency graphs) even a disabled span records its fields and its drop for
        // `log`, which cost twice the rest of the success path (issue 20).
        if tracing::enabled!(target: "backstop", tracing::Level::DEBUG) {
            return FirstAttempt::boxed(Box::pin(self.slow(req, Path::Spanned)));
        }
        if !self.retry.start_plain() {
            return FirstAttempt::boxed(Box::pin(self.slow(req, Path::Guarded)));
        }
        // Nothing can cut or race the first attempt: the inner future as it is, and only a
        // failure builds (and boxes) the retries. Every async wrapper around the first
        // attempt cost a move of its state and a drop, and together they made the success
        // path 1.7x tower's `Retry` (issue 20).
        let first = self.inner.call(req.clone());
        FirstAttempt::new(first, move |error| {
            Box::pin(self.slow(req, Path::Failed(error)))
        })
    }

    /// The retry itself never refuses a first attempt; the inner service's readiness.
    fn readiness(&self) -> Result<(), Rejected> {
        self.inner.readiness()
    }
}
