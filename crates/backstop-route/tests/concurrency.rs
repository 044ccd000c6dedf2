//! Many callers on many threads: counts add up and nothing stays in flight.

mod common;

use backstop_core::{Error, LoadSignal};
use backstop_route::{RouteConfig, RouteHints, TargetConfig};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_add_up_under_concurrency() {
    let router = RouteConfig {
        targets: (0..6)
            .map(|i| TargetConfig {
                group: i / 3,
                ..TargetConfig::named(format!("t{i}"))
            })
            .collect(),
        ..RouteConfig::default()
    }
    .build()
    .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let (router, calls) = (router.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for i in 0..500u64 {
                let hints = if i.is_multiple_of(4) {
                    RouteHints::new().sticky(task)
                } else {
                    RouteHints::new()
                };
                let answer = router
                    .run(&hints, &classify, |target| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let fails = (i + target.index() as u64).is_multiple_of(7);
                        async move {
                            tokio::task::yield_now().await;
                            if fails {
                                Err(status(503))
                            } else {
                                Ok::<_, Error<Status>>(())
                            }
                        }
                    })
                    .await;
                ok += u64::from(answer.is_ok());
            }
            ok
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap();
    }
    let stats = router.stats();
    assert_eq!(stats.calls, 16 * 500);
    assert_eq!(stats.succeeded, ok);
    assert_eq!(
        stats.succeeded + stats.exhausted + stats.all_cooling_refusals,
        stats.calls
    );
    let chosen: u64 = stats.targets.iter().map(|t| t.chosen).sum();
    let finished: u64 = stats
        .targets
        .iter()
        .map(|t| t.succeeded + t.failed.total())
        .sum();
    assert_eq!(chosen, calls.load(Ordering::Relaxed));
    assert_eq!(chosen, finished);
    assert_eq!(
        stats.fallbacks,
        chosen - (stats.calls - stats.all_cooling_refusals)
    );
    assert_eq!(router.load().in_flight, 0);
    assert!(stats.targets.iter().all(|t| t.in_flight == 0));
}

#[tokio::test(start_paused = true)]
async fn an_operator_can_force_a_target_open() {
    let router = router(vec![target("a", 0), target("b", 1)]);
    let a = router.target("a").unwrap().clone();
    router.breaker(&a).unwrap().force_open();
    for _ in 0..10 {
        let answer = chosen(&router, &RouteHints::new()).await;
        assert_eq!(answer.unwrap(), "b");
    }
    assert_eq!(router.stats().targets[0].chosen, 0);
}
