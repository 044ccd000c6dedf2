//! Where requests go when one provider is degraded and one key is exhausted, on simulated
//! (paused) time.
//!
//! `cargo bench --bench route_quality` prints one line per figure,
//! `<metric> workload=degraded contender=<round_robin|tower_p2c|backstop> value=<v>`:
//!
//! - `error_rate`: requests that failed, as a fraction of all;
//! - `p99_ms`: the 99th-percentile end-to-end latency, fallbacks included;
//! - `provider_429s`: 429s the providers returned.
//!
//! The workload: four targets, two keys of a healthy provider (`openai-a` with room,
//! `openai-b` whose 10,000 tokens per minute are exhausted after ten requests) and two keys
//! of a degraded provider (`anthropic-a`, `-b`: median 600 ms and 30 % 503s); 20 requests of
//! 1,000 tokens per second for two minutes, open loop. `round_robin` rotates over the
//! targets; `tower_p2c` is `tower::balance::p2c` over `PeakEwma` services; neither falls
//! back (a single attempt each, as those balancers do alone). `backstop` is a
//! [`Router`] configured as a gateway would be: the first provider's keys in group 0, the
//! second provider as the fallback group 1, each key's token budget known, the default
//! cooldowns, at most 3 attempts within one 10 s deadline. (With all four targets in one
//! group, power of two choices draws the two degraded targets together a third of the time
//! once the exhausted key is skipped, so the p99 is the degraded provider's: priority
//! groups are how a router keeps a known-worse provider for fallback only.)

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use backstop::core::{Error, TokioClock};
use backstop::limit::{Quota, RateLimiter};
use backstop::route::{ErrorClass, RouteConfig, RouteHints, Router, TargetConfig, standard_class};
use tokio::time::Instant;
use tower::ServiceExt as _;

const TOKENS: u64 = 1_000;
const REQUESTS: usize = 2_400;
const GAP: Duration = Duration::from_millis(50);

/// A provider's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    TooMany,
    Unavailable,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Failure {}

struct Upstream {
    name: &'static str,
    group: u32,
    median_ms: f64,
    error_rate: f64,
    tokens_per_minute: u64,
}

const UPSTREAMS: [Upstream; 4] = [
    Upstream {
        name: "openai-a",
        group: 0,
        median_ms: 80.0,
        error_rate: 0.0,
        tokens_per_minute: 2_000_000,
    },
    Upstream {
        name: "openai-b",
        group: 0,
        median_ms: 80.0,
        error_rate: 0.0,
        tokens_per_minute: 10_000,
    },
    Upstream {
        name: "anthropic-a",
        group: 1,
        median_ms: 600.0,
        error_rate: 0.3,
        tokens_per_minute: 2_000_000,
    },
    Upstream {
        name: "anthropic-b",
        group: 1,
        median_ms: 600.0,
        error_rate: 0.3,
        tokens_per_minute: 2_000_000,
    },
];

/// The simulated providers: latency, errors and each key's real budget.
struct Providers {
    rng: Mutex<fastrand::Rng>,
    budgets: Vec<RateLimiter<TokioClock>>,
    too_many: Mutex<u64>,
}

impl Providers {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(fastrand::Rng::with_seed(21)),
            budgets: UPSTREAMS
                .iter()
                .map(|u| {
                    let quota = Quota::per_minute(u.tokens_per_minute).expect("valid quota");
                    RateLimiter::with_clock(quota, TokioClock)
                })
                .collect(),
            too_many: Mutex::new(0),
        })
    }

    async fn serve(&self, index: usize) -> Result<(), Failure> {
        let upstream = &UPSTREAMS[index];
        let (latency, fails) = {
            let mut rng = self.rng.lock().expect("not poisoned");
            let (u1, u2) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
            let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let ms = upstream.median_ms * (0.3 * normal).exp();
            (
                Duration::from_secs_f64(ms / 1_000.0),
                rng.f64() < upstream.error_rate,
            )
        };
        if self.budgets[index].check_n(TOKENS).is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            *self.too_many.lock().expect("not poisoned") += 1;
            return Err(Failure::TooMany);
        }
        tokio::time::sleep(latency).await;
        if fails {
            Err(Failure::Unavailable)
        } else {
            Ok(())
        }
    }
}

/// Open-loop arrivals; returns each request's (latency, succeeded).
async fn drive<F, Fut>(send: F) -> Vec<(Duration, bool)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let request = send();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let ok = request.await;
            (started.elapsed(), ok)
        }));
        tokio::time::sleep(GAP).await;
    }
    let mut out = Vec::with_capacity(REQUESTS);
    for task in tasks {
        out.push(task.await.expect("no panic"));
    }
    out
}

fn report(contender: &str, outcomes: &[(Duration, bool)], providers: &Providers) {
    let failed = outcomes.iter().filter(|(_, ok)| !ok).count();
    let mut latencies: Vec<Duration> = outcomes.iter().map(|(d, _)| *d).collect();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    let too_many = *providers.too_many.lock().expect("not poisoned");
    println!(
        "error_rate workload=degraded contender={contender} value={:.4}",
        failed as f64 / outcomes.len() as f64
    );
    println!(
        "p99_ms workload=degraded contender={contender} value={:.1}",
        p99.as_secs_f64() * 1_000.0
    );
    println!("provider_429s workload=degraded contender={contender} value={too_many}");
}

async fn round_robin() {
    let providers = Providers::new();
    let next = Arc::new(Mutex::new(0usize));
    let outcomes = drive(|| {
        let (providers, next) = (providers.clone(), next.clone());
        async move {
            let index = {
                let mut next = next.lock().expect("not poisoned");
                *next += 1;
                *next % UPSTREAMS.len()
            };
            providers.serve(index).await.is_ok()
        }
    })
    .await;
    report("round_robin", &outcomes, &providers);
}

async fn tower_p2c() {
    let providers = Providers::new();
    let services: Vec<_> = (0..UPSTREAMS.len())
        .map(|index| {
            let providers = providers.clone();
            tower::load::PeakEwma::new(
                tower::service_fn(move |_: ()| {
                    let providers = providers.clone();
                    async move { providers.serve(index).await }
                }),
                Duration::from_millis(100),
                10e9,
                tower::load::CompleteOnResponse::default(),
            )
        })
        .collect();
    let balance = Arc::new(tokio::sync::Mutex::new(tower::balance::p2c::Balance::new(
        tower::discover::ServiceList::new(services),
    )));
    let outcomes = drive(|| {
        let balance = balance.clone();
        async move {
            let call = {
                let mut balance = balance.lock().await;
                match balance.ready().await {
                    Ok(ready) => tower::Service::call(ready, ()),
                    Err(_) => return false,
                }
            };
            call.await.is_ok()
        }
    })
    .await;
    report("tower_p2c", &outcomes, &providers);
}

fn classify(error: &Error<Failure>) -> ErrorClass {
    match error.inner() {
        Some(Failure::TooMany) => ErrorClass::RateLimited { retry_after: None },
        Some(Failure::Unavailable) => ErrorClass::ServerError,
        None => standard_class(error),
    }
}

async fn backstop() {
    let providers = Providers::new();
    let router: Router = RouteConfig {
        targets: UPSTREAMS
            .iter()
            .map(|u| TargetConfig {
                group: u.group,
                tokens_per_minute: Some(u.tokens_per_minute),
                ..TargetConfig::named(u.name)
            })
            .collect(),
        max_attempts: 3,
        timeout: Some(Duration::from_secs(10)),
        ..RouteConfig::default()
    }
    .build()
    .expect("valid config");
    let outcomes = drive(|| {
        let (providers, router) = (providers.clone(), router.clone());
        async move {
            let hints = RouteHints::new().tokens(TOKENS);
            router
                .run(&hints, &classify, |target| {
                    let (providers, index) = (providers.clone(), target.index());
                    async move { providers.serve(index).await.map_err(Error::Inner) }
                })
                .await
                .is_ok()
        }
    })
    .await;
    report("backstop", &outcomes, &providers);
}

fn main() {
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    };
    rt().block_on(round_robin());
    rt().block_on(tower_p2c());
    rt().block_on(backstop());
}
