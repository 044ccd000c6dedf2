//! Issue 18: any order of Backstop's layers has one error type, `Error<E>`, with the
//! provider's `E` typed, and a gateway maps every refusal to its status with one `match`.
//!
//! Every layer turns a service whose error is `Error<E>` into one with the same error, so
//! each of the 24 orders of rate limit, dedup, cache and breaker is built here over one
//! boxed service type and called: a refusal from any layer, wherever it sits, maps to its
//! status, and the provider's own error comes out typed. One order is also built unboxed,
//! as a gateway names it, and its reverse.

#![cfg(feature = "full")]

use backstop::breaker::{Breaker, BreakerLayer};
use backstop::cache::{CacheLayer, TieredCache};
use backstop::core::http::status;
use backstop::core::{BoxService, Error, Layer, Service, ServiceExt, service_fn};
use backstop::dedup::{DedupLayer, Group};
use backstop::limit::{Quota, RateLimitLayer, RateLimiter};

#[derive(Debug, thiserror::Error)]
#[error("provider failed with {0}")]
struct ProviderError(u16);

type Stack = BoxService<String, usize, Error<ProviderError>>;

/// The provider: the prompt's length, or its error for the prompt `"fail"`.
fn provider() -> Stack {
    service_fn(|prompt: String| async move {
        if prompt == "fail" {
            Err(ProviderError(502))
        } else {
            Ok(prompt.len())
        }
    })
    .lift()
    .boxed()
}

/// One `match` for every layer's refusal and the provider's own error: what the gateway
/// answers, with no downcast.
fn answer(result: Result<usize, Error<ProviderError>>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(error) => match error.resolve() {
            Error::Rejected(rejected) => status(rejected).as_u16(),
            Error::Inner(ProviderError(code)) => *code,
            _ => 500,
        },
    }
}

/// The primitives of one stack, fresh for each order.
struct Primitives {
    limiter: RateLimiter,
    breaker: Breaker,
}

impl Primitives {
    fn new(burst: u64) -> Self {
        Self {
            limiter: RateLimiter::new(Quota::per_hour(burst).unwrap()),
            breaker: Breaker::builder().name("provider").build().unwrap(),
        }
    }

    /// `order` over the provider, its first layer outermost.
    fn stack(&self, order: &[Layered]) -> Stack {
        order
            .iter()
            .rev()
            .fold(provider(), |inner, layer| match layer {
                Layered::Limit => RateLimitLayer::new(self.limiter.clone())
                    .layer(inner)
                    .boxed(),
                Layered::Dedup => DedupLayer::new(Group::new()).layer(inner).boxed(),
                Layered::Cache => CacheLayer::new(TieredCache::in_memory(100).unwrap())
                    .layer(inner)
                    .boxed(),
                Layered::Breaker => BreakerLayer::new(self.breaker.clone()).layer(inner).boxed(),
            })
    }
}

#[derive(Debug, Clone, Copy)]
enum Layered {
    Limit,
    Dedup,
    Cache,
    Breaker,
}

/// Every order of the four layers.
fn orders() -> Vec<Vec<Layered>> {
    fn permute(rest: Vec<Layered>, prefix: Vec<Layered>, out: &mut Vec<Vec<Layered>>) {
        if rest.is_empty() {
            out.push(prefix);
            return;
        }
        for i in 0..rest.len() {
            let mut rest = rest.clone();
            let next = rest.remove(i);
            let mut prefix = prefix.clone();
            prefix.push(next);
            permute(rest, prefix, out);
        }
    }
    let mut out = Vec::new();
    use Layered::*;
    permute(vec![Limit, Dedup, Cache, Breaker], Vec::new(), &mut out);
    out
}

#[tokio::test]
async fn every_order_maps_each_refusal_and_the_provider_error_with_one_match() {
    let orders = orders();
    assert_eq!(orders.len(), 24);
    for order in orders {
        // Room for every call below; the provider's error comes out typed.
        let open = Primitives::new(100);
        let stack = open.stack(&order);
        assert_eq!(answer(stack.call("hello".into()).await), 200, "{order:?}");
        assert_eq!(answer(stack.call("fail".into()).await), 502, "{order:?}");

        // An open circuit is a 503, wherever the breaker sits.
        open.breaker.force_open();
        assert_eq!(answer(stack.call("new".into()).await), 503, "{order:?}");

        // A spent limit is a 429, wherever the limiter sits (a new prompt misses the
        // cache and shares nothing).
        let limited = Primitives::new(1);
        let stack = limited.stack(&order);
        assert_eq!(answer(stack.call("first".into()).await), 200, "{order:?}");
        assert_eq!(answer(stack.call("second".into()).await), 429, "{order:?}");
    }
}

#[tokio::test]
async fn an_order_and_its_reverse_have_the_same_type_unboxed() {
    let primitives = Primitives::new(100);
    let bottom =
        || service_fn(|prompt: String| async move { Ok::<_, ProviderError>(prompt.len()) }).lift();
    let gateway_order = RateLimitLayer::new(primitives.limiter.clone()).layer(
        DedupLayer::new(Group::new()).layer(
            CacheLayer::new(TieredCache::in_memory(100).unwrap())
                .layer(BreakerLayer::new(primitives.breaker.clone()).layer(bottom())),
        ),
    );
    let reversed = BreakerLayer::new(primitives.breaker.clone()).layer(
        CacheLayer::new(TieredCache::in_memory(100).unwrap()).layer(
            DedupLayer::new(Group::new())
                .layer(RateLimitLayer::new(primitives.limiter.clone()).layer(bottom())),
        ),
    );
    let a: Result<usize, Error<ProviderError>> = gateway_order.call("four".into()).await;
    let b: Result<usize, Error<ProviderError>> = reversed.call("four".into()).await;
    assert_eq!((answer(a), answer(b)), (200, 200));
}
