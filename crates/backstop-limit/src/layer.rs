//! The limiters as a [`Layer`] over any [`Service`].
//!
//! One layer for every limiter of this crate: [`RateLimitLayer::new`] takes the limiter,
//! [`key`](RateLimitLayer::key) says whose budget a request spends (required, and checked
//! at compile time, for keyed limiters) and [`cost`](RateLimitLayer::cost) what it spends
//! (one per request by default). A refusal reaches the caller as the stack's own error,
//! built with [`StackError::rejected`], so the layer sits anywhere in a stack.

#[cfg(feature = "tokio")]
use crate::bulkhead::Bulkhead;
use crate::gcra::{Costs, Gcra};
use crate::limiter::Limiter;
use crate::quota::Quota;
use crate::store::StateStore;
#[cfg(feature = "tokio")]
use crate::wait::{WaitPolicy, Waiting};
use backstop_core::{
    BoxFuture, Clock, Layer, Rejected, Service, StackError, contain, in_span, record_key_hash,
    record_outcome, spans_enabled,
};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing::{Instrument, Span};

/// A limiter a [`RateLimitLayer`] charges: every in-process limiter of this crate, and
/// the Redis-backed [`RedisRateLimiter`](crate::RedisRateLimiter) (feature `redis`).
///
/// `Cost` is what the layer's cost closure returns: `u64` for every limiter (a multi-quota
/// limiter charges it to each quota), `[u64; N]` for a multi-quota limiter charging each
/// quota its own (requests and tokens in one call, all or none).
///
/// An in-process limiter decides at once ([`Admission::Now`], its `Pending` the valueless
/// [`Immediate`]), so the layer charges before it builds the inner call's future and
/// pays nothing for the store that may answer later; a store across the network answers
/// with a future ([`Admission::Later`]).
pub trait RateLimitHandle<Cost>: Send + Sync + 'static {
    /// Whose budget a call spends: `()` for a direct limiter, the key for a keyed one.
    type Key;

    /// A decision still to come, as [`Admission::Later`] holds it.
    type Pending<'a>: Future<Output = Result<(), Rejected>> + Send + 'a
    where
        Self: 'a;

    /// Charges `cost` to `key`, or refuses and charges nothing. A pending decision borrows
    /// only the handle (it owns what it needs of the key), so the layer prices, charges
    /// and drops the key in one step.
    fn admit(&self, key: &Self::Key, cost: Cost) -> Admission<Self::Pending<'_>>;

    /// Whether a call costing one would be refused now. A keyed limiter cannot know
    /// without the key, so it says ready.
    fn readiness(&self) -> Result<(), Rejected> {
        Ok(())
    }
}

/// What a [`RateLimitHandle`] answers to one charge.
#[derive(Debug)]
pub enum Admission<P> {
    /// Decided now: admitted, or refused (and nothing charged).
    Now(Result<(), Rejected>),
    /// Decided when `P` completes (a round trip to a shared store).
    Later(P),
}

/// The pending decision of a limiter that always decides at once: a type with no values,
/// so a layer over such a limiter compiles without a waiting branch.
#[derive(Debug)]
pub enum Immediate {}

impl Future for Immediate {
    type Output = Result<(), Rejected>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match *self.get_mut() {}
    }
}

impl<Cost, T: RateLimitHandle<Cost> + ?Sized> RateLimitHandle<Cost> for Arc<T> {
    type Key = T::Key;
    type Pending<'a>
        = T::Pending<'a>
    where
        Self: 'a;

    #[inline]
    fn admit(&self, key: &T::Key, cost: Cost) -> Admission<T::Pending<'_>> {
        (**self).admit(key, cost)
    }

    fn readiness(&self) -> Result<(), Rejected> {
        (**self).readiness()
    }
}

/// Every limiter of this crate, over either store: one impl per cost shape rather than
/// one per limiter.
impl<S: StateStore, C: Clock> RateLimitHandle<u64> for Limiter<S, C> {
    type Key = S::Key;
    type Pending<'a> = Immediate;

    #[inline]
    fn admit(&self, key: &S::Key, cost: u64) -> Admission<Immediate> {
        Admission::Now(self.check_single(key, cost).map_err(|e| e.rejection()))
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.store_readiness()
    }
}

/// A multi-quota limiter, direct or keyed, charging each quota its own cost.
impl<S, C, const N: usize> RateLimitHandle<[u64; N]> for Limiter<S, C>
where
    S: StateStore<Algorithm = Gcra<Box<[Quota]>>>,
    C: Clock,
{
    type Key = S::Key;
    type Pending<'a> = Immediate;

    #[inline]
    fn admit(&self, key: &S::Key, costs: [u64; N]) -> Admission<Immediate> {
        Admission::Now(
            self.check_with(key, Costs::Each(&costs))
                .map_err(|e| e.rejection()),
        )
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.store_readiness()
    }
}

/// Declares a trait that reads one value off a request, and implements it for every
/// closure `Fn(&Req) -> T` so callers can pass a closure wherever the trait is taken.
macro_rules! request_fn_trait {
    (
        $(#[$trait_doc:meta])*
        trait $trait:ident {
            $(#[$assoc_doc:meta])*
            type $assoc:ident;
            $(#[$fn_doc:meta])*
            fn $method:ident;
        }
    ) => {
        $(#[$trait_doc])*
        pub trait $trait<Req>: Send + Sync + 'static {
            $(#[$assoc_doc])*
            type $assoc;
            $(#[$fn_doc])*
            fn $method(&self, request: &Req) -> Self::$assoc;
        }

        impl<F, Req, T> $trait<Req> for F
        where
            F: Fn(&Req) -> T + Send + Sync + 'static,
        {
            type $assoc = T;

            #[inline]
            fn $method(&self, request: &Req) -> T {
                self(request)
            }
        }
    };
}

request_fn_trait! {
    /// How a [`RateLimitLayer`] finds whose budget a request spends: a closure
    /// `Fn(&Req) -> Key` given to [`RateLimitLayer::key`], or [`Unkeyed`].
    trait LimitKey {
        /// The limiter's key.
        type Key;
        /// The key of `request`.
        fn key_of;
    }
}

/// The key of a layer over a direct (unkeyed) limiter: every request spends one budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unkeyed;

impl<Req> LimitKey<Req> for Unkeyed {
    type Key = ();

    #[inline]
    fn key_of(&self, _: &Req) {}
}

request_fn_trait! {
    /// How a [`RateLimitLayer`] prices a request: a closure `Fn(&Req) -> Cost` given to
    /// [`RateLimitLayer::cost`], or [`PerRequest`].
    trait LimitCost {
        /// The cost, as the limiter takes it (`u64`, or `[u64; N]` for one cost per quota).
        type Cost;
        /// The cost of `request`.
        fn cost_of;
    }
}

/// The default cost of a [`RateLimitLayer`]: one cell per request (on every quota).
#[derive(Debug, Clone, Copy, Default)]
pub struct PerRequest;

impl<Req> LimitCost<Req> for PerRequest {
    type Cost = u64;

    #[inline]
    fn cost_of(&self, _: &Req) -> u64 {
        1
    }
}

/// Admits each request through a shared limiter before calling the inner service.
///
/// Every clone of the layer, and every service it makes, charges the same limiter. A
/// refusal is the stack's error built from a [`Rejected`] (kind `RateLimited` with the
/// refusing quota's index and `retry_after`; `TooLarge` for a cost no wait admits;
/// `TooManyKeys` at the key cap), so the caller matches it whatever the layer order. A
/// panicking `key` or `cost` closure becomes the stack's `Panicked` error.
///
/// ```
/// use backstop_core::{Error, RejectKind, Service, ServiceExt, Stack, service_fn};
/// use backstop_limit::{KeyedMultiRateLimiter, Quota, RateLimitLayer};
///
/// struct Call { user: String, tokens: u64 }
///
/// // Requests and tokens per user, charged together: a refusal on either spends neither.
/// let budget = KeyedMultiRateLimiter::new(vec![
///     Quota::per_minute(60).unwrap(),
///     Quota::per_minute(1_000).unwrap(),
/// ])
/// .unwrap();
/// let layer = RateLimitLayer::new(budget)
///     .key(|c: &Call| c.user.clone())
///     .cost(|c: &Call| [1, c.tokens]);
/// let model = service_fn(|c: Call| async move { Ok::<_, std::io::Error>(c.tokens) }).lift();
/// let svc = Stack::new().layer(layer).service(model);
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// assert!(svc.call(Call { user: "ann".into(), tokens: 900 }).await.is_ok());
/// let err = svc.call(Call { user: "ann".into(), tokens: 200 }).await.unwrap_err();
/// // Refused by quota 1, the tokens; `retry_after` feeds `Retry-After`.
/// let refusal = err.rejection().unwrap();
/// assert_eq!(refusal.kind, RejectKind::RateLimited { quota: 1 });
/// assert!(refusal.retry_after.is_some());
/// # });
/// ```
pub struct RateLimitLayer<L, K = Unkeyed, F = PerRequest> {
    limiter: Arc<L>,
    key: Arc<K>,
    cost: Arc<F>,
}

impl<L, K, F> Clone for RateLimitLayer<L, K, F> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<L: fmt::Debug, K, F> fmt::Debug for RateLimitLayer<L, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<L> RateLimitLayer<L> {
    /// Charges `limiter`, one cell per request, until [`key`](Self::key) and
    /// [`cost`](Self::cost) say otherwise. Pass the limiter itself or an `Arc` of it
    /// (to keep a handle for `stats()`).
    pub fn new(limiter: L) -> Self {
        Self {
            limiter: Arc::new(limiter),
            key: Arc::new(Unkeyed),
            cost: Arc::new(PerRequest),
        }
    }
}

impl<L, K, F> RateLimitLayer<L, K, F> {
    /// Charges the budget of `key(&request)` (a user, tenant or model).
    pub fn key<K2>(self, key: K2) -> RateLimitLayer<L, K2, F> {
        RateLimitLayer {
            limiter: self.limiter,
            key: Arc::new(key),
            cost: self.cost,
        }
    }

    /// Charges `cost(&request)`: a `u64`, or `[u64; N]` for one cost per quota of a
    /// multi-quota limiter.
    pub fn cost<F2>(self, cost: F2) -> RateLimitLayer<L, K, F2> {
        RateLimitLayer {
            limiter: self.limiter,
            key: self.key,
            cost: Arc::new(cost),
        }
    }
}

#[cfg(feature = "tokio")]
impl<L, K, F> RateLimitLayer<L, K, F> {
    /// Waits for admission following `policy` instead of refusing at once: each refusal for
    /// rate is slept out until admitted, or refused once the next wait would pass
    /// `policy.max_wait` (see [`Waiting`]).
    pub fn wait(self, policy: WaitPolicy) -> RateLimitLayer<Waiting<L>, K, F> {
        RateLimitLayer {
            limiter: Arc::new(Waiting::new(self.limiter, policy)),
            key: self.key,
            cost: self.cost,
        }
    }
}

impl<S, L, K, F> Layer<S> for RateLimitLayer<L, K, F> {
    type Service = RateLimitService<S, L, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

/// A service behind a rate limit, made by [`RateLimitLayer`].
pub struct RateLimitService<S, L, K = Unkeyed, F = PerRequest> {
    inner: S,
    limiter: Arc<L>,
    key: Arc<K>,
    cost: Arc<F>,
}

impl<S: Clone, L, K, F> Clone for RateLimitService<S, L, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<S: fmt::Debug, L: fmt::Debug, K, F> fmt::Debug for RateLimitService<S, L, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, L, K, F> RateLimitService<S, L, K, F> {
    /// Charges `request`'s cost to its key, recording the key's hash on `span` if there is
    /// one; a refusal or a panicking `key` / `cost` closure is the stack's error, and a
    /// decision still to come is returned to be awaited. Inlined: called from two
    /// branches, it was left out of line (perf: 40% of the layer's samples).
    #[inline]
    fn charge<Req, E>(
        &self,
        request: &Req,
        span: Option<&Span>,
    ) -> Result<Option<L::Pending<'_>>, E>
    where
        E: StackError,
        K: LimitKey<Req>,
        K::Key: Hash,
        F: LimitCost<Req>,
        L: RateLimitHandle<F::Cost, Key = K::Key>,
    {
        let admission = contain("rate limit key or cost", || {
            let key = self.key.key_of(request);
            // A direct limiter's key, `()`, has one value: its hash would say nothing.
            if let Some(span) = span
                && size_of::<K::Key>() != 0
            {
                record_key_hash(span, &key);
            }
            self.limiter.admit(&key, self.cost.cost_of(request))
        });
        match admission {
            Ok(Admission::Now(Ok(()))) => Ok(None),
            Ok(Admission::Now(Err(refused))) => Err(E::rejected(refused)),
            Ok(Admission::Later(pending)) => Ok(Some(pending)),
            Err(panicked) => Err(E::panicked(panicked)),
        }
    }
}

pin_project! {
    /// The rest of a rate-limited call once it is charged: the inner call itself, or one
    /// boxed future for a decision still to come or a traced call.
    #[project = ThenProj]
    enum Then<C, B> {
        Inner { #[pin] call: C },
        Boxed { call: B },
    }
}

impl<C, B> Future for Then<C, B>
where
    C: Future,
    B: Future<Output = C::Output> + Unpin,
{
    type Output = C::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        match self.project() {
            ThenProj::Inner { call } => call.poll(cx),
            ThenProj::Boxed { call } => Pin::new(call).poll(cx),
        }
    }
}

impl<S, L, K, F, Req> Service<Req> for RateLimitService<S, L, K, F>
where
    S: Service<Req>,
    S::Error: StackError,
    K: LimitKey<Req>,
    K::Key: Hash,
    F: LimitCost<Req>,
    L: RateLimitHandle<F::Cost, Key = K::Key>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<Self::Response, Self::Error> {
        // An in-process charge is decided before the inner call's future is built, and the
        // call then awaits that future alone: a decision still to come (Redis) and a traced
        // call each take one boxed future instead, so neither adds a state to this one
        // (awaiting them here cost the plain path 3 ns of its 15, though never taken).
        let then: Then<_, BoxFuture<'_, Result<S::Response, S::Error>>> = if spans_enabled() {
            // A call under its span (issue 27), with a hash of the key (never the key: it
            // names a user or a tenant).
            Then::Boxed {
                call: Box::pin(async move {
                    let span = backstop_core::layer_span!("backstop.limit", key_hash);
                    let charged = match span.in_scope(|| self.charge(&req, Some(&span))) {
                        Ok(None) => Ok(()),
                        Ok(Some(pending)) => pending
                            .instrument(span.clone())
                            .await
                            .map_err(S::Error::rejected),
                        Err(refused) => Err(refused),
                    };
                    match charged {
                        Ok(()) => in_span(&span, || self.inner.call(req)).await,
                        Err(refused) => {
                            let refused = Err(refused);
                            record_outcome(&span, &refused);
                            refused
                        }
                    }
                }),
            }
        } else {
            match self.charge::<Req, S::Error>(&req, None)? {
                None => Then::Inner {
                    call: self.inner.call(req),
                },
                Some(pending) => Then::Boxed {
                    call: Box::pin(async move {
                        pending.await.map_err(S::Error::rejected)?;
                        self.inner.call(req).await
                    }),
                },
            }
        };
        then.await
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.limiter.readiness()?;
        self.inner.readiness()
    }
}

/// Runs every call through a shared [`Bulkhead`].
///
/// A full bulkhead (every slot busy, the wait queue full) refuses with
/// `RejectKind::ConcurrencyLimited`, a wait past `max_wait` with `RejectKind::Timeout`, and
/// [`readiness`](Service::readiness) reports a full bulkhead, so tower's `LoadShed` in
/// front of it (through the tower bridge) sheds instead of queueing.
///
/// ```
/// use backstop_core::{Layer, RejectKind, Service, ServiceExt, service_fn};
/// use backstop_limit::{Bulkhead, BulkheadConfig, BulkheadLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bulkhead = Bulkhead::new(BulkheadConfig { max_concurrent: 1, max_queued: 0, max_wait: None }).unwrap();
/// let svc = BulkheadLayer::new(bulkhead.clone())
///     .layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }).lift());
/// assert_eq!(svc.call(7).await.unwrap(), 7);
/// let _held = bulkhead.acquire().await.unwrap();
/// assert!(svc.readiness().is_err());
/// let refused = svc.call(8).await.unwrap_err();
/// assert_eq!(refused.rejection().unwrap().kind, RejectKind::ConcurrencyLimited);
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

#[cfg(feature = "tokio")]
impl BulkheadLayer {
    /// Wraps services in `bulkhead` (clones share it).
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self { bulkhead }
    }
}

#[cfg(feature = "tokio")]
impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

/// A service behind a bulkhead, made by [`BulkheadLayer`].
#[cfg(feature = "tokio")]
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

#[cfg(feature = "tokio")]
impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req>,
    S::Error: StackError,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, req: Req) -> Result<Self::Response, Self::Error> {
        let span = backstop_core::layer_span!("backstop.bulkhead");
        in_span(&span, || async {
            let _permit = self
                .bulkhead
                .acquire()
                .await
                .map_err(|refused| S::Error::rejected(refused.into()))?;
            self.inner.call(req).await
        })
        .await
    }

    fn readiness(&self) -> Result<(), Rejected> {
        self.bulkhead.readiness()?;
        self.inner.readiness()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BulkheadConfig, KeyedMultiRateLimiter, RateLimiter};
    use backstop_core::{Error, ManualClock, RejectKind, ServiceExt, service_fn};
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn clones_share_one_limit_and_rejections_skip_the_inner_service() {
        let clock = ManualClock::new();
        let limiter = Arc::new(RateLimiter::with_clock(
            Quota::per_second(3).unwrap(),
            clock.clone(),
        ));
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let inner = Arc::new(
            service_fn(move |n: u64| {
                counted.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, Infallible>(n) }
            })
            .lift(),
        );
        let layer = RateLimitLayer::new(limiter.clone()).cost(|n: &u64| *n);
        let a = layer.layer(inner.clone());
        let b = layer.clone().layer(inner);
        assert_eq!(a.call(2).await.unwrap(), 2);
        assert!(b.readiness().is_ok(), "one cell is left");
        let err = b.call(2).await.unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1) / 3));
        assert!(matches!(
            b.call(4).await,
            Err(Error::Rejected(r)) if r.kind == RejectKind::TooLarge { quota: 0 }
        ));
        b.call(1).await.unwrap();
        assert_eq!(
            b.readiness().unwrap_err().kind,
            RejectKind::RateLimited { quota: 0 }
        );
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(limiter.stats().admitted, 2);
    }

    #[tokio::test]
    async fn keyed_layers_charge_each_key_and_multi_quota_refusals_name_the_quota() {
        let clock = ManualClock::new();
        let limiter = KeyedMultiRateLimiter::with_clock(
            vec![
                Quota::per_minute(2).unwrap(),
                Quota::per_minute(100).unwrap(),
            ],
            clock,
        )
        .unwrap();
        let svc = RateLimitLayer::new(limiter)
            .key(|call: &(&'static str, u64)| call.0)
            .cost(|call: &(&'static str, u64)| [1, call.1])
            .layer(
                service_fn(|call: (&'static str, u64)| async move { Ok::<_, Infallible>(call.1) })
                    .lift(),
            );
        assert_eq!(svc.call(("ann", 60)).await.unwrap(), 60);
        let tokens = svc.call(("ann", 60)).await.unwrap_err();
        assert_eq!(
            tokens.rejection().unwrap().kind,
            RejectKind::RateLimited { quota: 1 }
        );
        svc.call(("ann", 1)).await.unwrap();
        let requests = svc.call(("ann", 1)).await.unwrap_err();
        assert_eq!(
            requests.rejection().unwrap().kind,
            RejectKind::RateLimited { quota: 0 }
        );
        assert!(
            svc.call(("bob", 1)).await.is_ok(),
            "another key has its own budget"
        );
    }

    #[tokio::test]
    async fn a_panicking_cost_closure_is_the_stacks_panicked_error() {
        let svc = RateLimitLayer::new(RateLimiter::new(Quota::per_second(10).unwrap()))
            .cost(|_: &u32| -> u64 { panic!("bad cost") })
            .layer(service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }).lift());
        let err = svc.call(1).await.unwrap_err();
        assert_eq!(err.panic().unwrap().message(), "bad cost");
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn inner_errors_pass_through_and_bulkhead_layer_frees_its_slot() {
        let bulkhead = Bulkhead::new(BulkheadConfig {
            max_concurrent: 1,
            max_queued: 0,
            max_wait: None,
        })
        .unwrap();
        let svc = BulkheadLayer::new(bulkhead.clone()).layer(
            service_fn(|fail: bool| async move { if fail { Err("boom") } else { Ok(()) } }).lift(),
        );
        assert!(matches!(svc.call(true).await, Err(Error::Inner("boom"))));
        svc.call(false).await.unwrap();
        assert_eq!(bulkhead.stats().in_flight, 0);
        let held = bulkhead.acquire().await.unwrap();
        assert_eq!(
            svc.readiness().unwrap_err().kind,
            RejectKind::ConcurrencyLimited
        );
        assert_eq!(
            svc.call(false).await.unwrap_err().rejection().unwrap().kind,
            RejectKind::ConcurrencyLimited
        );
        drop(held);
        assert!(svc.readiness().is_ok());
    }
}
