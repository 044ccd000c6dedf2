//! Singleflight behaviour, including the failures reported against the anchors
//! (Go's x/sync/singleflight and async_singleflight).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use backstop_core::RejectKind;
use backstop_dedup::{DedupError, DedupOutcome, Group, Source};
use backstop_testkit::assert_fields;
use futures::FutureExt;
use tokio::sync::Notify;

type G = Group<String, u64, String>;

/// Counts how many times the work started and how many are alive right now.
#[derive(Default)]
struct Probe {
    started: AtomicUsize,
    alive: AtomicUsize,
    max_alive: AtomicUsize,
}

struct Alive(Arc<Probe>);

impl Alive {
    fn new(probe: &Arc<Probe>) -> Self {
        probe.started.fetch_add(1, SeqCst);
        let now = probe.alive.fetch_add(1, SeqCst) + 1;
        probe.max_alive.fetch_max(now, SeqCst);
        Self(probe.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, SeqCst);
    }
}

/// Work that takes `steps` ticks of 10 ms and returns `value`.
fn slow(
    probe: &Arc<Probe>,
    steps: u32,
    value: u64,
) -> impl FnOnce() -> futures::future::BoxFuture<'static, Result<u64, String>> + Send + 'static {
    let probe = probe.clone();
    move || {
        async move {
            let _alive = Alive::new(&probe);
            for _ in 0..steps {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(value)
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_on_one_key_share_one_execution() {
    const CALLERS: usize = 10_000;
    let group = G::new();
    let release = Arc::new(Notify::new());
    let executions = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let group = group.clone();
        let release = release.clone();
        let executions = executions.clone();
        tasks.push(tokio::spawn(async move {
            group
                .work("same".to_string(), move || async move {
                    executions.fetch_add(1, SeqCst);
                    release.notified().await;
                    Ok(7)
                })
                .await
        }));
    }
    // Hold the execution open until every caller has joined it.
    while group.stats().coalesced < (CALLERS - 1) as u64 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let mut executed = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert_eq!(outcome.value, 7);
        assert!(outcome.shared);
        executed += usize::from(outcome.source == Source::Executed);
    }
    assert_eq!(executions.load(SeqCst), 1);
    assert_eq!(executed, 1);
    let stats = group.stats();
    assert_eq!(stats.executions, 1);
    assert_eq!(stats.coalesced, (CALLERS - 1) as u64);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn lone_caller_is_not_shared_and_releases_the_key() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    let outcome = group.work("k".into(), slow(&probe, 2, 1)).await.unwrap();
    assert_eq!(outcome.source, Source::Executed);
    assert!(!outcome.shared);
    assert_eq!(group.in_flight(), 0);
    // Completed means released: the next call runs again.
    group.work("k".into(), slow(&probe, 2, 1)).await.unwrap();
    assert_eq!(probe.started.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn distinct_keys_do_not_share() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    let (a, b) = tokio::join!(
        group.work("a".into(), slow(&probe, 2, 1)),
        group.work("b".into(), slow(&probe, 2, 2)),
    );
    assert_eq!((a.unwrap().value, b.unwrap().value), (1, 2));
    assert_eq!(probe.started.load(SeqCst), 2);
    assert_eq!(probe.max_alive.load(SeqCst), 2);
}

/// `callers` concurrent calls for one key whose work ends after 5 ms with what `end` gives.
async fn concurrent_calls(
    group: &G,
    callers: usize,
    end: fn() -> Result<u64, String>,
) -> Vec<Result<DedupOutcome<u64>, DedupError<String>>> {
    let calls = (0..callers).map(|_| {
        group.work("k".into(), move || async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            end()
        })
    });
    futures::future::join_all(calls).await
}

/// A call for "k" running [`slow`], polled once so that it has joined the group.
async fn started<'g>(
    group: &'g G,
    probe: &Arc<Probe>,
    steps: u32,
    value: u64,
) -> Pin<Box<impl Future<Output = Result<DedupOutcome<u64>, DedupError<String>>> + 'g>> {
    let mut call = Box::pin(group.work("k".into(), slow(probe, steps, value)));
    assert!(futures::poll!(&mut call).is_pending());
    call
}

/// async_singleflight #8 (and rueidis): followers must see the leader's real error.
#[tokio::test(start_paused = true)]
async fn every_follower_gets_the_real_error() {
    let group = G::new();
    let results = concurrent_calls(&group, 5, || Err("upstream 503".to_string())).await;
    for result in results {
        assert_eq!(
            result.unwrap_err(),
            DedupError::Inner("upstream 503".into())
        );
    }
    assert_eq!(group.stats().executions, 1);
    assert_eq!(group.in_flight(), 0);
}

/// Go #33519 / #41133: a panicking function must not hang or deadlock its waiters, and
/// the key must be usable again.
#[tokio::test(start_paused = true)]
async fn panic_reaches_every_waiter_and_the_next_call_runs_again() {
    let group = G::new();
    let calls = concurrent_calls(&group, 4, || panic!("model returned garbage"));
    let results = tokio::time::timeout(Duration::from_secs(60), calls)
        .await
        .expect("waiters must not hang after a panic");
    for result in results {
        match result {
            Err(DedupError::Panicked(panicked)) => {
                assert_eq!(panicked.message(), "model returned garbage")
            }
            other => panic!("expected a panic error, got {other:?}"),
        }
    }
    assert_fields!(group.stats(), panics: 1, in_flight: 0);
    let again = group.work("k".into(), || async { Ok(9) }).await.unwrap();
    assert_fields!(again, value: 9, source: Source::Executed);
}

#[tokio::test(start_paused = true)]
async fn panic_in_the_closure_itself_is_contained() {
    let group = G::new();
    let result = group
        .work(
            "k".into(),
            || -> futures::future::Ready<Result<u64, String>> {
                panic!("{}", String::from("bad prompt template"))
            },
        )
        .await;
    assert!(matches!(result, Err(DedupError::Panicked(p)) if p.message() == "bad prompt template"));
    assert_eq!(group.in_flight(), 0);
}

/// async_singleflight #12: dropping the leader promoted several followers at once, and
/// re-elected leaders restart the work. Here the same execution simply continues.
#[tokio::test(start_paused = true)]
async fn dropping_the_leader_neither_loses_nor_restarts_the_work() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    let mut leader = started(&group, &probe, 10, 5).await;
    let mut followers: Vec<_> = (0..5)
        .map(|_| Box::pin(group.work("k".into(), slow(&probe, 10, 99))))
        .collect();
    for f in &mut followers {
        assert!(futures::poll!(f).is_pending());
    }
    tokio::time::advance(Duration::from_millis(35)).await;
    assert!(futures::poll!(&mut leader).is_pending());
    drop(leader);
    let results = futures::future::join_all(followers).await;
    for result in results {
        let outcome = result.unwrap();
        assert_fields!(outcome, value: 5, source: Source::Joined);
    }
    assert_eq!(probe.started.load(SeqCst), 1);
    assert_eq!(probe.max_alive.load(SeqCst), 1);
    assert_eq!(group.in_flight(), 0);
}

/// The leader is dropped after each possible number of completed await points; the
/// follower still gets the single execution's result and nothing leaks.
#[tokio::test(start_paused = true)]
async fn leader_dropped_at_every_await_point() {
    const STEPS: u32 = 6;
    for drop_after in 0..=STEPS + 1 {
        let group = G::new();
        let probe = Arc::new(Probe::default());
        // First polls: the leader registers the key and starts, the follower joins.
        let mut leader = started(&group, &probe, STEPS, 3).await;
        let follower = started(&group, &probe, STEPS, 4).await;
        let mut leader_result = None;
        for _ in 0..drop_after {
            tokio::time::advance(Duration::from_millis(10)).await;
            if let std::task::Poll::Ready(r) = futures::poll!(&mut leader) {
                leader_result = Some(r);
                break;
            }
        }
        drop(leader);
        let outcome = follower.await.unwrap();
        assert_eq!(outcome.value, 3, "drop after {drop_after}");
        if let Some(r) = leader_result {
            assert_eq!(r.unwrap().value, 3);
        }
        assert_eq!(probe.started.load(SeqCst), 1);
        assert_eq!(probe.alive.load(SeqCst), 0);
        assert_eq!(group.in_flight(), 0, "drop after {drop_after}");
    }
}

#[tokio::test(start_paused = true)]
async fn when_every_waiter_leaves_the_work_is_dropped_and_the_key_released() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    let a = started(&group, &probe, 10, 1).await;
    let b = started(&group, &probe, 10, 1).await;
    assert_eq!(probe.alive.load(SeqCst), 1);
    drop(a);
    assert_eq!(group.in_flight(), 1);
    drop(b);
    assert_eq!(probe.alive.load(SeqCst), 0, "the abandoned work is dropped");
    assert_fields!(group.stats(), in_flight: 0, abandoned: 1);
    let fresh = group.work("k".into(), slow(&probe, 1, 2)).await.unwrap();
    assert_fields!(fresh, value: 2, source: Source::Executed);
}

#[tokio::test(start_paused = true)]
async fn caller_dropped_before_the_first_poll_leaks_nothing() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    drop(group.work("k".into(), slow(&probe, 1, 1)));
    let polled_once = started(&group, &probe, 1, 1).await;
    drop(polled_once);
    assert_eq!(group.in_flight(), 0);
    assert_eq!(probe.alive.load(SeqCst), 0);
}

/// Go #31420: `Forget` racing with a running call. The old execution's completion must
/// not release the new execution's key.
#[tokio::test(start_paused = true)]
async fn forget_starts_a_new_execution_and_old_waiters_keep_theirs() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    let old = started(&group, &probe, 2, 1).await;
    assert!(group.forget(&"k".to_string()));
    assert!(!group.forget(&"missing".to_string()));
    let new = started(&group, &probe, 5, 2).await;
    assert_eq!(old.await.unwrap().value, 1);
    assert!(
        group.is_in_flight(&"k".to_string()),
        "the old execution must not release the new one's key"
    );
    let joined = group.work("k".into(), slow(&probe, 1, 3)).await.unwrap();
    assert_fields!(joined, value: 2, source: Source::Joined);
    assert_eq!(new.await.unwrap().value, 2);
    assert_eq!(probe.started.load(SeqCst), 2);
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn follower_timeout_gives_up_without_cancelling_the_execution() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    let leader = group.work("k".into(), slow(&probe, 10, 8));
    let follower = async {
        tokio::task::yield_now().await;
        group
            .work_with_timeout("k".into(), Duration::from_millis(30), slow(&probe, 1, 0))
            .await
    };
    let (leader, follower) = tokio::join!(leader, follower);
    assert_eq!(
        follower.unwrap_err().rejection().map(|r| r.kind),
        Some(RejectKind::Timeout)
    );
    assert_eq!(leader.unwrap().value, 8);
    assert_fields!(group.stats(), executions: 1, timeouts: 1, in_flight: 0);
}

#[tokio::test(start_paused = true)]
async fn timeout_does_not_bound_the_caller_that_starts_the_execution() {
    let group = G::new();
    let probe = Arc::new(Probe::default());
    let outcome = group
        .work_with_timeout("k".into(), Duration::from_millis(5), slow(&probe, 3, 4))
        .await
        .unwrap();
    assert_eq!(outcome.value, 4);
}

#[tokio::test(start_paused = true)]
async fn a_million_distinct_keys_leave_no_entry_behind() {
    let group: Group<u64, u64, ()> = Group::new();
    for key in 0..1_000_000u64 {
        group
            .work(key, move || async move { Ok(key) })
            .await
            .unwrap();
    }
    assert_eq!(group.in_flight(), 0);
    assert_eq!(group.stats().executions, 1_000_000);
}

#[tokio::test(start_paused = true)]
async fn stats_serialize() {
    let group = G::new();
    group.work("k".into(), || async { Ok(1) }).await.unwrap();
    let json = serde_json::to_value(group.stats()).unwrap();
    assert_eq!(json["executions"], 1);
    assert_eq!(json["in_flight"], 0);
    assert!(format!("{group:?}").contains("in_flight"));
}
