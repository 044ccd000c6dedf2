//! The gateway's layers, built from a `BackstopConfig` (or this example's defaults for
//! every section the file leaves out).

use backstop::batch::{BatchConfig, BatchLayer, Batcher};
use backstop::breaker::{Breaker, BreakerLayer};
use backstop::cache::{CacheLayer, TieredCache};
use backstop::config::{
    BackstopConfig, BuildError, CacheSection, PersistentTierSection, RedisTierSection, SloSection,
};
use backstop::core::{BoxService, Layer, Service, ServiceExt, Stack, service_fn};
use backstop::dedup::{DedupLayer, DedupWindow, DedupWindowConfig};
use backstop::limit::{Quota, RateLimitLayer};
use backstop::pool::{Pool, PoolConfig};
use backstop::retry::{Retry, RetryDecision, RetryLayer};
use backstop::route::{
    ErrorClass, RouteConfig, RouteLayer, Routed, Router, TargetConfig, standard_class,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::args::Args;
use crate::autoscale::PathLoad;
use crate::fleet::Ask;
use crate::outcome::{GatewayError, GatewayResult};
use crate::provider::{Answer, Connections, Provider, ProviderError};

/// The whole stack as one named type: limit → dedup → cache → breaker → batcher →
/// provider, with one error type throughout.
pub(crate) type GatewayService = BoxService<Ask, Answer, GatewayError>;

/// The assembled stack and a handle on each component, for the progress line and summary.
pub(crate) struct Gateway {
    service: GatewayService,
    pub(crate) providers: Vec<Arc<Provider>>,
    pub(crate) router: Router,
    pub(crate) cache: TieredCache<String, Answer>,
    pub(crate) dedup: DedupWindow<String, Answer, Arc<GatewayError>>,
    pub(crate) breaker: Breaker,
    pub(crate) retry: Retry,
    pub(crate) batcher: Batcher<Ask, Answer>,
    pub(crate) pool: Pool<Connections>,
    opened: Arc<AtomicU64>,
}

impl Gateway {
    pub(crate) async fn call(&self, ask: Ask) -> GatewayResult {
        self.service.call(ask).await
    }

    pub(crate) fn tier_names(&self) -> Vec<String> {
        self.cache
            .stats()
            .tiers
            .into_iter()
            .map(|(name, _)| name)
            .collect()
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

pub(crate) fn default_slo() -> SloSection {
    SloSection {
        p95_latency: Duration::from_millis(500),
        max_error_rate: 0.15,
        min_cache_hit_rate: 0.50,
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
    let budgets = RateLimitLayer::new(budget)
        .key(|ask: &Ask| ask.user.clone())
        .cost(|ask: &Ask| [1, ask.budget_cost()]);

    let dedup = DedupWindow::new(config.dedup.clone().unwrap_or(DedupWindowConfig {
        ttl: Duration::from_secs(2),
        ..DedupWindowConfig::default()
    }))
    .map_err(|e| e.within("dedup"))?;

    let cache = cache_section(config, scratch).build::<Answer>().await?;

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
            let provider = providers
                .iter()
                .find(|p| p.name == routed.target.provider())
                .cloned();
            async move {
                let provider = provider.ok_or_else(|| {
                    ProviderError::Connection(format!(
                        "no provider named {:?}",
                        routed.target.provider()
                    ))
                })?;
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
        .classify(route_class)
        .layer(completions);
    let batched = BatchLayer::new(batch_config)
        .map_err(|e| e.within("batch"))?
        .layer(routed);
    let batcher = batched.batcher().clone();

    let service = Stack::new()
        .layer(budgets)
        .layer(DedupLayer::new(dedup.clone()).key(|ask: &Ask| ask.prompt.clone()))
        .layer(CacheLayer::new(cache.clone()).key(|ask: &Ask| Some(ask.prompt.clone())))
        .layer(RetryLayer::new(retry.clone()).classify(retry_decision))
        .layer(BreakerLayer::new(breaker.clone()))
        .service(batched)
        .boxed();
    Ok(Arc::new(Gateway {
        service,
        providers,
        router,
        cache,
        dedup,
        breaker,
        retry,
        batcher,
        pool,
        opened,
    }))
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

/// A provider's own failures in the router's terms: its 429 cools the target down, an
/// outage or a transient error is a server error, anything else the router knows already.
fn route_class(error: &GatewayError) -> ErrorClass {
    match error.inner() {
        Some(ProviderError::RateLimited) => ErrorClass::RateLimited { retry_after: None },
        Some(_) => ErrorClass::ServerError,
        None => standard_class(error),
    }
}

/// Retries only what a second attempt can fix: a transient provider error, the provider's
/// own 429 or a dropped connection. An outage is the breaker's to handle and a refusal by
/// the gateway's own primitives the agent's to weigh.
fn retry_decision(error: &GatewayError) -> RetryDecision {
    match error.inner() {
        Some(
            ProviderError::Transient | ProviderError::RateLimited | ProviderError::Connection(_),
        ) => RetryDecision::Retry,
        _ => RetryDecision::Stop,
    }
}

/// The configured cache, else a small memory L1 (so lower tiers see traffic) over Redis
/// when `REDIS_URL` is set; without Redis, a file tier in `scratch` takes its place.
fn cache_section(config: &BackstopConfig, scratch: &Path) -> CacheSection {
    let mut section = config.cache.clone().unwrap_or_else(|| {
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
    });
    if section.redis_url().is_none() && section.persistent.is_none() {
        section.redis = None;
        section.persistent = Some(PersistentTierSection {
            path: scratch.join("responses.redb"),
            ..PersistentTierSection::default()
        });
    }
    section
}
