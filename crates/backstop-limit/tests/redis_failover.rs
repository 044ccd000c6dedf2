//! The Redis limiter across a Redis Cluster primary failover (`REDIS_CLUSTER_NODES`, from
//! `.ci/redis-fleet`, node timeout 1 s): the primary owning a key's slot is killed by pid
//! during a request loop.
#![cfg(feature = "redis")]

use backstop_limit::{CheckError, FailurePolicy, Quota, RedisRateLimiter};
use backstop_redis::{RedisConnection, RedisFault};
use backstop_testkit::fleet;
use std::time::{Duration, Instant};

const BURST: u64 = 50;
const BEFORE: u64 = 30;

/// Stated bound: decisions come back from Redis within node timeout (1 s) + failover + a
/// few seconds (15 s asserted); no call outlasts its timeout (plus scheduling slack); and
/// the key's count survives: writes acknowledged and replicated before the kill are kept,
/// so after the failover the key admits exactly `BURST - BEFORE` more, less at most one per
/// call that timed out on the client after the new primary had applied it. What a
/// failover can cost in general: admissions a primary acknowledged but had not yet
/// replicated when it died are forgotten (async replication), refunding at most the
/// admissions of that replication lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_primary_is_followed_and_the_count_survives() {
    let Some((config, seeds)) = fleet::whole_cluster() else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let limiter = RedisRateLimiter::new(
        RedisConnection::new(&config).unwrap(),
        &fleet::unique("failover"),
        &[Quota::per_hour(BURST).unwrap()],
    )
    .unwrap()
    .with_timeout(timeout)
    .with_failure_policy(FailurePolicy::FailClosed);
    for _ in 0..BEFORE {
        assert!(limiter.check_key("ann").await.unwrap().admitted);
    }
    let slot = backstop_redis::key::slot(limiter.redis_key("ann", 0).as_bytes());
    let primary = fleet::cluster_primary_of(&seeds[0], slot).unwrap();
    // The admissions so far have reached the replica: nothing acknowledged is unreplicated.
    assert!(fleet::wait_until(Duration::from_secs(10), || {
        let offset = fleet::info_field(&primary, "master_repl_offset");
        let replica = fleet::info_field(&primary, "slave0").unwrap_or_default();
        offset.is_some_and(|o| replica.contains(&format!("offset={o},")))
    }));
    let other_seed = seeds.iter().find(|s| **s != primary).unwrap().clone();

    let killed = fleet::kill(&primary);
    let started = Instant::now();
    let call_bound = timeout + Duration::from_millis(200);
    let (mut failed, mut timed_out, mut slowest) = (0u64, 0u64, Duration::ZERO);
    let first = loop {
        let call = Instant::now();
        let outcome = limiter.check_key("ann").await;
        slowest = slowest.max(call.elapsed());
        match outcome {
            Ok(decision) => break decision,
            Err(CheckError::Unavailable(fault)) => {
                assert!(fault.is_outage(), "a failover is an outage: {fault:?}");
                timed_out += u64::from(matches!(fault, RedisFault::TimedOut(_)));
                failed += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not back within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let recovered = started.elapsed();
    let mut after = u64::from(first.admitted);
    while limiter.check_key("ann").await.unwrap().admitted {
        after += 1;
        assert!(after <= BURST, "the count was lost");
    }
    println!(
        "cluster failover: limiter back after {recovered:?} ({failed} failed calls, {timed_out} timed out, slowest {slowest:?}); admitted {after} more of the remaining {}",
        BURST - BEFORE
    );
    drop(killed);
    assert!(slowest <= call_bound, "a call took {slowest:?}");
    assert!(failed > 0, "the kill was noticed");
    assert!(
        after <= BURST - BEFORE && after + timed_out >= BURST - BEFORE,
        "admitted {after} after the failover, bound {} (less {timed_out} timed out)",
        BURST - BEFORE
    );
    assert!(
        fleet::wait_until(Duration::from_secs(30), || fleet::cluster_whole(
            &other_seed
        )),
        "the killed node rejoins as a replica"
    );
}
