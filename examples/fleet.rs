//! A fleet of OS processes sharing one Redis: one limiter budget, one deduplicator and one
//! tiered cache, over whichever topology the environment names.
//!
//! ```sh
//! bash .ci/redis-fleet start          # prints the export lines for a local fleet
//! REDIS_CLUSTER_NODES=127.0.0.1:7000,127.0.0.1:7001 cargo run --release --example fleet
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example fleet
//! ```
//!
//! The example starts itself three more times (`--child`); each child spends the one
//! shared budget, runs the shared jobs through distributed dedup and reads the shared
//! cache, and prints what it admitted, executed and served. The parent sums them (the
//! admitted total is the quota's burst, each job runs once in the whole fleet), then
//! measures how long another instance's L1 keeps a changed key and prints
//! `l1_invalidation_delay_ms workload=<standalone|cluster> contender=backstop stat=<p50|p99> value=<v>`.
//! With neither `REDIS_CLUSTER_NODES` nor `REDIS_URL` set it says so and exits.

#[cfg(all(
    feature = "redis",
    feature = "limit",
    feature = "dedup",
    feature = "cache"
))]
mod fleet {
    use backstop::cache::{
        Entry, L1Invalidation, MemoryCache, MemoryTier, RedisTier, RedisTierConfig, TieredCache,
    };
    use backstop::dedup::{DistributedConfig, DistributedGroup, RedisFailure, Source};
    use backstop::limit::{FailurePolicy, Quota, RedisRateLimiter};
    use backstop::redis::{RedisConfig, RedisConnection};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    const PROCESSES: usize = 3;
    const BUDGET: u64 = 100;
    const JOBS: usize = 40;
    const PROMPTS: u64 = 200;

    /// The topology the environment names, and its name for the output.
    fn topology() -> Option<(RedisConfig, &'static str)> {
        let timeout = Duration::from_secs(2);
        if let Ok(nodes) = std::env::var("REDIS_CLUSTER_NODES")
            && !nodes.is_empty()
        {
            return Some((
                RedisConfig::cluster(nodes.split(',')).with_timeout(timeout),
                "cluster",
            ));
        }
        let url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty())?;
        Some((RedisConfig::url(url).with_timeout(timeout), "standalone"))
    }

    /// One process's cache: a memory L1 subscribed to the others' writes, over Redis.
    async fn cache(
        redis: &RedisConfig,
        run: &str,
    ) -> (
        TieredCache<String, String>,
        MemoryCache<String, Entry<String>>,
        L1Invalidation,
    ) {
        let tier: RedisTier<Entry<String>> = RedisTier::connect_to(
            redis,
            RedisTierConfig {
                namespace: format!("fleet-example:{run}:cache:"),
                operation_timeout: Duration::from_secs(2),
                ..RedisTierConfig::default()
            },
        )
        .await
        .expect("the Redis the environment names is reachable");
        let memory = MemoryTier::with_capacity(10_000).expect("a positive capacity");
        let l1 = memory.cache().clone();
        let invalidation = tier.invalidate_l1(l1.clone());
        let cache = TieredCache::builder()
            .memory(memory, Some(Duration::from_secs(600)))
            .tier(tier, None)
            .build()
            .expect("a valid tiered cache");
        invalidation.subscribed().await;
        (cache, l1, invalidation)
    }

    async fn child(index: usize, run: &str) {
        let (redis, _) = topology().expect("the parent checked the topology");
        let connection = RedisConnection::new(&redis).expect("a valid connection config");

        // One budget for the fleet: BUDGET requests an hour, all burst.
        let quota = Quota::per_hour(BUDGET).expect("a positive rate");
        let limiter = RedisRateLimiter::new(
            connection.clone(),
            &format!("fleet-example:{run}:rl"),
            &[quota],
        )
        .expect("a valid limiter")
        .with_timeout(Duration::from_secs(2))
        .with_failure_policy(FailurePolicy::FailClosed);
        let mut admitted = 0u64;
        for _ in 0..BUDGET {
            if limiter
                .check_key("the-fleet")
                .await
                .expect("redis decides")
                .admitted
            {
                admitted += 1;
            }
        }

        // The same jobs in every process; each runs once in the fleet.
        let group: DistributedGroup<String, u64, String> = DistributedGroup::new(
            connection,
            DistributedConfig {
                prefix: format!("fleet-example:{run}:dedup"),
                redis_timeout: Duration::from_secs(2),
                on_redis_error: RedisFailure::Fail,
                ..DistributedConfig::default()
            },
        )
        .expect("a valid dedup config");
        let mut executed = 0u64;
        let jobs = (0..JOBS).map(|job| {
            let group = group.clone();
            async move {
                group
                    .work(format!("job-{job}"), move || async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(job as u64)
                    })
                    .await
                    .expect("dedup answers")
            }
        });
        for outcome in futures::future::join_all(jobs).await {
            executed += u64::from(outcome.source == Source::Executed);
        }

        // The shared cache: what one process loads, the others are served from Redis.
        let (cache, _, invalidation) = cache(&redis, run).await;
        let loads = Arc::new(AtomicU64::new(0));
        for prompt in 0..PROMPTS {
            let key = format!("prompt-{}", (prompt + index as u64 * 7) % PROMPTS);
            let loads = Arc::clone(&loads);
            let answer = format!("answer to {key}");
            cache
                .get_or_load(&key, move || async move {
                    loads.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(Some(answer))
                })
                .await
                .expect("the loader never fails");
        }
        let stats = cache.stats();
        let served: u64 = stats.hits_by_tier.iter().sum();
        println!(
            "process={index} pid={} admitted={admitted} executed={executed} served={served} \
             served_from_redis={} loaded={} l1_invalidations_applied={}",
            std::process::id(),
            stats.hits_by_tier.get(1).copied().unwrap_or(0),
            loads.load(Ordering::Relaxed),
            invalidation.stats().applied,
        );
    }

    fn field(line: &str, name: &str) -> u64 {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }

    fn percentile(sorted: &[Duration], p: f64) -> f64 {
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1_000.0
    }

    /// A writes (overwrite, remove, prefix invalidation); the delay until B's L1 has
    /// dropped the key, over `changes` changes.
    async fn invalidation_delays(redis: &RedisConfig, run: &str, changes: usize) -> Vec<Duration> {
        let (a, _, _a_sub) = cache(redis, &format!("{run}-l1")).await;
        let (b, b_l1, b_sub) = cache(redis, &format!("{run}-l1")).await;
        let mut delays = Vec::with_capacity(changes);
        for i in 0..changes {
            let key = format!("p{}:k{}", i % 10, i);
            a.insert(&key, "old".to_string()).await.expect("written");
            // B fills its L1 once A's write has been announced to it.
            while b_sub.stats().applied < 2 * i as u64 + 1 {
                tokio::task::yield_now().await;
            }
            b.get(&key).await.expect("B reads the value through L2");
            let started = Instant::now();
            match i % 3 {
                0 => a.insert(&key, "new".to_string()).await.expect("written"),
                1 => a.remove(&key).await.expect("removed"),
                _ => a
                    .invalidate_prefix(&format!("p{}:", i % 10))
                    .await
                    .expect("invalidated"),
            }
            while b_l1.contains(&key) {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "B never dropped {key}"
                );
                tokio::task::yield_now().await;
            }
            delays.push(started.elapsed());
            while b_sub.stats().applied < 2 * i as u64 + 2 {
                tokio::task::yield_now().await;
            }
        }
        delays.sort();
        delays
    }

    async fn parent() {
        let Some((redis, workload)) = topology() else {
            println!("neither REDIS_CLUSTER_NODES nor REDIS_URL is set: nothing to run against");
            return;
        };
        let run = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let exe = std::env::current_exe().expect("the example knows its own path");
        let children: Vec<_> = (0..PROCESSES)
            .map(|index| {
                std::process::Command::new(&exe)
                    .args(["--child", &index.to_string(), &run])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("the example starts itself")
            })
            .collect();
        let (mut admitted, mut executed, mut served) = (0, 0, 0);
        for child in children {
            let output = child.wait_with_output().expect("a child finishes");
            assert!(
                output.status.success(),
                "a child failed: {:?}",
                output.status
            );
            let text = String::from_utf8_lossy(&output.stdout);
            for line in text.lines().filter(|l| l.starts_with("process=")) {
                println!("{line}");
                admitted += field(line, "admitted");
                executed += field(line, "executed");
                served += field(line, "served");
            }
        }
        println!(
            "fleet workload={workload} processes={PROCESSES} admitted={admitted} (budget {BUDGET}) \
             executed={executed} (jobs {JOBS}) served={served}"
        );
        let delays = invalidation_delays(&redis, &run, 300).await;
        for (stat, p) in [("p50", 0.5), ("p99", 0.99)] {
            println!(
                "l1_invalidation_delay_ms workload={workload} contender=backstop stat={stat} value={:.3}",
                percentile(&delays, p)
            );
        }
    }

    pub(crate) fn main() {
        let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
        let args: Vec<String> = std::env::args().collect();
        match args.iter().position(|a| a == "--child") {
            Some(at) => {
                let index = args.get(at + 1).and_then(|i| i.parse().ok()).unwrap_or(0);
                let run = args.get(at + 2).cloned().unwrap_or_default();
                runtime.block_on(child(index, &run));
            }
            None => runtime.block_on(parent()),
        }
    }
}

fn main() {
    #[cfg(all(
        feature = "redis",
        feature = "limit",
        feature = "dedup",
        feature = "cache"
    ))]
    fleet::main();
    #[cfg(not(all(
        feature = "redis",
        feature = "limit",
        feature = "dedup",
        feature = "cache"
    )))]
    println!("the fleet example needs the features redis, limit, dedup and cache");
}
