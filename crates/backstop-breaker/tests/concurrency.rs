//! Races: exact half-open admission under 100 racing tasks, and a multi-thread stress run
//! after which no probe permit is leaked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backstop_breaker::{Breaker, State};
use backstop_core::ManualClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_permitted_probes_are_admitted_when_100_tasks_race() {
    for round in 0..10 {
        let clock = ManualClock::new();
        let breaker = Breaker::builder()
            .permitted_calls_in_half_open(5)
            .wait_in_open(Duration::from_secs(1))
            .clock(clock.clone())
            .build()
            .unwrap();
        breaker.transition_to(State::Open);
        clock.advance(Duration::from_secs(1));

        let (release, gate) = tokio::sync::watch::channel(false);
        let admitted = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(tokio::sync::Barrier::new(100));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let breaker = breaker.clone();
                let admitted = admitted.clone();
                let start = start.clone();
                let mut gate = gate.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    breaker
                        .call(|| async {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            gate.wait_for(|open| *open)
                                .await
                                .map(|_| ())
                                .map_err(|_| ())
                        })
                        .await
                })
            })
            .collect();
        while admitted.load(Ordering::SeqCst) + (breaker.stats().rejected_calls as usize) < 100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 5, "round {round}");
        release.send(true).unwrap();
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 5);
        assert_eq!(breaker.state(), State::Closed);
    }
}

#[test]
fn stress_leaves_no_stranded_probe() {
    let clock = ManualClock::new();
    let breaker = Breaker::builder()
        .count_window(16)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .slow_call_duration(Duration::from_millis(5))
        .wait_in_open(Duration::from_millis(10))
        .backoff(2.0, Duration::from_millis(80))
        .permitted_calls_in_half_open(3)
        .clock(clock.clone())
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let breaker = &breaker;
            let clock = &clock;
            scope.spawn(move || {
                let mut rng = fastrand_like(thread);
                for _ in 0..20_000 {
                    let roll = rng() % 10;
                    if roll == 0 {
                        clock.advance(Duration::from_millis(3));
                    }
                    if let Ok(permit) = breaker.try_acquire() {
                        match roll {
                            0..=3 => permit.failure(),
                            4 => permit.ignore(),
                            5 => drop(permit),
                            _ => permit.success(),
                        }
                    }
                }
            });
        }
    });
    // Quiesced: whatever state the race left, the circuit must be able to recover.
    clock.advance(Duration::from_secs(1));
    for _ in 0..3 {
        if let Ok(permit) = breaker.try_acquire() {
            permit.success();
        }
    }
    assert_eq!(breaker.state(), State::Closed);
    assert!(
        breaker.stats().rejected_calls > 0,
        "the stress run opened the circuit"
    );
}

/// A tiny xorshift so the stress run is reproducible without another dependency.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
