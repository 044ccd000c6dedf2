//! get_or_load: coalescing, timeouts, panics, negative caching, stale-while-revalidate,
//! refresh-ahead, cancellation, warming and the cache layer.

use backstop_cache::{LoadError, TieredCache, TieredConfig};
use backstop_core::{ManualClock, RejectKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use backstop_testkit::assert_fields;
use support::MapTier;

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("provider said no")]
struct ProviderError;

type Cache = TieredCache<String, String, ManualClock>;

fn cache(config: TieredConfig) -> (Cache, ManualClock) {
    let clock = ManualClock::new();
    let cache = TieredCache::builder()
        .tier(MapTier::named("l1"), None)
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    (cache, clock)
}

/// A loader that counts its runs and answers `answer`.
fn counted(
    runs: &Arc<AtomicUsize>,
    answer: &str,
) -> impl FnOnce() -> std::future::Ready<Result<Option<String>, ProviderError>> + Send + 'static {
    let runs = runs.clone();
    let answer = answer.to_string();
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(answer)))
    }
}

/// `get_or_load` of `key` through a [`counted`] loader answering `answer`.
async fn load_counted(
    cache: &Cache,
    key: &String,
    runs: &Arc<AtomicUsize>,
    answer: &str,
) -> Option<String> {
    cache.get_or_load(key, counted(runs, answer)).await.unwrap()
}

/// A cache whose values stay fresh for 10 s, with the settings `configure` adds, `v1`
/// loaded at `key`, and the count of loader runs (that load was the first).
async fn fresh_with_v1(
    key: &String,
    configure: impl FnOnce(&mut TieredConfig),
) -> (Cache, ManualClock, Arc<AtomicUsize>) {
    let mut config = TieredConfig {
        fresh_for: Duration::from_secs(10),
        ..TieredConfig::default()
    };
    configure(&mut config);
    let (cache, clock) = cache(config);
    let runs = Arc::new(AtomicUsize::new(0));
    load_counted(&cache, key, &runs, "v1").await;
    (cache, clock, runs)
}

/// Waits for a load in the background to store `value` at `key`.
async fn until_stored(cache: &Cache, key: &String, value: &str) {
    while cache.get(key).await.as_deref() != Some(value) {
        tokio::task::yield_now().await;
    }
}

async fn until_loads(cache: &Cache, loads: u64) {
    while cache.stats().loads < loads {
        tokio::task::yield_now().await;
    }
}

/// Checks that a load of `key` on a cache holding `v1` (from [`fresh_with_v1`]) answers
/// `v1` at once, `why`, while a second load in the background stores `v2`.
async fn serves_v1_while_v2_loads(cache: &Cache, key: &String, runs: &Arc<AtomicUsize>, why: &str) {
    let served = load_counted(cache, key, runs, "v2").await;
    assert_eq!(served, Some("v1".to_string()), "{why}");
    until_loads(cache, 2).await;
    until_stored(cache, key, "v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_callers_on_a_cold_key_run_the_loader_once() {
    let (cache, _) = cache(TieredConfig::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, runs, gate) = (cache.clone(), runs.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(&"cold".to_string(), move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok::<_, ProviderError>(Some("answer".to_string()))
                    })
                    .await
            })
        })
        .collect();
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), Some("answer".to_string()));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_loader_times_out_for_every_caller() {
    let (cache, _) = cache(TieredConfig {
        loader_timeout: Some(Duration::from_secs(2)),
        ..TieredConfig::default()
    });
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, ProviderError>(Some("late".to_string()))
    };
    let key = "slow".to_string();
    let (a, b) = tokio::join!(cache.get_or_load(&key, slow), cache.get_or_load(&key, slow));
    let timed_out = |r: &Result<Option<String>, LoadError<ProviderError>>| matches!(r, Err(LoadError::Rejected(rejected)) if rejected.kind == RejectKind::Timeout);
    assert!(timed_out(&a), "{a:?}");
    assert!(timed_out(&b), "{b:?}");
    assert_eq!(cache.stats().load_failures, 2);
}

/// Issue 19: a panicking background refresh is contained and counted; the stale value
/// stays served and the next refresh runs.
#[tokio::test]
async fn a_panicking_refresh_is_counted_and_the_next_one_runs() {
    let key = "news".to_string();
    let (cache, clock, runs) =
        fresh_with_v1(&key, |c| c.stale_grace = Some(Duration::from_secs(60))).await;
    clock.advance(Duration::from_secs(11));
    let served = cache
        .get_or_load(&key, || async {
            panic!("refresh exploded");
            #[allow(unreachable_code)]
            Ok::<Option<String>, ProviderError>(None)
        })
        .await
        .unwrap();
    assert_eq!(served.as_deref(), Some("v1"));
    while cache.stats().panicked == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(cache.stats().load_failures, 1);
    let again = load_counted(&cache, &key, &runs, "v2").await;
    assert_eq!(again.as_deref(), Some("v1"), "still stale within grace");
    until_stored(&cache, &key, "v2").await;
}

/// Loads coalesce only among callers with one error type, so each gets its own `E`.
#[tokio::test]
async fn the_loader_error_keeps_its_type_for_every_caller() {
    #[derive(Debug)]
    struct Other(u8);
    let (cache, _) = cache(TieredConfig::default());
    let key = "typed".to_string();
    let gate = Arc::new(tokio::sync::Notify::new());
    let waiting = gate.clone();
    let slow = move || async move {
        waiting.notified().await;
        Err::<Option<String>, _>(ProviderError)
    };
    let first = cache.get_or_load(&key, slow.clone());
    let second = cache.get_or_load(&key, slow);
    let other = cache.get_or_load(&key, || async { Err::<Option<String>, _>(Other(7)) });
    let release = async {
        tokio::task::yield_now().await;
        gate.notify_waiters();
    };
    let (a, b, c, ()) = tokio::join!(first, second, other, release);
    let (Err(LoadError::Loader(a)), Err(LoadError::Loader(b))) = (a, b) else {
        panic!("both callers get the loader's error");
    };
    assert!(Arc::ptr_eq(&a, &b), "one shared execution");
    assert!(matches!(c, Err(LoadError::Loader(ref e)) if e.0 == 7));
}

#[tokio::test]
async fn errors_reach_the_caller_and_are_not_cached() {
    let (cache, _) = cache(TieredConfig::default());
    let key = "flaky".to_string();
    let error = cache
        .get_or_load(&key, || async { Err::<Option<String>, _>(ProviderError) })
        .await
        .unwrap_err();
    match error {
        // The loader's own type, no downcast.
        LoadError::Loader(inner) => assert_eq!(*inner, ProviderError),
        other => panic!("expected the loader's error, got {other:?}"),
    }
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        load_counted(&cache, &key, &runs, "ok").await,
        Some("ok".to_string())
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panicking_loader_is_an_error_and_the_key_is_released() {
    let (cache, _) = cache(TieredConfig::default());
    let key = "boom".to_string();
    let result = cache
        .get_or_load(&key, || async {
            panic!("loader exploded");
            #[allow(unreachable_code)]
            Ok::<Option<String>, ProviderError>(None)
        })
        .await;
    assert!(
        matches!(result, Err(LoadError::Panicked(ref panicked)) if panicked.message().contains("exploded"))
    );
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        load_counted(&cache, &key, &runs, "fine").await,
        Some("fine".to_string())
    );
}

#[tokio::test]
async fn not_found_is_remembered_only_with_a_negative_ttl() {
    let not_found = |runs: &Arc<AtomicUsize>| {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<Option<String>, ProviderError>(None))
        }
    };
    let (plain, _) = cache(TieredConfig::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let key = "ghost".to_string();
    for _ in 0..2 {
        assert_eq!(
            plain.get_or_load(&key, not_found(&runs)).await.unwrap(),
            None
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "no negative caching by default"
    );

    let (negative, clock) = cache(TieredConfig {
        negative_ttl: Some(Duration::from_secs(30)),
        ..TieredConfig::default()
    });
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        assert_eq!(
            negative.get_or_load(&key, not_found(&runs)).await.unwrap(),
            None
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(negative.stats().negative_hits, 2);
    clock.advance(Duration::from_secs(30));
    negative.get_or_load(&key, not_found(&runs)).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the negative entry expired");
}

#[tokio::test]
async fn stale_values_are_served_within_grace_while_one_refresh_runs() {
    let key = "news".to_string();
    let (cache, clock, runs) =
        fresh_with_v1(&key, |c| c.stale_grace = Some(Duration::from_secs(5))).await;

    clock.advance(Duration::from_secs(11));
    serves_v1_while_v2_loads(&cache, &key, &runs, "stale within grace, at once").await;
    assert_eq!(cache.stats().stale_served, 1);

    clock.advance(Duration::from_secs(16));
    let reloaded = load_counted(&cache, &key, &runs, "v3").await;
    assert_eq!(
        reloaded,
        Some("v3".to_string()),
        "past grace the caller waits for the load"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn values_about_to_go_stale_are_refreshed_ahead() {
    let key = "hot".to_string();
    let (cache, clock, runs) =
        fresh_with_v1(&key, |c| c.refresh_ahead = Some(Duration::from_secs(2))).await;
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        load_counted(&cache, &key, &runs, "unused").await,
        Some("v1".to_string())
    );
    assert_eq!(cache.stats().refreshes, 0, "plenty of freshness left");
    clock.advance(Duration::from_secs(4));
    serves_v1_while_v2_loads(&cache, &key, &runs, "refreshed ahead, at once").await;
    assert_eq!(cache.stats().refreshes, 1);
}

#[tokio::test]
async fn dropping_the_first_caller_does_not_lose_the_load_for_the_others() {
    let (cache, _) = cache(TieredConfig::default());
    let key = "shared".to_string();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let loader = {
        let (runs, gate) = (runs.clone(), gate.clone());
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            gate.notified().await;
            Ok::<_, ProviderError>(Some("done".to_string()))
        }
    };
    let mut first = Box::pin(cache.get_or_load(&key, loader.clone()));
    assert!(futures::poll!(first.as_mut()).is_pending());
    let mut second = Box::pin(cache.get_or_load(&key, loader));
    assert!(
        futures::poll!(second.as_mut()).is_pending(),
        "the second caller joins the load"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    drop(first);
    gate.notify_one();
    assert_eq!(second.await.unwrap(), Some("done".to_string()));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_loads_missing_keys_with_bounded_concurrency_and_reports_progress() {
    let (cache, _) = cache(TieredConfig::default());
    cache
        .insert(&"k0".to_string(), "already".to_string())
        .await
        .unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let tally = cache
        .warm_with(
            keys,
            3,
            |key: &String| {
                let (in_flight, peak, key) = (in_flight.clone(), peak.clone(), key.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    if key == "k13" {
                        Err(ProviderError)
                    } else {
                        Ok(Some(format!("loaded {key}")))
                    }
                }
            },
            |progress| reports.lock().unwrap().push(progress.done),
        )
        .await;
    assert_fields!(tally, done: 20, total: 20, cached: 19, failed: 1);
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(*reports.lock().unwrap(), (1..=20).collect::<Vec<_>>());
    assert_eq!(
        cache.get(&"k0".to_string()).await.as_deref(),
        Some("already")
    );
    assert_eq!(
        cache.get(&"k5".to_string()).await.as_deref(),
        Some("loaded k5")
    );
    assert_eq!(cache.stats().loads, 19);
}

mod layer {
    use super::*;
    use backstop_cache::CacheLayer;
    use backstop_core::{Error, Layer, Service, ServiceExt, service_fn};
    use backstop_testkit::Calls;

    #[tokio::test]
    async fn keyed_requests_are_served_from_the_cache_and_others_pass_through() {
        let (cache, _) = cache(TieredConfig::default());
        let calls = Calls::new();
        let llm = service_fn(calls.counting(|prompt: String| async move {
            if prompt == "fail" {
                Err(ProviderError)
            } else {
                Ok(format!("answer: {prompt}"))
            }
        }))
        .lift();
        let svc = CacheLayer::new(cache)
            .key(|prompt: &String| (!prompt.starts_with("nocache")).then(|| prompt.clone()))
            .layer(llm);
        assert_eq!(svc.call("a".to_string()).await.unwrap(), "answer: a");
        assert_eq!(svc.call("a".to_string()).await.unwrap(), "answer: a");
        assert_eq!(calls.count(), 1);
        svc.call("nocache-1".to_string()).await.unwrap();
        svc.call("nocache-1".to_string()).await.unwrap();
        assert_eq!(calls.count(), 3);
        let error = svc.call("fail".to_string()).await.unwrap_err();
        // The inner service's own error type comes back, not a cache wrapper.
        assert!(matches!(error, Error::Inner(ProviderError)), "{error:?}");
    }

    /// One failed load reaches every concurrent caller as the inner service's own error
    /// type, shared through `StackError::shared` (no `Clone` of the error needed).
    #[tokio::test]
    async fn a_shared_failure_reaches_every_caller_typed() {
        let (cache, _) = cache(TieredConfig::default());
        let gate = Arc::new(tokio::sync::Notify::new());
        let waiting = gate.clone();
        let llm = service_fn(move |_prompt: String| {
            let waiting = waiting.clone();
            async move {
                waiting.notified().await;
                Err::<String, _>(ProviderError)
            }
        })
        .lift();
        let svc = CacheLayer::new(cache)
            .key(|prompt: &String| Some(prompt.clone()))
            .layer(llm);
        let release = async {
            tokio::task::yield_now().await;
            gate.notify_waiters();
        };
        let (a, b, ()) = tokio::join!(svc.call("q".into()), svc.call("q".into()), release);
        for error in [a.unwrap_err(), b.unwrap_err()] {
            assert_eq!(error.inner(), Some(&ProviderError), "{error:?}");
        }
    }

    /// A loader timeout is a refusal (`RejectKind::Timeout`) in the stack's error type,
    /// and readiness is the inner service's.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_a_rejection_and_readiness_follows_the_inner_service() {
        let (cache, _) = cache(TieredConfig {
            loader_timeout: Some(Duration::from_secs(1)),
            ..TieredConfig::default()
        });
        let llm = service_fn(|_prompt: String| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ProviderError>("late".to_string())
        })
        .lift();
        let svc = CacheLayer::new(cache).layer(llm);
        let error: Error<ProviderError> = svc.call("slow".to_string()).await.unwrap_err();
        assert_eq!(error.rejection().map(|r| r.kind), Some(RejectKind::Timeout));
        assert_eq!(svc.readiness(), Ok(()));
    }
}
