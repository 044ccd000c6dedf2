//! One span per call on each layer, nested the way the stack is (issue 27): a trace
//! viewer shows a request's path through the limiter, the breaker and dedup.

#![cfg(all(
    feature = "limit",
    feature = "breaker",
    feature = "dedup",
    feature = "retry"
))]

use backstop::breaker::{Breaker, BreakerLayer};
use backstop::core::{Error, Layer, RejectKind, Service, ServiceExt, service_fn};
use backstop::dedup::{DedupLayer, Group};
use backstop::limit::{
    AdaptiveLayer, AdaptiveLimitConfig, AdaptiveLimiter, Quota, RateLimitLayer, RateLimiter,
};
use backstop::retry::{RetryConfig, RetryLayer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as a trace viewer would show it: its name, its parent's name and its fields.
#[derive(Debug, Clone, Default)]
struct Captured {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(Id, Captured)>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.name());
        let mut captured = Captured {
            name: attrs.metadata().name(),
            parent,
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut captured.fields));
        self.0.lock().unwrap().push((id.clone(), captured));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, captured)) = spans.iter_mut().rev().find(|(known, _)| known == id) {
            values.record(&mut Fields(&mut captured.fields));
        }
    }
}

impl Spans {
    fn take(&self) -> Vec<Captured> {
        self.0
            .lock()
            .unwrap()
            .drain(..)
            .map(|(_, captured)| captured)
            .collect()
    }
}

fn find<'a>(spans: &'a [Captured], name: &str) -> &'a Captured {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

#[tokio::test(flavor = "current_thread")]
async fn a_three_layer_stack_makes_nested_spans_with_outcome_and_retry_after() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));

    let backend = service_fn(|prompt: String| async move {
        // The backend runs inside the innermost layer's span.
        assert_eq!(
            tracing::Span::current().metadata().map(|m| m.name()),
            Some("backstop.dedup")
        );
        Ok::<_, std::io::Error>(prompt.len())
    })
    .lift();
    let limiter = RateLimiter::new(Quota::per_second(1).unwrap());
    let breaker = Breaker::builder().name("llm").build().unwrap();
    let stack = RateLimitLayer::new(limiter)
        .layer(BreakerLayer::new(breaker).layer(DedupLayer::new(Group::new()).layer(backend)));

    assert_eq!(stack.call("hello".to_string()).await.unwrap(), 5);
    let admitted = spans.take();
    assert_eq!(admitted.len(), 3, "{admitted:#?}");
    let limit = find(&admitted, "backstop.limit");
    let breaker = find(&admitted, "backstop.breaker");
    let dedup = find(&admitted, "backstop.dedup");
    assert_eq!(limit.parent, None);
    assert_eq!(breaker.parent, Some("backstop.limit"));
    assert_eq!(dedup.parent, Some("backstop.breaker"));
    for span in [limit, breaker, dedup] {
        assert_eq!(span.fields["outcome"], "ok", "{span:?}");
        assert!(!span.fields.contains_key("retry_after"), "{span:?}");
    }
    assert_eq!(breaker.fields["name"], "llm");
    assert_eq!(dedup.fields["shared"], "false");

    let refused: Error<std::io::Error> = stack.call("again".to_string()).await.unwrap_err();
    assert!(matches!(
        refused.rejection().map(|r| r.kind),
        Some(RejectKind::RateLimited { .. })
    ));
    let refused = spans.take();
    assert_eq!(
        refused.len(),
        1,
        "the limiter refused before the inner layers"
    );
    let limit = find(&refused, "backstop.limit");
    assert_eq!(limit.fields["outcome"], "rejected");
    assert!(limit.fields["reject_kind"].contains("rate limited"));
    let retry_after: f64 = limit.fields["retry_after"].parse().unwrap();
    assert!(retry_after > 0.0 && retry_after <= 1.0, "{retry_after}");
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_subscriber_no_span_is_made() {
    let limiter = RateLimiter::new(Quota::per_second(1).unwrap());
    let service = RateLimitLayer::new(limiter)
        .layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }).lift());
    assert!(tracing::Span::current().is_disabled());
    assert_eq!(service.call(3).await.unwrap(), 3);
    assert!(service.call(4).await.unwrap_err().rejection().is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn retry_and_adaptive_layers_nest_their_spans_too() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let limiter = AdaptiveLimiter::new(AdaptiveLimitConfig::default()).unwrap();
    let stack = RetryLayer::new(RetryConfig::default().build().unwrap()).layer(
        AdaptiveLayer::new(limiter)
            .layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }).lift()),
    );
    assert_eq!(stack.call(4).await.unwrap(), 4);
    let captured = spans.take();
    let retry = find(&captured, "backstop.retry");
    let adaptive = find(&captured, "backstop.adaptive");
    assert_eq!(retry.parent, None);
    assert_eq!(adaptive.parent, Some("backstop.retry"));
    assert_eq!(retry.fields["outcome"], "ok");
    assert_eq!(adaptive.fields["outcome"], "ok");
}

/// The `key_hash` a layer records for `key`: SipHash with fixed keys over the key's text.
fn key_hash(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish().to_string()
}

/// No span field carries the key itself.
fn assert_no_field_holds(spans: &[Captured], secret: &str) {
    for span in spans {
        for (field, value) in &span.fields {
            assert!(!value.contains(secret), "{} {field} = {value}", span.name);
        }
    }
}

/// Issue 27: `DedupLayer` and a keyed `RateLimitLayer` record a hash of their key, never
/// the key; a direct limiter's key, `()`, has one value and no hash is recorded.
#[tokio::test(flavor = "current_thread")]
async fn dedup_and_keyed_limit_layers_record_a_hash_of_the_key_never_the_key() {
    use backstop::limit::KeyedRateLimiter;

    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let limiter = KeyedRateLimiter::new(Quota::per_second(1).unwrap());
    let stack = RateLimitLayer::new(limiter)
        .key(|prompt: &String| prompt.clone())
        .layer(
            DedupLayer::new(Group::new()).layer(
                service_fn(|prompt: String| async move { Ok::<_, std::io::Error>(prompt.len()) })
                    .lift(),
            ),
        );
    let secret = "my api key is sk-4111";
    assert_eq!(stack.call(secret.to_string()).await.unwrap(), secret.len());
    assert!(
        stack.call(secret.to_string()).await.is_err(),
        "one a second"
    );
    let captured = spans.take();
    assert_eq!(captured.len(), 3, "{captured:#?}");
    for span in &captured {
        assert_eq!(span.fields["key_hash"], key_hash(secret), "{span:?}");
    }
    assert_eq!(find(&captured, "backstop.dedup").fields["outcome"], "ok");
    assert_no_field_holds(&captured, secret);

    let direct = RateLimitLayer::new(RateLimiter::new(Quota::per_second(1).unwrap()))
        .layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }).lift());
    assert_eq!(direct.call(1).await.unwrap(), 1);
    let captured = spans.take();
    let limit = find(&captured, "backstop.limit");
    assert_eq!(limit.fields["outcome"], "ok");
    assert!(!limit.fields.contains_key("key_hash"), "{limit:?}");
}

/// Issue 27: keyed layers record a hash of the key (so a viewer groups one key's calls)
/// and never the key, which may be a user's prompt.
#[cfg(all(feature = "cache", feature = "batch"))]
#[tokio::test(flavor = "current_thread")]
async fn keyed_layers_record_a_hash_of_the_key_never_the_key() {
    use backstop::batch::{BatchConfig, BatchLayer};
    use backstop::cache::{CacheLayer, TieredCache};

    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let cache: TieredCache<String, usize> = TieredCache::in_memory(10).unwrap();
    let cached = CacheLayer::new(cache).layer(
        service_fn(|prompt: String| async move { Ok::<_, std::io::Error>(prompt.len()) }).lift(),
    );
    let secret = "my card number is 4111";
    for _ in 0..2 {
        assert_eq!(cached.call(secret.to_string()).await.unwrap(), secret.len());
    }
    let captured = spans.take();
    assert_eq!(captured.len(), 2, "{captured:#?}");
    for span in &captured {
        assert_eq!(span.name, "backstop.cache");
        assert_eq!(
            span.fields["key_hash"],
            key_hash(secret),
            "the same key, the same hash"
        );
        assert_eq!(span.fields["outcome"], "ok");
    }
    assert_no_field_holds(&captured, secret);

    let batched = BatchLayer::new(BatchConfig::default())
        .unwrap()
        .key(|prompt: &String| prompt.clone())
        .layer(
            service_fn(|prompts: Vec<String>| async move {
                Ok::<_, std::io::Error>(prompts.iter().map(String::len).collect::<Vec<_>>())
            })
            .lift(),
        );
    assert_eq!(
        batched.call(secret.to_string()).await.unwrap(),
        secret.len()
    );
    let captured = spans.take();
    let batch = find(&captured, "backstop.batch");
    assert_eq!(batch.fields["key_hash"], key_hash(secret));
    assert_eq!(batch.fields["outcome"], "ok");
    assert_no_field_holds(&captured, secret);
}

/// Issue 27: the stream layers open a span per call too, with the key hashed, and the
/// upstream they open (when the stream is first polled) runs inside it, so the layers
/// below nest under it in a trace viewer.
#[cfg(feature = "cache")]
#[tokio::test(flavor = "current_thread")]
async fn stream_layers_make_spans_the_upstream_nests_under() {
    use backstop::cache::{StreamCache, StreamCacheLayer, TieredCache};
    use backstop::dedup::{StreamDedupLayer, StreamGroup};
    use futures::StreamExt;

    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let model = || {
        service_fn(|prompt: String| async move {
            let tokens = prompt
                .split(' ')
                .map(|t| Ok(t.to_string()))
                .collect::<Vec<_>>();
            Ok::<_, Error<std::io::Error>>(futures::stream::iter(tokens))
        })
    };
    let limited = || RateLimitLayer::new(RateLimiter::new(Quota::per_second(100).unwrap()));

    let shared = StreamDedupLayer::new(StreamGroup::new()).layer(limited().layer(model()));
    let stream = shared.call("hello there".to_string()).await.unwrap();
    assert_eq!(stream.collect::<Vec<_>>().await.len(), 2);
    let captured = spans.take();
    let dedup = find(&captured, "backstop.stream_dedup");
    assert_eq!(dedup.parent, None);
    assert_eq!(dedup.fields["key_hash"], key_hash("hello there"));
    assert_eq!(dedup.fields["outcome"], "ok");
    let limit = find(&captured, "backstop.limit");
    assert_eq!(limit.parent, Some("backstop.stream_dedup"));
    assert_no_field_holds(&captured, "hello there");

    let streams = StreamCache::builder(TieredCache::in_memory(100).unwrap(), StreamGroup::new())
        .build()
        .unwrap();
    let cached = StreamCacheLayer::new(streams).layer(limited().layer(model()));
    let first = cached.call("hello again".to_string()).await.unwrap();
    assert_eq!(first.collect::<Vec<_>>().await.len(), 2);
    let captured = spans.take();
    let cache = find(&captured, "backstop.stream_cache");
    assert_eq!(cache.fields["key_hash"], key_hash("hello again"));
    assert_eq!(cache.fields["outcome"], "ok");
    assert_eq!(
        find(&captured, "backstop.limit").parent,
        Some("backstop.stream_cache")
    );
    let replay = cached.call("hello again".to_string()).await.unwrap();
    assert!(replay.is_replay());
    let captured = spans.take();
    assert_eq!(
        captured.len(),
        1,
        "a replay calls nothing below: {captured:#?}"
    );
    assert_eq!(captured[0].fields["key_hash"], key_hash("hello again"));
}
