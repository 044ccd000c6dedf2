//! `[redis]`: one connection for the fleet, read from the file and shared by the Redis
//! limiter (`[redis.limit]`), distributed dedup (`[redis.dedup]`), the cache's Redis tier
//! (`[cache.redis]` without a URL) and the pool's manager — against the real servers
//! `.ci/redis-fleet` starts (cluster, Sentinel, TLS) and `REDIS_URL`.
#![cfg(all(
    feature = "config",
    feature = "redis",
    feature = "limit",
    feature = "dedup",
    feature = "cache"
))]

use backstop::config::{BackstopConfig, BuildError, RedisSection};
use backstop::dedup::{DedupError, DedupOutcome};
use backstop::redis::RedisConnection;
use backstop_testkit::fleet::{env, unique};
use std::time::{Duration, Instant};

mod support;
use support::refused_field;

/// The job `"job"` through the `[redis.dedup]` group on `connection`, answering `answer`
/// when it runs here.
async fn job(
    redis: &RedisSection,
    connection: &RedisConnection,
    answer: u64,
) -> Result<DedupOutcome<u64>, DedupError<String>> {
    let group = redis
        .dedup_group::<String, u64, String>(connection)
        .unwrap()
        .unwrap();
    group
        .work("job".to_string(), move || async move { Ok(answer) })
        .await
}

/// A whole fleet file on `connection` (the `[redis]` lines naming the topology).
fn fleet_file(connection: &str, namespace: &str) -> String {
    format!(
        r#"
[redis]
{connection}
namespace = "{namespace}:"
timeout = "2s"

[redis.limit]
prefix = "rl"
quotas = [{{ rate = 5, period = "1h" }}, {{ rate = 1000, period = "1h" }}]
timeout = "2s"
on_failure = "closed"

[redis.dedup]
prefix = "dedup"
redis_timeout = "2s"
on_redis_error = "fail"

[cache.memory]
max_capacity = 1000

[cache.redis]
namespace = "cache:"
operation_timeout = "2s"
"#
    )
}

/// Two processes' worth of everything the file describes share the budget, the
/// executions and the cache.
async fn the_file_runs_the_fleet(connection: &str, name: &str) {
    let namespace = unique(name);
    let config = BackstopConfig::from_toml_str(&fleet_file(connection, &namespace)).unwrap();
    let redis = config.redis.as_ref().unwrap();
    assert_eq!(
        redis.redis_config().unwrap().namespace,
        format!("{namespace}:")
    );

    // The limiter: two handles on two connections, one budget (requests and tokens, all
    // or none).
    let (one, two) = (
        config.redis_connection().unwrap().unwrap(),
        config.redis_connection().unwrap().unwrap(),
    );
    let a = redis.limiter(&one).unwrap().unwrap();
    let b = redis.limiter(&two).unwrap().unwrap();
    assert!(
        a.redis_key("ann", 0)
            .starts_with(&format!("{namespace}:rl:"))
    );
    let mut admitted = 0;
    for i in 0..10 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        admitted += u32::from(
            limiter
                .check_key_costs("ann", &[1, 10])
                .await
                .unwrap()
                .admitted,
        );
    }
    assert_eq!(
        admitted, 5,
        "{name}: the requests quota, across both handles"
    );

    // Dedup: the second process gets the first one's result.
    let first = job(redis, &one, 1).await.unwrap();
    let second = job(redis, &two, 2).await.unwrap();
    assert_eq!((first.value, second.value), (1, 1), "{name}: one execution");

    // The cache: L2 on the shared connection, L1 kept in step across instances.
    let (c1, inv1) = config.redis_cache::<String>().await.unwrap().unwrap();
    let (c2, inv2) = config.redis_cache::<String>().await.unwrap().unwrap();
    let (inv1, inv2) = (inv1.unwrap(), inv2.unwrap());
    inv1.subscribed().await;
    inv2.subscribed().await;
    let key = "greeting".to_string();
    c1.insert(&key, "hello".to_string()).await.unwrap();
    assert_eq!(
        c2.get(&key).await.as_deref(),
        Some("hello"),
        "{name}: shared L2"
    );
    c1.insert(&key, "bonjour".to_string()).await.unwrap();
    let start = Instant::now();
    while c2.get(&key).await.as_deref() != Some("bonjour") {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{name}: instance 2 kept serving its stale L1"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(inv2.stats().applied >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_section_runs_limiter_dedup_and_cache_on_a_cluster() {
    let Some(nodes) = env("REDIS_CLUSTER_NODES") else {
        return;
    };
    let list: Vec<String> = nodes.split(',').map(|n| format!("{n:?}")).collect();
    the_file_runs_the_fleet(&format!("cluster_nodes = [{}]", list.join(", ")), "cluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_section_runs_limiter_dedup_and_cache_on_one_server() {
    let Some(url) = env("REDIS_URL") else {
        return;
    };
    the_file_runs_the_fleet(&format!("url = {url:?}"), "standalone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_section_runs_behind_sentinel() {
    let Some(spec) = env("REDIS_SENTINEL") else {
        return;
    };
    let (master, nodes) = spec.split_once('@').unwrap();
    let list: Vec<String> = nodes.split(',').map(|n| format!("{n:?}")).collect();
    the_file_runs_the_fleet(
        &format!(
            "sentinel = {{ master = {master:?}, nodes = [{}] }}",
            list.join(", ")
        ),
        "sentinel",
    )
    .await;
}

#[cfg(feature = "redis-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_section_runs_over_tls_and_a_wrong_ca_is_an_error() {
    let (Some(url), Some(ca), Some(other)) = (
        env("REDIS_TLS_URL"),
        env("REDIS_TLS_CA"),
        env("REDIS_TLS_OTHER_CA"),
    ) else {
        return;
    };
    the_file_runs_the_fleet(&format!("url = {url:?}\ntls = {{ ca = {ca:?} }}"), "tls").await;
    let wrong = format!(
        "[redis]\nurl = {url:?}\ntls = {{ ca = {other:?} }}\n[redis.limit]\non_failure = \"open\"\ntimeout = \"2s\"\n"
    );
    let config = BackstopConfig::from_toml_str(&wrong).unwrap();
    let redis = config.redis.as_ref().unwrap();
    let limiter = redis
        .limiter(&config.redis_connection().unwrap().unwrap())
        .unwrap()
        .unwrap();
    let error = limiter.check_key("ann").await.unwrap_err();
    assert!(
        matches!(error, backstop::limit::CheckError::Misconfigured(_)),
        "a wrong CA is a mistake even when failing open: {error:?}"
    );
}

/// A `[redis] url` at a cluster node is a typed mistake for every primitive on it, even
/// with fail-open and local-execution policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_at_a_cluster_node_is_a_mistake_for_every_primitive() {
    let Some(nodes) = env("REDIS_CLUSTER_NODES") else {
        return;
    };
    let node = nodes.split(',').next().unwrap();
    let text = format!(
        "[redis]\nurl = \"redis://{node}\"\ntimeout = \"2s\"\n\
         [redis.limit]\non_failure = \"open\"\ntimeout = \"2s\"\n\
         [redis.dedup]\non_redis_error = \"execute_locally\"\nredis_timeout = \"2s\"\n"
    );
    let config = BackstopConfig::from_toml_str(&text).unwrap();
    let redis = config.redis.as_ref().unwrap();
    let connection = config.redis_connection().unwrap().unwrap();
    let limiter = redis.limiter(&connection).unwrap().unwrap();
    assert!(matches!(
        limiter.check_key("ann").await,
        Err(backstop::limit::CheckError::Misconfigured(_))
    ));
    let error = job(redis, &connection, 1).await.unwrap_err();
    assert!(error.misconfiguration().is_some(), "{error:?}");
}

#[test]
fn bad_redis_sections_name_their_field() {
    for (text, field) in [
        (
            "[redis]\nurl = \"redis://h:1\"\ncluster_nodes = [\"h:2\"]\n",
            "redis.cluster_nodes",
        ),
        (
            "[redis]\nurl = \"redis://h:1\"\nnamespace = \"a{b}\"\n",
            "redis.namespace",
        ),
        (
            "[redis]\nurl = \"redis://h:1\"\nusername = \"app\"\n",
            "redis.password",
        ),
        (
            "[redis]\nurl = \"redis://h:1\"\n[redis.limit]\nprefix = \"\"\n",
            "redis.limit.prefix",
        ),
        (
            "[redis]\nurl = \"redis://h:1\"\n[redis.dedup]\nprefix = \"a*\"\n",
            "redis.dedup.prefix",
        ),
    ] {
        assert_eq!(refused_field(text).as_deref(), Some(field), "{text}");
    }
    assert!(refused_field("[redis]\nurl = \"redis://h:1\"\nnodes = []\n").is_some());
}

#[test]
fn the_environment_fills_the_url_and_password_when_built() {
    let text = "[redis]\nurl_env = \"BACKSTOP_TEST_NO_SUCH_URL\"\n\
                password_env = \"BACKSTOP_TEST_NO_SUCH_PASSWORD\"\n";
    // Loading checks the file; the variables are read when the connection is built.
    let config = BackstopConfig::from_toml_str(text).unwrap();
    match config.redis_connection() {
        Err(BuildError::Invalid(error)) => assert_eq!(error.field(), "redis.url"),
        other => panic!("expected the missing URL variable to be named: {other:?}"),
    }
    let config = BackstopConfig::from_toml_str(
        "[redis]\nurl = \"redis://127.0.0.1:1\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let printed = format!("{:?}", config.redis.as_ref().unwrap());
    assert!(!printed.contains("hunter2"), "{printed}");
}
