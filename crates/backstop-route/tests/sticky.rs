//! Sticky routing: a key stays on one target while it is healthy, and moves when it fails.

mod common;

use backstop_core::Error;
use backstop_route::{RouteHints, Router};
use common::*;
use parking_lot::Mutex;
use std::collections::HashMap;

fn four() -> Router {
    router((0..4).map(|i| target(&format!("t{i}"), 0)).collect())
}

/// Sends `per_key` requests for each of `keys` keys; `down` answers 503. Returns, per key,
/// the targets that answered successfully.
async fn send(
    router: &Router,
    keys: u32,
    per_key: u32,
    down: Option<usize>,
) -> HashMap<u32, Vec<usize>> {
    let served = Mutex::new(HashMap::<u32, Vec<usize>>::new());
    for round in 0..per_key {
        for key in 0..keys {
            let hints = RouteHints::new().sticky(format!("conversation-{key}"));
            let index = router
                .run(&hints, &classify, |target| {
                    let index = target.index();
                    async move {
                        tokio::time::sleep(ms(5 + u64::from(round % 3))).await;
                        if Some(index) == down {
                            Err(status(503))
                        } else {
                            Ok::<_, Error<Status>>(index)
                        }
                    }
                })
                .await
                .unwrap();
            served.lock().entry(key).or_default().push(index);
        }
    }
    served.into_inner()
}

fn modal_share(targets: &[usize]) -> (usize, f64) {
    let mut counts = [0usize; 4];
    for &t in targets {
        counts[t] += 1;
    }
    let (best, n) = counts.iter().enumerate().max_by_key(|(_, n)| **n).unwrap();
    (best, *n as f64 / targets.len() as f64)
}

#[tokio::test(start_paused = true)]
async fn a_key_stays_on_one_target_while_it_is_healthy() {
    let router = four();
    let served = send(&router, 200, 20, None).await;
    let mut homes = [0; 4];
    for targets in served.values() {
        let (home, share) = modal_share(targets);
        assert!(share >= 0.95, "a key spread over targets: {targets:?}");
        homes[home] += 1;
    }
    assert!(
        homes.iter().all(|&n| n > 25),
        "keys spread over every target: {homes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keys_move_when_their_target_fails_and_only_those_keys() {
    let router = four();
    let before = send(&router, 200, 5, None).await;
    let after = send(&router, 200, 20, Some(0)).await;
    for key in 0..200 {
        let (home_before, _) = modal_share(&before[&key]);
        let (home_after, share) = modal_share(&after[&key]);
        assert!(
            share >= 0.95,
            "moved keys stick to their new target too: {:?}",
            after[&key]
        );
        if home_before == 0 {
            assert_ne!(home_after, 0);
        } else {
            assert_eq!(home_after, home_before, "a healthy target keeps its keys");
        }
    }
    // After three failures in a row the failed target cools down (and its breaker opens):
    // of 4,000 requests, under 1 % are spent finding out it is still down.
    let failed = router.stats().targets[0].clone();
    assert!(failed.failed.server_error < 40, "{failed:?}");
    assert!(failed.cooldowns >= 1);
}
