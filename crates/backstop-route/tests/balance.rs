//! Balancing within a group: P2C over Peak-EWMA avoids a slow target, follows a latency
//! jump, and honours weights. Paused Tokio time: latencies are simulated exactly.

mod common;

use backstop_core::Error;
use backstop_route::{RouteConfig, RouteHints, Router, TargetConfig};
use common::*;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Per-target simulated latency in milliseconds (changeable mid-run), with ±10 % jitter.
struct Latencies(Vec<AtomicU64>);

impl Latencies {
    fn new(ms: &[u64]) -> Arc<Self> {
        Arc::new(Self(ms.iter().map(|&m| AtomicU64::new(m)).collect()))
    }

    fn of(&self, index: usize) -> Duration {
        let base = self.0[index].load(Ordering::Relaxed) as f64;
        Duration::from_micros((base * 1_000.0 * (0.9 + 0.2 * fastrand::f64())) as u64)
    }
}

/// One routed request answered after its target's simulated latency; `chose` is told the
/// index of every target called.
async fn request(
    router: &Router,
    latencies: &Latencies,
    chose: impl Fn(usize),
) -> Result<(), Error<Status>> {
    router
        .run(&RouteHints::new(), &classify, |target| {
            let index = target.index();
            chose(index);
            let latency = latencies.of(index);
            async move {
                tokio::time::sleep(latency).await;
                Ok(())
            }
        })
        .await
}

/// Spawns `clients` tasks, each running a future made by `client`, and waits for them all.
async fn concurrently<F, Fut>(clients: usize, client: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(client())).collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// `clients` concurrent callers each make `per_client` sequential requests; returns the
/// target index of every request in the order they were started.
async fn drive(
    router: &Router,
    latencies: &Arc<Latencies>,
    clients: usize,
    per_client: usize,
) -> Vec<usize> {
    let log = Arc::new(Mutex::new(Vec::new()));
    concurrently(clients, || {
        let (router, latencies, log) = (router.clone(), latencies.clone(), log.clone());
        async move {
            for _ in 0..per_client {
                request(&router, &latencies, |index| log.lock().push(index))
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    Arc::try_unwrap(log).unwrap().into_inner()
}

fn share(log: &[usize], index: usize) -> f64 {
    log.iter().filter(|&&i| i == index).count() as f64 / log.len() as f64
}

fn three() -> Router {
    router(vec![
        target("fast", 0),
        target("medium", 0),
        target("slow", 0),
    ])
}

#[tokio::test(start_paused = true)]
async fn the_slow_target_gets_at_most_five_percent_after_warm_up() {
    let router = three();
    let latencies = Latencies::new(&[20, 40, 200]);
    let log = drive(&router, &latencies, 4, 1_000).await;
    let after_warm_up = &log[200..];
    let slow = share(after_warm_up, 2);
    let fast = share(after_warm_up, 0);
    assert!(slow <= 0.05, "slow share {slow:.3}");
    assert!(
        fast > share(after_warm_up, 1),
        "fast {fast:.3} beats medium"
    );
    let stats = router.stats();
    let ewma = |i: usize| stats.targets[i].ewma_latency;
    assert!(
        ewma(0) < ewma(1) && ewma(1) < ewma(2),
        "{:?}",
        stats.targets
    );
}

/// The bound: once the fast target's latency jumps from 20 to 300 ms, its first slow answer
/// raises its estimate to the peak at once, so from one second after the jump on it gets at
/// most 20 % of requests (P2C with three targets still gives the worse two a share when
/// they are drawn together), and the medium target takes the lead.
#[tokio::test(start_paused = true)]
async fn traffic_leaves_a_target_whose_latency_jumps_within_a_second() {
    let router = three();
    let latencies = Latencies::new(&[20, 40, 200]);
    let before = drive(&router, &latencies, 4, 500).await;
    assert!(share(&before[200..], 0) > 0.5, "fast leads before the jump");

    latencies.0[0].store(300, Ordering::Relaxed);
    let jump = tokio::time::Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    concurrently(4, || {
        let (router, latencies, log) = (router.clone(), latencies.clone(), log.clone());
        async move {
            while jump.elapsed() < Duration::from_secs(5) {
                let chose = |index| log.lock().push((jump.elapsed(), index));
                let _ = request(&router, &latencies, chose).await;
            }
        }
    })
    .await;
    let log = log.lock();
    let after: Vec<usize> = log
        .iter()
        .filter(|(at, _)| *at >= Duration::from_secs(1))
        .map(|(_, i)| *i)
        .collect();
    let degraded = share(&after, 0);
    assert!(degraded <= 0.20, "degraded target still gets {degraded:.3}");
    let medium = share(&after, 1);
    assert!(medium > 0.5, "medium takes the lead: {medium:.3}");
}

#[tokio::test(start_paused = true)]
async fn equal_targets_share_by_weight() {
    let weighted = |name: &str, weight| TargetConfig {
        weight,
        ..target(name, 0)
    };
    let router = router(vec![
        weighted("one", 1),
        weighted("two", 2),
        weighted("three", 3),
    ]);
    let latencies = Latencies::new(&[30, 30, 30]);
    let log = drive(&router, &latencies, 1, 6_000).await;
    for (index, want) in [(0, 1.0 / 6.0), (1, 2.0 / 6.0), (2, 3.0 / 6.0)] {
        let got = share(&log[300..], index);
        assert!(
            (got - want).abs() <= 0.03,
            "target {index}: {got:.3} vs {want:.3}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_target_is_tried_again_as_its_estimate_decays() {
    let router = RouteConfig {
        targets: vec![target("a", 0), target("b", 0)],
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    // "b" was once very slow; after a minute without traffic its estimate is back near the
    // default (100 ms), below "a"'s 150 ms, so "b" is tried again and found fast.
    let latencies = Latencies::new(&[150, 2_000]);
    drive(&router, &latencies, 1, 50).await;
    let peak = router.stats().targets[1].ewma_latency;
    assert!(peak >= ms(500), "still remembered as slow: {peak:?}");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(router.stats().targets[1].ewma_latency < ms(110));
    latencies.0[1].store(20, Ordering::Relaxed);
    let log = drive(&router, &latencies, 1, 200).await;
    let b = share(&log, 1);
    assert!(b > 0.2, "b is back in rotation: {b:.3}");
}

/// A target idle for long (slow once, then cooled down for ten minutes while the other
/// one served for eight) must not take a whole burst of requests that arrive before its first
/// answer: its estimate rests at the default latency, and each request in flight raises
/// its cost. (An estimate decaying toward zero made it the cheapest target by far.)
#[tokio::test(start_paused = true)]
async fn a_burst_does_not_pile_onto_an_idle_target() {
    let router = router(vec![target("busy", 0), target("idle", 0)]);
    let latencies = Latencies::new(&[50, 3_000]);
    drive(&router, &latencies, 1, 40).await;
    latencies.0[1].store(50, Ordering::Relaxed);
    let idle = router.target("idle").unwrap().clone();
    router.cool_down(&idle, Duration::from_secs(600));
    for _ in 0..500 {
        let served = drive(&router, &latencies, 1, 1).await;
        assert_eq!(served, [0]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::advance(Duration::from_secs(100)).await; // the cooldown is over
    let burst = drive(&router, &latencies, 40, 1).await;
    let idle = share(&burst, 1);
    assert!(idle < 0.6, "the idle target took {idle:.2} of the burst");
}
