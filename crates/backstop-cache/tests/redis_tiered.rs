//! Tiered caches over a real Redis: a shared L2, cross-instance invalidation, and Redis
//! dying and coming back mid-run.
#![cfg(feature = "redis")]

use backstop_breaker::Breaker;
use backstop_cache::{GuardedTier, RedisTier, RedisTierConfig, TieredCache};
use backstop_core::ManualClock;
use backstop_testkit::RedisTestContext;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;

use support::{MapTier, put};

fn redis_config(namespace: &str) -> RedisTierConfig {
    RedisTierConfig {
        namespace: namespace.to_string(),
        ..RedisTierConfig::default()
    }
}

#[tokio::test]
async fn two_instances_share_l2_and_see_each_others_invalidations() {
    let Some(redis) = RedisTestContext::from_env("two_instances_share_l2").await else {
        return;
    };
    let instance = || async {
        let l2 = RedisTier::connect(redis.url(), redis_config(redis.prefix()))
            .await
            .unwrap();
        let l1 = MapTier::named("l1");
        let cache: TieredCache<String, String> = TieredCache::builder()
            .tier(l1.clone(), Some(Duration::from_secs(60)))
            .tier(l2, None)
            .build()
            .unwrap();
        (cache, l1)
    };
    let (a, _) = instance().await;
    let (b, b_l1) = instance().await;

    a.insert(&"prompt:1".to_string(), "answer".to_string())
        .await
        .unwrap();
    assert_eq!(
        b.get(&"prompt:1".to_string()).await,
        Some("answer".to_string()),
        "from the shared L2"
    );
    assert!(
        b_l1.entries.lock().unwrap().contains_key("prompt:1"),
        "promoted into b's L1"
    );
    assert_eq!(b.stats().hits_by_tier, vec![0, 1]);

    a.invalidate_prefix("prompt:").await.unwrap();
    assert_eq!(
        redis.count_keys().await,
        0,
        "a's invalidation reached the shared L2"
    );
    redis.cleanup().await;
}

/// A redis-server of the test's own, so the test can kill and restart it.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        let mut child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // Readiness is read from the server's own log line, not guessed with a sleep.
        let stdout = child.stdout.take()?;
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        ready.then_some(Self { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_redis_dying_and_recover_when_it_returns() {
    // Needs a redis-server binary; CI has one whenever it sets REDIS_URL.
    if RedisTestContext::from_env("reads_survive_redis_dying")
        .await
        .is_none()
    {
        return;
    }
    let port = free_port();
    let server = OwnRedis::start(port).expect("redis-server starts");
    let clock = ManualClock::new();
    let breaker = Breaker::builder()
        .name("l2")
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let l2 = RedisTier::connect(&server.url(), redis_config("survive:"))
        .await
        .unwrap();
    let l1 = MapTier::named("l1");
    let cache: TieredCache<String, String> = TieredCache::builder()
        .tier(l1.clone(), None)
        .tier(GuardedTier::new(l2, breaker), None)
        .build()
        .unwrap();
    put(&cache, "hot", "in both tiers").await;
    l1.entries.lock().unwrap().remove("hot");
    put(&cache, "l1", "served locally").await;

    drop(server);
    assert_eq!(
        cache.get(&"l1".to_string()).await,
        Some("served locally".to_string())
    );
    for _ in 0..3 {
        assert_eq!(
            cache.get(&"hot".to_string()).await,
            None,
            "L2 is down: a miss, not an error"
        );
    }
    let stats = cache.stats();
    assert_eq!(stats.read_errors, 3);
    assert!(
        cache
            .insert(&"new".to_string(), "v".to_string())
            .await
            .is_err(),
        "the partial write is reported"
    );
    assert_eq!(
        l1.entries
            .lock()
            .unwrap()
            .get("new")
            .and_then(|(e, _)| e.value.clone())
            .as_deref(),
        Some("v")
    );

    let _server = OwnRedis::start(port).expect("redis-server restarts on the same port");
    clock.advance(Duration::from_secs(10));
    let mut recovered = false;
    for _ in 0..20 {
        if cache
            .insert(&"after".to_string(), "back".to_string())
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        clock.advance(Duration::from_secs(10));
    }
    assert!(
        recovered,
        "writes reach Redis again once it is back and the breaker probes"
    );
    l1.entries.lock().unwrap().clear();
    assert_eq!(
        cache.get(&"after".to_string()).await,
        Some("back".to_string())
    );
}

/// Issue 19: `namespace = ""` was accepted and `invalidate_prefix("")` then scanned
/// `MATCH *`, deleting every key of the database. Both are refused now, and removing the
/// whole namespace is its own operation that leaves a foreign key alone.
#[tokio::test]
async fn invalidation_never_reaches_keys_outside_the_namespace() {
    let Some(redis) = RedisTestContext::from_env("invalidation_stays_in_namespace").await else {
        return;
    };
    for namespace in ["", "*", "app:[a-z]"] {
        let refused = RedisTier::<backstop_cache::Entry<String>>::connect(
            redis.url(),
            redis_config(namespace),
        )
        .await;
        match refused {
            Err(backstop_cache::TierError::Config(error)) => {
                assert_eq!(error.field(), "namespace", "{namespace:?}")
            }
            Err(other) => panic!("{namespace:?}: expected a config error, got {other}"),
            Ok(_) => panic!("namespace {namespace:?} was accepted"),
        }
    }

    // A key of another application, sharing the test's prefix so cleanup finds it.
    let foreign = redis.key("other-app:session");
    let mut connection = redis.connection().await;
    let () = redis::cmd("SET")
        .arg(&foreign)
        .arg("keep me")
        .query_async(&mut connection)
        .await
        .unwrap();

    let namespace = redis.key("cache:");
    let cache: TieredCache<String, String> = TieredCache::builder()
        .tier(
            RedisTier::connect(redis.url(), redis_config(&namespace))
                .await
                .unwrap(),
            None,
        )
        .build()
        .unwrap();
    for key in ["a:1", "a:2", "b:1"] {
        cache
            .insert(&key.to_string(), "v".to_string())
            .await
            .unwrap();
    }
    assert_eq!(redis.count_keys().await, 4);

    let empty = cache.invalidate_prefix("").await.unwrap_err();
    assert_eq!(empty.reached, 0);
    assert_eq!(empty.failed[0].1, backstop_cache::TierError::EmptyPrefix);
    assert_eq!(
        redis.count_keys().await,
        4,
        "an empty prefix removed nothing"
    );

    cache.invalidate_prefix("a:").await.unwrap();
    assert_eq!(redis.count_keys().await, 2);
    cache.invalidate_all().await.unwrap();
    assert_eq!(
        redis.count_keys().await,
        1,
        "only the namespace was emptied"
    );
    let kept: Option<String> = redis::cmd("GET")
        .arg(&foreign)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("keep me"));
    redis.cleanup().await;
}
