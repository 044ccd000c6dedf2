//! Against the primary, replica and three Sentinels `.ci/redis-fleet` starts
//! (`REDIS_SENTINEL`).

use backstop_testkit::fleet as support;

use backstop_redis::{Misconfiguration, RedisConfig, RedisConnection, RedisFault, Topology};
use std::time::{Duration, Instant};

async fn set(redis: &RedisConnection, key: &str, value: u64) -> Result<(), RedisFault> {
    let key = key.to_string();
    redis
        .run(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .query_async(&mut c)
                .await
        })
        .await
}

/// The primary is killed by pid during a write loop: the handle follows Sentinel's
/// promotion by itself within a few seconds of Sentinel announcing it, no call outlasts
/// its timeout; the old primary is then brought back as the new one's replica, so the
/// fleet keeps a replica for the tests after this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_followed_to_the_promoted_replica() {
    let Some(spec) = support::env("REDIS_SENTINEL") else {
        return;
    };
    let config = support::sentinel()
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let redis = RedisConnection::connect(&config).await.unwrap();
    assert_eq!(redis.topology(), Topology::Sentinel);
    set(&redis, "fleet-test:sentinel", 0).await.unwrap();

    let old = support::sentinel_primary(&spec);
    assert!(
        support::wait_until(Duration::from_secs(30), || {
            support::info_field(&old, "slave0").is_some_and(|s| s.contains("state=online"))
        }),
        "the primary {old} has an online replica to promote"
    );
    let killed = support::kill(&old);
    let started = Instant::now();
    // Sentinel's own part, noticing (down-after 1 s) and promoting, takes about 2 s here,
    // but nothing at all happens while Sentinel is in TILT (30 s after it finds its event
    // loop starved, which a loaded CI machine can cause). The handle's part is measured
    // from the announcement.
    let bound = Duration::from_secs(60);
    let follow_bound = Duration::from_secs(5);
    let call_bound = config.timeout + config.connect_timeout + Duration::from_millis(100);
    let mut failures = 0;
    let mut slowest = Duration::ZERO;
    let mut announced = None;
    let (recovered, followed) = loop {
        if announced.is_none() && support::sentinel_primary(&spec) != old {
            announced = Some(Instant::now());
        }
        let call = Instant::now();
        let outcome = set(&redis, "fleet-test:sentinel", 1).await;
        slowest = slowest.max(call.elapsed());
        match (outcome, announced) {
            (Ok(()), Some(at)) => break (started.elapsed(), at.elapsed()),
            (Ok(()), None) => {}
            (Err(fault), _) => {
                assert!(
                    fault.is_outage(),
                    "a failover is an outage, not a mistake: {fault:?}"
                );
                failures += 1;
            }
        }
        assert!(
            started.elapsed() < bound,
            "no promotion followed within {bound:?} (announced after {:?})",
            announced.map(|at| at - started)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let new = support::sentinel_primary(&spec);
    assert_ne!(new, old);
    // The old primary comes back as the new one's replica, as an operator would start it.
    // Waiting for Sentinel to convert it instead is not this library's behaviour and
    // is slow: Sentinel acts only after 8 s of the old primary's reported role, reports
    // arrive every 10 s, and it does nothing for 30 s each time it finds its event loop
    // starved (TILT). One CI run on a loaded 2-core machine waited past a 60 s bound.
    killed.restart_as_replica_of(&new);
    assert!(
        support::wait_until(Duration::from_secs(60), || {
            support::info_field(&old, "master_link_status").as_deref() == Some("up")
        }),
        "the old primary {old} is back as a replica of {new}, in sync (PING: {:?}, role: {:?}, link: {:?})",
        support::cli(&old, &["ping"]),
        support::info_field(&old, "role"),
        support::info_field(&old, "master_link_status"),
    );
    println!(
        "sentinel failover: writes back after {recovered:?}, {followed:?} after the announcement ({failures} failed calls, slowest call {slowest:?})"
    );
    assert!(
        followed <= follow_bound,
        "writes came back {followed:?} after Sentinel announced the promotion, over {follow_bound:?}"
    );
    assert!(
        slowest <= call_bound,
        "a call took {slowest:?}, over {call_bound:?}"
    );
    assert!(failures > 0, "the kill was noticed");
}

#[tokio::test]
async fn a_url_at_a_replica_is_a_typed_mistake() {
    let Some(replica) = support::sentinel_replica_url() else {
        return;
    };
    let mistake = support::connect_mistake(&RedisConfig::url(replica)).await;
    assert!(
        matches!(mistake, Misconfiguration::Replica { .. }),
        "{mistake:?}"
    );
}

#[tokio::test]
async fn an_unknown_master_name_is_a_typed_mistake() {
    let Some(spec) = support::env("REDIS_SENTINEL") else {
        return;
    };
    let nodes = spec.split_once('@').unwrap().1;
    let config = RedisConfig::sentinel(
        backstop_redis::SentinelConfig::parse(&format!("no-such-master@{nodes}")).unwrap(),
    );
    let mistake = support::connect_mistake(&config).await;
    assert!(
        matches!(mistake, Misconfiguration::UnknownMaster(_)),
        "{mistake:?}"
    );
}
