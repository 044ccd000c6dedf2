//! The gateway's layers, built from a `BackstopConfig` (or this example's defaults for
//! every section the file leaves out).

use backstop::batch::{BatchConfig, BatchLayer, Batcher};
use backstop::breaker::{Breaker, BreakerLayer};
use backstop::cache::{
    CacheLayer, L1Invalidation, StreamCache, StreamCacheLayer, StreamRecord, TieredCache,
};
use backstop::config::{
    BackstopConfig, BuildError, CacheSection, PersistentTierSection, RedisSection, RedisTierSection,
};
use backstop::core::{BoxService, Layer, RejectKind, Service, ServiceExt, Stack, service_fn};
use backstop::dedup::{
    DedupLayer, DedupWindow, DedupWindowConfig, SharedStream, StreamDedupLayer, StreamGroup,
};
use backstop::limit::{AdaptiveLayer, Quota, RateLimitLayer, TokenUsage};
use backstop::pool::{Pool, PoolConfig};
use backstop::retry::{Retry, RetryDecision, RetryLayer, StreamTimeouts, hinted_decision};
use backstop::route::{HintedRouteClassify, RouteConfig, RouteLayer, Routed, Router, TargetConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use crate::adaptive::{self, Admission};
use crate::args::Args;
use crate::autoscale::PathLoad;
use crate::billing::Billing;
use crate::fleet::Ask;
use crate::outcome::{GatewayError, GatewayResult};
use crate::provider::{Answer, Chunk, Connections, Provider, ProviderError};
use crate::streaming::{Bill, Metered, Role, StreamAsk};

/// The whole-answer stack as one named type: limit → dedup → cache → adaptive limit →
/// retry → breaker → batcher → router → pool → provider, with one error type throughout.
pub(crate) type GatewayService = BoxService<Ask, Answer, GatewayError>;

/// The streaming stack as one named type: limit → stream dedup → stream cache → adaptive
/// limit (held for the whole stream) → retry (until the first token) → breaker → router →
/// provider.
pub(crate) type StreamService =
    BoxService<StreamAsk, SharedStream<Chunk, GatewayError>, GatewayError>;

/// The assembled stack and a handle on each component, for the progress line and summary.
pub(crate) struct Gateway {
    service: GatewayService,
    stream_service: StreamService,
    pub(crate) admission: Admission,
    pub(crate) billing: Billing,
    pub(crate) stream_group: StreamGroup<String, Chunk, GatewayError>,
    pub(crate) streams: StreamCache<String, Chunk, GatewayError>,
    pub(crate) providers: Vec<Arc<Provider>>,
    pub(crate) router: Router,
    pub(crate) cache: TieredCache<String, Answer>,
    pub(crate) dedup: DedupWindow<String, Answer, Arc<GatewayError>>,
    pub(crate) breaker: Breaker,
    pub(crate) retry: Retry,
    pub(crate) batcher: Batcher<Ask, Answer>,
    pub(crate) pool: Pool<Connections>,
    /// Where the cache's shared tier lives, for the start-up line.
    pub(crate) redis: String,
    /// The subscriptions that drop L1 copies other processes changed, one per cache on
    /// the shared Redis; dropping them stops it.
    invalidations: Vec<L1Invalidation>,
    opened: Arc<AtomicU64>,
}

impl Gateway {
    pub(crate) async fn call(&self, ask: Ask) -> GatewayResult {
        self.service.call(ask).await
    }

    /// Reads one streamed answer to its end: the result, and (once a token arrived) how
    /// the stream was served and the time to its first token.
    pub(crate) async fn stream(&self, ask: Ask) -> (GatewayResult<()>, Option<(Role, Duration)>) {
        use futures::StreamExt;
        let request = StreamAsk::new(ask);
        let role = request.role_handle();
        let asked = Instant::now();
        let mut stream = match self.stream_service.call(request).await {
            Ok(stream) => stream,
            Err(error) => return (Err(error), None),
        };
        let mut first = None;
        let mut result = Ok(());
        while let Some(chunk) = stream.next().await {
            if let Err(error) = chunk {
                result = Err(error);
                break;
            }
            first.get_or_insert_with(|| asked.elapsed());
        }
        (result, first.map(|took| (role.get(), took)))
    }

    pub(crate) fn tier_names(&self) -> Vec<String> {
        self.cache
            .stats()
            .tiers
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Other processes' cache writes applied to this process's L1s.
    pub(crate) fn l1_invalidations(&self) -> u64 {
        self.invalidations
            .iter()
            .map(|subscription| subscription.stats().applied)
            .sum()
    }

    pub(crate) fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The batcher's queue and the pool, as one load signal for the autoscaler.
    pub(crate) fn path_load(&self) -> Arc<PathLoad> {
        Arc::new(PathLoad {
            stages: vec![Arc::new(self.batcher.clone()), Arc::new(self.pool.clone())],
        })
    }
}

pub(crate) async fn build(
    config: &BackstopConfig,
    args: &Args,
    scratch: &Path,
) -> Result<Arc<Gateway>, BuildError> {
    let limit = config.limit.clone().unwrap_or_default();
    // Requests and tokens are charged together: a call refused on either spends neither.
    let budget = limit.budget_limiter(
        Quota::per_minute(900)?.with_burst(30)?,
        Quota::per_minute(500_000)?.with_burst(20_000)?,
    )?;
    let budgets = RateLimitLayer::new(budget.clone())
        .key(|ask: &Ask| ask.user.clone())
        .cost(|ask: &Ask| [1, ask.budget_cost()]);

    let dedup = DedupWindow::new(config.dedup.clone().unwrap_or(DedupWindowConfig {
        ttl: Duration::from_secs(2),
        ..DedupWindowConfig::default()
    }))
    .map_err(|e| e.within("dedup"))?;

    let shared = Caches::new(config, scratch);
    let (cache, answers_subscription) = shared
        .build::<Answer>(answer_section(config), "responses.redb")
        .await?;
    let admission = Admission::new(config.limit.as_ref().and_then(|l| l.adaptive.as_ref()))
        .map_err(|message| BuildError::Backend {
            section: "limit.adaptive",
            message,
        })?;
    let billing = Billing::new(config.budget.as_ref()).map_err(|message| BuildError::Backend {
        section: "budget",
        message,
    })?;

    let breaker = match config.breakers()? {
        Some(registry) => registry.get("provider"),
        None => Breaker::builder()
            .name("provider")
            .count_window(40)
            .minimum_calls(20)
            .failure_rate_threshold(50.0)
            .wait_in_open(Duration::from_millis(800))
            .permitted_calls_in_half_open(4)
            .build()?,
    };

    // Retries stay inside the budget's share of the load, so an outage is not tripled.
    let retry = config
        .retry
        .clone()
        .unwrap_or_default()
        .build()
        .map_err(|e| e.within("retry"))?;

    let opened = Arc::new(AtomicU64::new(0));
    let pool_config = match &config.pool {
        Some(pool) => pool.clone(),
        None => PoolConfig::builder()
            .max_size(16)
            .min_idle(4)
            .wait_timeout(Duration::from_secs(2))
            .build()?,
    };
    let pool = Pool::new(
        Connections {
            opened: opened.clone(),
        },
        pool_config,
    )
    .map_err(|error| BuildError::Backend {
        section: "pool",
        message: error.to_string(),
    })?;

    let providers = vec![Provider::new(args.duration), Provider::fallback()];
    let router = match &config.route {
        Some(route) => route.clone(),
        None => default_route(),
    }
    .build()
    .map_err(|e| e.within("route"))?;
    let batch_config = config.batch.clone().unwrap_or(BatchConfig {
        max_batch_size: 16,
        max_delay: Duration::from_millis(25),
        queue_capacity: 4096,
        max_concurrent_batches: 16,
        ..BatchConfig::default()
    });
    // Each batch goes to the provider the router picked for it.
    let completions = {
        let (pool, providers) = (pool.clone(), providers.clone());
        service_fn(move |routed: Routed<Vec<Ask>>| {
            let pool = pool.clone();
            let provider = provider_named(&providers, routed.target.provider());
            async move {
                let provider = provider?;
                let _connection = pool
                    .get()
                    .await
                    .map_err(|error| ProviderError::Connection(error.to_string()))?;
                provider.complete(routed.request).await
            }
        })
        .lift()
    };
    let routed = RouteLayer::new(router.clone())
        .cost(|batch: &Vec<Ask>| batch.iter().map(Ask::budget_cost).sum::<u64>())
        .classify(HintedRouteClassify)
        .layer(completions);
    let batched = BatchLayer::new(batch_config)
        .map_err(|e| e.within("batch"))?
        .layer(routed);
    let batcher = batched.batcher().clone();

    let classes = admission.clone();
    let provider_calls = Arc::new(
        Stack::new()
            .layer(
                AdaptiveLayer::new(admission.limiter.clone())
                    .key(move |ask: &Ask| classes.class(ask.priority))
                    .classify(adaptive::outcome::<Answer>),
            )
            .layer(RetryLayer::new(retry.clone()).classify(retry_decision))
            .layer(BreakerLayer::new(breaker.clone()))
            .service(batched),
    );
    // Only a cache miss reaches the provider: it reserves its estimate on the key, team
    // and org budgets, and is settled with the answer's usage.
    let charged = {
        let billing = billing.clone();
        service_fn(move |ask: Ask| {
            let (provider_calls, billing) = (provider_calls.clone(), billing.clone());
            async move {
                let reservation = billing.reserve(&ask)?;
                let result = provider_calls.call(ask.clone()).await;
                let used = result.as_ref().ok().map(|answer| {
                    let usage = TokenUsage::new(ask.prompt_tokens, answer.completion_tokens);
                    (answer.model.as_str(), usage)
                });
                billing.settle(reservation, used);
                result
            }
        })
    };
    let service = Stack::new()
        .layer(budgets)
        .layer(DedupLayer::new(dedup.clone()).key(|ask: &Ask| ask.prompt.clone()))
        .layer(CacheLayer::new(cache.clone()).key(|ask: &Ask| Some(ask.prompt.clone())))
        .service(charged)
        .boxed();

    // Streams: the provider's stream under the breaker and the router, holding an
    // adaptive permit until it ends; the cache replays finished streams and stores new
    // ones; the deduplicator in front shares one in flight among identical asks.
    let provider_streams = {
        let providers = providers.clone();
        service_fn(move |routed: Routed<StreamAsk>| {
            let provider = provider_named(&providers, routed.target.provider());
            async move {
                let provider = provider?;
                Ok((provider.model, provider.stream(&routed.request.ask).await?))
            }
        })
        .lift()
    };
    let open_stream = Arc::new(
        Stack::new()
            .layer(BreakerLayer::new(breaker.clone()))
            .layer(
                RouteLayer::new(router.clone())
                    .cost(|request: &StreamAsk| request.ask.budget_cost())
                    .classify(HintedRouteClassify),
            )
            .service(provider_streams),
    );
    let metered = {
        let (admission, billing, retry) = (admission.clone(), billing.clone(), retry.clone());
        service_fn(move |request: StreamAsk| {
            let (open_stream, admission) = (open_stream.clone(), admission.clone());
            let (billing, retry) = (billing.clone(), retry.clone());
            async move {
                let reservation = billing.reserve(&request.ask)?;
                let permit = admission.acquire(request.ask.priority).await?;
                let prompt_tokens = request.ask.prompt_tokens;
                // Retried like a whole answer (same policy, budget and deadline) until its
                // first chunk; a stream cut after that ends with its error, never replayed.
                let model = std::sync::Mutex::new(None);
                let opened = retry
                    .stream(&retry_decision, STREAM_TIMEOUTS, || async {
                        let (opened_model, stream) = open_stream.call(request.clone()).await?;
                        *model.lock().unwrap_or_else(|e| e.into_inner()) = Some(opened_model);
                        Ok(stream)
                    })
                    .await
                    .and_then(|stream| {
                        match model.into_inner().unwrap_or_else(|e| e.into_inner()) {
                            Some(model) => Ok((model, stream)),
                            None => Err(GatewayError::Inner(ProviderError::Connection(
                                "a stream opened without naming its model".into(),
                            ))),
                        }
                    });
                match opened {
                    Ok((model, stream)) => {
                        let bill = Bill {
                            billing,
                            reservation,
                            model,
                            prompt_tokens,
                        };
                        Ok(Metered::new(Box::pin(stream), permit, Some(bill)))
                    }
                    Err(error) => {
                        permit.complete(adaptive::error_outcome(&error));
                        billing.settle(reservation, None);
                        Err(error)
                    }
                }
            }
        })
    };
    let (stream_tiers, streams_subscription) = shared
        .build::<StreamRecord<Chunk>>(stream_section(config), "streams.redb")
        .await?;
    let streams = StreamCache::builder(stream_tiers, StreamGroup::new())
        .weigher(|chunk: &Chunk| chunk.text.len())
        .build()
        .map_err(|e| e.within("cache"))?;
    let cached = Arc::new(
        StreamCacheLayer::new(streams.clone())
            .key(|request: &StreamAsk| Some(request.ask.prompt.clone()))
            .layer(metered),
    );
    // Between the deduplicator and the cache: only a request that opened a shared stream
    // gets here, and the cache says whether it replayed.
    let marked = service_fn(move |request: StreamAsk| {
        let cached = cached.clone();
        async move {
            let note = request.clone();
            let stream = cached.call(request).await?;
            note.mark(if stream.is_replay() {
                Role::Hit
            } else {
                Role::Leader
            });
            Ok::<_, GatewayError>(stream)
        }
    });
    let stream_group = StreamGroup::new();
    let stream_service = Stack::new()
        .layer(
            RateLimitLayer::new(budget)
                .key(|request: &StreamAsk| request.ask.user.clone())
                .cost(|request: &StreamAsk| [1, request.ask.budget_cost()]),
        )
        .layer(
            StreamDedupLayer::new(stream_group.clone())
                .key(|request: &StreamAsk| request.ask.prompt.clone()),
        )
        .service(marked)
        .boxed();

    Ok(Arc::new(Gateway {
        service,
        stream_service,
        admission,
        billing,
        stream_group,
        streams,
        providers,
        router,
        cache,
        dedup,
        breaker,
        retry,
        batcher,
        pool,
        redis: shared.describe(),
        invalidations: [answers_subscription, streams_subscription]
            .into_iter()
            .flatten()
            .collect(),
        opened,
    }))
}

/// The provider a routed call's target names.
fn provider_named(providers: &[Arc<Provider>], name: &str) -> Result<Arc<Provider>, ProviderError> {
    let provider = providers.iter().find(|provider| provider.name == name);
    provider
        .cloned()
        .ok_or_else(|| ProviderError::Connection(format!("no provider named {name:?}")))
}

/// Two targets: the primary provider, and the fallback provider tried only when the primary
/// fails or cools down.
fn default_route() -> RouteConfig {
    RouteConfig {
        targets: vec![
            TargetConfig {
                provider: "primary".into(),
                ..TargetConfig::named("primary")
            },
            TargetConfig {
                provider: "fallback".into(),
                group: 1,
                ..TargetConfig::named("fallback")
            },
        ],
        ..RouteConfig::default()
    }
}

/// Retries only what a second attempt can fix: a transient provider error, the provider's
/// own 429 (after its `Retry-After`, which the policy's `max_retry_after` bounds), a dropped
/// connection, or a stream silent past its time to first token. An outage is the
/// breaker's to handle and any other refusal by the gateway's own primitives the agent's
/// to weigh.
fn retry_decision(error: &GatewayError) -> RetryDecision {
    match error.inner() {
        Some(ProviderError::Outage) => RetryDecision::Stop,
        Some(_) => hinted_decision(error),
        None if error
            .rejection()
            .is_some_and(|r| r.kind == RejectKind::Timeout) =>
        {
            RetryDecision::Retry
        }
        None => RetryDecision::Stop,
    }
}

/// A provider stream's timeouts: its first token within 2 s (the simulated provider's
/// median is 35 ms; a stream silent that long is stuck, and is retried), then no gap
/// between tokens over 1 s (a stream cut after its first token ends with a timeout).
const STREAM_TIMEOUTS: StreamTimeouts = StreamTimeouts {
    first_chunk: Duration::from_secs(2),
    idle: Duration::from_secs(1),
};

/// How the caches are built: on the fleet's shared Redis connection when there is one,
/// else over a file tier in `scratch`.
struct Caches<'a> {
    config: &'a BackstopConfig,
    /// `[backstop.redis]`, else one made from `REDIS_CLUSTER_NODES` or `REDIS_URL`.
    redis: Option<RedisSection>,
    scratch: &'a Path,
}

impl<'a> Caches<'a> {
    fn new(config: &'a BackstopConfig, scratch: &'a Path) -> Self {
        Self {
            config,
            redis: config.redis.clone().or_else(redis_from_env),
            scratch,
        }
    }

    /// The Redis the cache's shared tier uses, in words.
    fn describe(&self) -> String {
        match &self.redis {
            None => "none".to_string(),
            Some(redis) if !redis.cluster_nodes.is_empty() => {
                format!("cluster, {} seed nodes", redis.cluster_nodes.len())
            }
            Some(redis) if redis.sentinel.is_some() => "behind Sentinel".to_string(),
            Some(redis) if redis.url.is_some() => "one server".to_string(),
            Some(redis) => format!("one server from ${}", redis.url_env),
        }
    }

    /// The tiered cache of `section`: its Redis tier on the shared connection, with the
    /// L1 subscribed to other processes' writes (the subscription is returned), when
    /// there is a shared Redis and the section has a Redis tier naming no URL of its own;
    /// otherwise the section as written, with a file tier named `file` in `scratch` in
    /// place of a Redis tier that has no Redis to use.
    async fn build<V>(
        &self,
        mut section: CacheSection,
        file: &str,
    ) -> Result<(TieredCache<String, V>, Option<L1Invalidation>), BuildError>
    where
        V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        let own_url = section
            .redis
            .as_ref()
            .is_some_and(|tier| tier.url.is_some());
        if section.redis.is_some() && !own_url && self.redis.is_some() {
            let mut fleet = self.config.clone();
            fleet.redis = self.redis.clone();
            fleet.cache = Some(section);
            return match fleet.redis_cache::<V>().await? {
                Some(built) => Ok(built),
                None => Err(BuildError::Backend {
                    section: "cache",
                    message: "no cache section to build".to_string(),
                }),
            };
        }
        if !own_url {
            section.redis = None;
        }
        if section.redis.is_none() && section.persistent.is_none() {
            section.persistent = Some(PersistentTierSection {
                path: self.scratch.join(file),
                ..PersistentTierSection::default()
            });
        }
        Ok((section.build::<V>().await?, None))
    }
}

/// `[backstop.redis]` for a file that has none: a cluster from `REDIS_CLUSTER_NODES`
/// (comma-separated `host:port` seeds), else one server from `REDIS_URL`.
fn redis_from_env() -> Option<RedisSection> {
    let set = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let Some(nodes) = set("REDIS_CLUSTER_NODES") {
        return Some(RedisSection {
            cluster_nodes: nodes
                .split(',')
                .map(|node| node.trim().to_string())
                .collect(),
            ..RedisSection::default()
        });
    }
    set("REDIS_URL").map(|_| RedisSection::default())
}

/// The configured answer cache, else a small memory L1 (so lower tiers see traffic) over
/// a Redis tier under this run's own namespace.
fn answer_section(config: &BackstopConfig) -> CacheSection {
    config.cache.clone().unwrap_or_else(|| {
        let mut section = CacheSection::default();
        section.memory.max_capacity = 256;
        section.redis = Some(RedisTierSection {
            namespace: format!("agent-gateway:{}:", std::process::id()),
            // Each run writes under its own namespace; expiring the answers keeps a
            // shared Redis from collecting one set per run.
            ttl: Some(Duration::from_secs(300)),
            ..RedisTierSection::default()
        });
        section
    })
}

/// The answer cache's tiers for streams: their own Redis namespace and file, so a
/// recorded stream never meets a whole answer under the same key.
fn stream_section(config: &BackstopConfig) -> CacheSection {
    let mut section = answer_section(config);
    if let Some(redis) = &mut section.redis {
        redis.namespace.push_str("streams:");
    }
    if let Some(file) = &mut section.persistent {
        file.path.set_extension("streams.redb");
    }
    section
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop::core::{Error, Rejected};
    use backstop::route::{ErrorClass, hinted_class};

    fn limited(retry_after: Option<Duration>) -> GatewayError {
        Error::Inner(ProviderError::RateLimited { retry_after })
    }

    #[test]
    fn a_providers_429_is_retried_after_its_retry_after_and_cools_its_target_as_long() {
        let wait = Duration::from_millis(250);
        assert_eq!(
            retry_decision(&limited(Some(wait))),
            RetryDecision::RetryAfter(wait)
        );
        assert_eq!(
            hinted_class(&limited(Some(wait))),
            ErrorClass::RateLimited {
                retry_after: Some(wait)
            }
        );
        assert_eq!(retry_decision(&limited(None)), RetryDecision::Retry);
    }

    #[test]
    fn a_silent_stream_is_retried_but_an_open_circuit_or_an_outage_is_not() {
        let timed_out: GatewayError = Rejected::new(RejectKind::Timeout).into();
        assert_eq!(retry_decision(&timed_out), RetryDecision::Retry);
        let open: GatewayError = Rejected::new(RejectKind::CircuitOpen).into();
        assert_eq!(retry_decision(&open), RetryDecision::Stop);
        assert_eq!(
            retry_decision(&Error::Inner(ProviderError::Outage)),
            RetryDecision::Stop
        );
    }
}
