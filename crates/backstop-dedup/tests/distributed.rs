//! Cross-process singleflight against a real Redis (`REDIS_URL`); each `DistributedGroup`
//! has its own client and connection, as two processes would.

#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use backstop_core::{Layer, RejectKind, Service, ServiceExt, Validate, service_fn};
use backstop_dedup::{
    DedupError, DedupLayer, DedupOutcome, DistributedConfig, DistributedGroup, RedisFailure, Source,
};
use backstop_testkit::assert_fields;
use backstop_testkit::{Calls, RedisTestContext};
use futures::future::join_all;
use tokio::sync::oneshot;

type Process = DistributedGroup<String, u64, String>;

fn config(ctx: &RedisTestContext) -> DistributedConfig {
    DistributedConfig {
        prefix: ctx.key("dedup"),
        poll_interval: Duration::from_millis(1),
        max_poll_interval: Duration::from_millis(10),
        ..DistributedConfig::default()
    }
}

fn process(ctx: &RedisTestContext, config: DistributedConfig) -> Process {
    process_of(ctx, config)
}

/// The Redis context of test `name` (none without `REDIS_URL`) and two processes sharing
/// the config `config` makes for it (and so one key space), each with its own connection.
async fn two_processes(
    name: &str,
    config: fn(&RedisTestContext) -> DistributedConfig,
) -> Option<(RedisTestContext, Process, Process)> {
    let ctx = RedisTestContext::from_env(name).await?;
    let config = config(&ctx);
    let (a, b) = (process(&ctx, config.clone()), process(&ctx, config));
    Some((ctx, a, b))
}

/// A lease far longer than any test: a waiter that finishes promptly was handed the lease,
/// it did not wait it out.
fn long_lease(ctx: &RedisTestContext) -> DistributedConfig {
    DistributedConfig {
        lease_ttl: Duration::from_secs(30),
        ..config(ctx)
    }
}

/// A process whose work fails with `E` (a layer's shares `Arc<S::Error>`).
fn process_of<E: Clone + Send + Sync + 'static>(
    ctx: &RedisTestContext,
    config: DistributedConfig,
) -> DistributedGroup<String, u64, E> {
    let client = redis::Client::open(ctx.url()).expect("valid url");
    DistributedGroup::new(client, config).expect("valid config")
}

/// Waits for a state the test has set in motion, bounded so a bug fails instead of hanging.
async fn until(what: &str, mut reached: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !reached() {
        assert!(Instant::now() < give_up, "never reached: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn until_a_holds_the_lease(a: &Process) {
    until("process A holds the lease", || {
        a.stats().leased_executions == 1
    })
    .await;
}

/// Calls key `k` on `group` with work answering `value`: the result, and how long it took.
async fn timed_work(
    group: &Process,
    value: u64,
) -> (Result<DedupOutcome<u64>, DedupError<String>>, Duration) {
    let started = Instant::now();
    let result = group
        .work("k".to_string(), move || async move { Ok(value) })
        .await;
    (result, started.elapsed())
}

/// Checks that key `k` executes on `group` within `bound`: whatever lease stood in its way
/// was released or taken over, not waited out.
async fn executes_within(group: &Process, value: u64, bound: Duration) {
    let (result, waited) = timed_work(group, value).await;
    let outcome = result.unwrap();
    assert_fields!(outcome, value: value, source: Source::Executed);
    assert!(waited < bound, "the lease held it up: {waited:?}");
}

/// Checks that key `k` executes on `group` far sooner than [`long_lease`]'s 30 s: the lease
/// was released at once.
async fn executes_before_the_long_lease_ends(group: &Process, value: u64) {
    executes_within(group, value, Duration::from_secs(5)).await;
}

fn assert_unavailable(error: &DedupError<String>) {
    assert!(
        matches!(error, DedupError::Rejected(r) if r.kind == RejectKind::Unavailable),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_of_two_processes_share_one_execution() {
    let Some((ctx, a, b)) = two_processes("dedup_two_processes", config).await else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(tokio::sync::Mutex::new(Some(released)));

    let call = |group: &Process, answer: u64| {
        let (group, runs, released) = (group.clone(), runs.clone(), released.clone());
        async move {
            group
                .work("capital-of-france".to_string(), move || async move {
                    runs.fetch_add(1, SeqCst);
                    if let Some(gate) = released.lock().await.take() {
                        let _ = gate.await;
                    }
                    Ok(answer)
                })
                .await
        }
    };
    let first = tokio::spawn(join_all((0..20).map(|_| call(&a, 42))));
    until_a_holds_the_lease(&a).await;
    let second = tokio::spawn(join_all((0..20).map(|_| call(&b, 7))));
    until("process B polls for A's result", || b.stats().polls >= 1).await;
    release.send(()).expect("the executor is waiting");

    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(runs.load(SeqCst), 1, "one execution across both processes");
    for outcome in first.iter().chain(&second) {
        assert_eq!(outcome.as_ref().unwrap().value, 42);
    }
    let sources = |outcomes: &[Result<_, _>], source| {
        outcomes
            .iter()
            .filter(|o: &&Result<DedupOutcome<u64>, _>| o.as_ref().unwrap().source == source)
            .count()
    };
    assert_eq!(sources(&first, Source::Executed), 1);
    assert_eq!(sources(&first, Source::Joined), 19);
    assert_eq!(sources(&second, Source::Remote), 20);
    assert_eq!(
        b.stats().remote_results,
        1,
        "one Redis read serves B's 20 callers"
    );
    assert_eq!(b.stats().local.coalesced, 19);
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_result_answers_a_later_caller_without_running() {
    let Some((ctx, a, b)) = two_processes("dedup_published_result", config).await else {
        return;
    };
    let first = a.work("k".to_string(), || async { Ok(1) }).await.unwrap();
    let later = b
        .work("k".to_string(), || async { panic!("must not run") })
        .await
        .unwrap();
    assert_eq!(
        (first.source, later.source),
        (Source::Executed, Source::Remote)
    );
    assert_eq!(later.value, 1);
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_executors_lease_expires_and_a_waiter_takes_over() {
    let Some(ctx) = RedisTestContext::from_env("dedup_dead_executor").await else {
        return;
    };
    let config = config(&ctx);
    // A process that won the lease and died mid-work: no release, no renewal.
    let mut conn = ctx.connection().await;
    let lease = format!("{}:{{k}}:lease", config.prefix);
    redis::cmd("SET")
        .arg(&lease)
        .arg("token-of-a-dead-process")
        .arg("PX")
        .arg(150)
        .query_async::<()>(&mut conn)
        .await
        .expect("plant the dead executor's lease");
    let b = process(&ctx, config);

    // Taken over within about one lease (150 ms).
    executes_within(&b, 5, Duration::from_secs(2)).await;
    assert_eq!(b.stats().takeovers, 1);
    assert!(b.stats().polls >= 1, "it waited for the lease first");
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_executor_releases_its_lease_at_once() {
    let Some((ctx, a, b)) = two_processes("dedup_cancelled_executor", long_lease).await else {
        return;
    };
    let cancelled = tokio::spawn({
        let a = a.clone();
        async move {
            a.work(
                "k".to_string(),
                futures::future::pending::<Result<u64, String>>,
            )
            .await
        }
    });
    until_a_holds_the_lease(&a).await;
    // Every caller of A goes away: the execution is dropped and its lease released.
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());

    executes_before_the_long_lease_ends(&b, 5).await;
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_executor_releases_its_lease_and_its_callers_get_an_error() {
    let Some((ctx, a, b)) = two_processes("dedup_panicking_executor", long_lease).await else {
        return;
    };
    let error = a
        .work("k".to_string(), || async { panic!("tool crashed") })
        .await
        .unwrap_err();
    assert!(matches!(error, DedupError::Panicked(_)), "{error:?}");

    executes_before_the_long_lease_ends(&b, 6).await;
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_execution_hands_the_lease_to_a_waiter() {
    let Some((ctx, a, b)) = two_processes("dedup_failed_execution", config).await else {
        return;
    };
    let (fail, failing) = oneshot::channel::<()>();
    let first = tokio::spawn({
        let a = a.clone();
        async move {
            a.work("k".to_string(), move || async move {
                let _ = failing.await;
                Err::<u64, _>("upstream 503".to_string())
            })
            .await
        }
    });
    until_a_holds_the_lease(&a).await;
    let second = tokio::spawn({
        let b = b.clone();
        async move { b.work("k".to_string(), || async { Ok(9) }).await }
    });
    until("process B waits", || b.stats().polls >= 1).await;
    fail.send(()).expect("the executor is waiting");

    assert_eq!(
        first.await.unwrap(),
        Err(DedupError::Inner("upstream 503".to_string()))
    );
    let second = second.await.unwrap().unwrap();
    assert_fields!(second, value: 9, source: Source::Executed);
    assert_eq!(b.stats().takeovers, 1);
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_of_two_processes_call_the_backend_once() {
    let Some(ctx) = RedisTestContext::from_env("dedup_layer_two_processes").await else {
        return;
    };
    let calls = Calls::new();
    let backend = || {
        service_fn(calls.counting(|prompt: String| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<u64, String>(prompt.len() as u64)
        }))
        .lift()
    };
    let key = |prompt: &String| format!("prompt:{prompt}");
    let a = DedupLayer::new(process_of(&ctx, config(&ctx)))
        .key(key)
        .layer(backend());
    let b = DedupLayer::new(process_of(&ctx, config(&ctx)))
        .key(key)
        .layer(backend());

    let callers = (0..10).map(|i| {
        let service = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { service.call("same question".to_string()).await })
    });
    for answer in join_all(callers).await {
        assert_eq!(answer.unwrap().unwrap(), 13);
    }
    assert_eq!(calls.count(), 1, "one backend call across both processes");
    ctx.cleanup().await;
}

/// A process on the Redis at `url`, giving up on it after 200 ms.
fn impatient(url: &str, on_redis_error: RedisFailure) -> Process {
    let client = redis::Client::open(url).expect("valid url");
    let config = DistributedConfig {
        redis_timeout: Duration::from_millis(200),
        on_redis_error,
        ..DistributedConfig::default()
    };
    DistributedGroup::new(client, config).expect("valid config")
}

fn unreachable(on_redis_error: RedisFailure) -> Process {
    impatient("redis://127.0.0.1:1", on_redis_error)
}

#[tokio::test]
async fn unreachable_redis_runs_the_work_locally_by_default() {
    let group = unreachable(RedisFailure::ExecuteLocally);
    let (result, waited) = timed_work(&group, 3).await;
    let outcome = result.unwrap();
    assert_fields!(outcome, value: 3, source: Source::Executed);
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_fields!(group.stats(), local_fallbacks: 1, redis_errors: 1);
}

#[tokio::test]
async fn unreachable_redis_fails_the_call_when_configured() {
    let group = unreachable(RedisFailure::Fail);
    let (result, waited) = timed_work(&group, 3).await;
    assert_unavailable(&result.unwrap_err());
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

/// A server that accepts connections and never answers: a Redis that hangs mid-call.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("redis://{}", listener.local_addr().expect("bound"));
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, server)
}

#[tokio::test]
async fn a_redis_that_stops_answering_is_cut_off_by_the_timeout() {
    let (url, server) = silent_server().await;
    for on_redis_error in [RedisFailure::ExecuteLocally, RedisFailure::Fail] {
        let group = impatient(&url, on_redis_error);
        let (result, waited) = timed_work(&group, 5).await;
        match on_redis_error {
            RedisFailure::ExecuteLocally => {
                let outcome = result.expect("ran locally");
                assert_fields!(outcome, value: 5, source: Source::Executed);
                assert_eq!(group.stats().local_fallbacks, 1);
            }
            RedisFailure::Fail => {
                assert_unavailable(&result.expect_err("failed"));
            }
        }
        assert!(group.stats().redis_errors >= 1);
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "gave up after the timeout, not before and not much later: {waited:?}"
        );
    }
    server.abort();
}

#[test]
fn invalid_configs_name_the_field() {
    /// Breaks one rule of an otherwise default config.
    type Break = fn(&mut DistributedConfig);
    let cases: [(Break, &str); 8] = [
        (|c| c.prefix = String::new(), "prefix"),
        (|c| c.prefix = "jobs*".to_owned(), "prefix"),
        (|c| c.prefix = "{jobs}".to_owned(), "prefix"),
        (|c| c.lease_ttl = Duration::from_millis(1), "lease_ttl"),
        (
            |c| {
                c.max_poll_interval = Duration::from_millis(1);
                c.poll_interval = Duration::from_millis(5);
            },
            "max_poll_interval",
        ),
        (|c| c.redis_timeout = Duration::ZERO, "redis_timeout"),
        (|c| c.max_wait = Duration::MAX, "max_wait"),
        (|c| c.lease_ttl = Duration::MAX, "lease_ttl"),
    ];
    for (break_a_rule, field) in cases {
        let mut config = DistributedConfig::default();
        break_a_rule(&mut config);
        let error = config.validate().unwrap_err();
        assert_eq!(error.field(), field, "{error}");
    }
}

/// Issue 19: a huge `max_wait` was accepted and then every call returned `Panicked`
/// (`Instant + Duration` overflowed). Now it is refused, and the longest accepted wait
/// works: a call fails as its Redis policy says, never with a panic.
#[tokio::test]
async fn the_longest_accepted_max_wait_never_panics() {
    let huge = DistributedConfig {
        max_wait: Duration::from_secs(150_000_000_000_000 * 86_400),
        ..DistributedConfig::default()
    };
    let client = redis::Client::open("redis://127.0.0.1:1").expect("valid url");
    let error = DistributedGroup::<String, u64, String>::new(client.clone(), huge).unwrap_err();
    assert_eq!(error.field(), "max_wait");

    let longest = backstop_core::config::MAX_DURATION;
    let config = DistributedConfig {
        max_wait: longest,
        max_poll_interval: longest,
        result_ttl: longest,
        lease_ttl: longest,
        redis_timeout: Duration::from_millis(200),
        on_redis_error: RedisFailure::Fail,
        ..DistributedConfig::default()
    };
    let group: Process = DistributedGroup::new(client, config).expect("valid config");
    for _ in 0..3 {
        let error = group
            .work("k".to_string(), || async { Ok(3) })
            .await
            .unwrap_err();
        assert_unavailable(&error);
    }
}
