//! Duplicate-detection window: TTL, bounded history, error policy, coalescing.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use backstop_core::RejectKind;
use backstop_dedup::{
    DedupError, DedupOutcome, DedupWindow, DedupWindowConfig, DedupWindowConfigBuilder, Source,
};
use backstop_testkit::assert_fields;

type W = DedupWindow<String, u64, String>;

/// A window on the default config as `configure` changes it, through the builder.
fn window<K, E>(
    configure: impl FnOnce(DedupWindowConfigBuilder) -> DedupWindowConfigBuilder,
) -> DedupWindow<K, u64, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    DedupWindow::new(configure(DedupWindowConfig::builder()).build().unwrap()).unwrap()
}

fn counted(
    calls: &Arc<AtomicUsize>,
    result: Result<u64, String>,
) -> impl FnOnce() -> futures::future::BoxFuture<'static, Result<u64, String>> + Send + 'static {
    let calls = calls.clone();
    move || {
        Box::pin(async move {
            calls.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            result
        })
    }
}

/// A [`counted`] call for `key` that succeeds with `value` if it runs.
async fn work_ok(w: &W, key: &str, calls: &Arc<AtomicUsize>, value: u64) -> DedupOutcome<u64> {
    w.work(key.into(), counted(calls, Ok(value))).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_inside_the_ttl_gets_the_first_result_and_after_it_runs_again() {
    let w: W = window(|c| c.ttl(Duration::from_secs(60)));
    let calls = Arc::new(AtomicUsize::new(0));
    let first = work_ok(&w, "req-1", &calls, 1).await;
    assert_fields!(first, value: 1, source: Source::Executed, shared: false);

    tokio::time::advance(Duration::from_secs(59)).await;
    let retry = work_ok(&w, "req-1", &calls, 2).await;
    assert_fields!(retry, value: 1, source: Source::Window, shared: true);
    assert_eq!(calls.load(SeqCst), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    let expired = work_ok(&w, "req-1", &calls, 3).await;
    assert_fields!(expired, value: 3, source: Source::Executed);
    assert_eq!(calls.load(SeqCst), 2);
    let stats = w.stats();
    assert_eq!((stats.window_hits, stats.group.executions), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn in_flight_duplicates_coalesce_then_later_ones_hit_the_window() {
    let w: W = window(|c| c);
    let calls = Arc::new(AtomicUsize::new(0));
    let results =
        futures::future::join_all((0..20).map(|_| w.work("req".into(), counted(&calls, Ok(5)))))
            .await;
    assert!(results.iter().all(|r| r.as_ref().unwrap().value == 5));
    assert_eq!(work_ok(&w, "req", &calls, 6).await.value, 5);
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(w.stats().group.coalesced, 19);
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_remembered_by_default() {
    let w: W = window(|c| c);
    let calls = Arc::new(AtomicUsize::new(0));
    let err = w
        .work("req".into(), counted(&calls, Err("429".into())))
        .await;
    assert_eq!(err.unwrap_err(), DedupError::Inner("429".into()));
    let ok = work_ok(&w, "req", &calls, 1).await;
    assert_fields!(ok, value: 1, source: Source::Executed);
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn errors_are_remembered_when_configured() {
    let w: W = window(|c| c.cache_errors(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let _ = w
        .work("req".into(), counted(&calls, Err("invalid card".into())))
        .await;
    let again = w.work("req".into(), counted(&calls, Ok(1))).await;
    assert_eq!(again.unwrap_err(), DedupError::Inner("invalid card".into()));
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn panics_are_never_remembered() {
    let w: W = window(|c| c.cache_errors(true));
    let result = w
        .work("req".into(), || async { panic!("tool crashed") })
        .await;
    assert!(matches!(result, Err(DedupError::Panicked(_))));
    assert!(w.is_empty());
    assert_eq!(
        w.work("req".into(), || async { Ok(2) })
            .await
            .unwrap()
            .value,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn never_holds_more_than_max_entries() {
    let w: DedupWindow<u64, u64, ()> = window(|c| c.max_entries(100));
    for key in 0..10_000u64 {
        w.work(key, move || async move { Ok(key) }).await.unwrap();
        assert!(w.len() <= 100, "{} entries after key {key}", w.len());
    }
    assert_eq!(w.len(), 100);
    assert_eq!(w.stats().evicted, 9_900);
    // The newest are the ones kept, the oldest were forgotten.
    let kept = w.work(9_999, || async { Ok(0) }).await.unwrap();
    assert_eq!(kept.source, Source::Window);
    let forgotten = w.work(0, || async { Ok(42) }).await.unwrap();
    assert_fields!(forgotten, value: 42, source: Source::Executed);
}

#[tokio::test(start_paused = true)]
async fn expired_results_are_swept_as_new_ones_arrive() {
    let w: DedupWindow<u64, u64, ()> = window(|c| c.ttl(Duration::from_secs(1)).max_entries(1_000));
    for key in 0..500u64 {
        w.work(key, move || async move { Ok(key) }).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    w.work(10_000, || async { Ok(1) }).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w.stats().evicted, 0, "expiry is not eviction");
}

#[tokio::test(start_paused = true)]
async fn forget_makes_the_next_call_run() {
    let w: W = window(|c| c);
    let calls = Arc::new(AtomicUsize::new(0));
    work_ok(&w, "req", &calls, 1).await;
    assert!(w.forget(&"req".to_string()));
    assert!(!w.forget(&"req".to_string()));
    assert_eq!(work_ok(&w, "req", &calls, 2).await.value, 2);
}

#[tokio::test(start_paused = true)]
async fn follower_timeout_from_config_applies() {
    let w: W = window(|c| c.follower_timeout(Duration::from_millis(3)));
    let calls = Arc::new(AtomicUsize::new(0));
    let (leader, follower) = tokio::join!(
        w.work("req".into(), counted(&calls, Ok(1))),
        w.work("req".into(), counted(&calls, Ok(2))),
    );
    assert_eq!(leader.unwrap().value, 1);
    assert!(matches!(follower, Err(DedupError::Rejected(r)) if r.kind == RejectKind::Timeout));
}

#[test]
fn invalid_config_is_a_typed_error_naming_the_field() {
    let err = DedupWindow::<u64, u64, ()>::new(DedupWindowConfig {
        max_entries: 0,
        ..DedupWindowConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("max_entries"), "{err}");
    assert!(err.to_string().contains("window"), "{err}");
    let err = DedupWindowConfig::builder()
        .ttl(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`ttl`"), "{err}");
    let err = DedupWindowConfig::builder()
        .follower_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("follower_timeout"), "{err}");
}

#[test]
fn config_deserializes_human_durations() {
    let config: DedupWindowConfig = serde_json::from_str(
        r#"{ "ttl": "90s", "max_entries": 50, "cache_errors": true, "follower_timeout": "250ms" }"#,
    )
    .unwrap();
    assert_eq!(config.ttl, Duration::from_secs(90));
    assert_eq!(config.max_entries, 50);
    assert!(config.cache_errors);
    assert_eq!(config.follower_timeout, Some(Duration::from_millis(250)));
    let defaults: DedupWindowConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, DedupWindowConfig::default());
    assert!(serde_json::from_str::<DedupWindowConfig>(r#"{ "ttl": "soon" }"#).is_err());
    assert!(serde_json::from_str::<DedupWindowConfig>(r#"{ "tll": "1s" }"#).is_err());
}

/// Issue 19: `ttl = "150000000000000d"` was accepted; the first caller then panicked on
/// `Instant + Duration` outside the flight's containment and the other waiters hung.
#[test]
fn huge_durations_are_refused_at_validation() {
    let huge = Duration::from_secs(150_000_000_000_000 * 86_400);
    let parsed: DedupWindowConfig =
        serde_json::from_str(r#"{ "ttl": "150000000000000d" }"#).unwrap();
    assert_eq!(parsed.ttl, huge);
    let err = DedupWindow::<String, u32, String>::new(parsed).unwrap_err();
    assert_eq!(err.field(), "window.ttl");
    let err = DedupWindowConfig::builder()
        .follower_timeout(huge)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "follower_timeout");
    let err = DedupWindowConfig::builder()
        .max_entries(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_entries");
}

/// The longest accepted TTL and follower timeout work for every waiter of a key.
#[tokio::test(start_paused = true)]
async fn the_longest_accepted_ttl_serves_every_waiter() {
    let longest = backstop_core::config::MAX_DURATION;
    let w: W = window(|c| c.ttl(longest).follower_timeout(longest));
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b, c) = tokio::join!(
        w.work("req".into(), counted(&calls, Ok(1))),
        w.work("req".into(), counted(&calls, Ok(2))),
        w.work("req".into(), counted(&calls, Ok(3))),
    );
    assert_eq!(
        (a.unwrap().value, b.unwrap().value, c.unwrap().value),
        (1, 1, 1)
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    let again = work_ok(&w, "req", &calls, 4).await;
    assert_fields!(again, value: 1, source: Source::Window);
    assert_eq!(calls.load(SeqCst), 1);
}
