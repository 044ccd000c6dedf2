//! Permits, queues, the layer and containment of an `AdaptiveLimiter`: no leaked permit on
//! cancellation at any await, panicking closures contained, readiness, per-class queues
//! with timeouts and deadlines, drops backing the limit off, and the `tracing` event.

use backstop_core::{
    Clock, Error, Layer, LoadSignal, ManualClock, RejectKind, Rejected, Service, ServiceExt,
    TokioClock, deadline, service_fn,
};
use backstop_limit::{
    AdaptiveLayer, AdaptiveLimitConfig, AdaptiveLimiter, AdaptiveOutcome, AdaptivePermit,
    AimdConfig, LimitAlgorithm, PriorityClass, PriorityClassConfig,
};
use backstop_testkit::assert_fields;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn config(initial: u64) -> AdaptiveLimitConfig {
    AdaptiveLimitConfig {
        initial_limit: initial,
        min_limit: 1,
        ..Default::default()
    }
}

/// A limiter of `initial` permits on Tokio's clock with one class, `name`, whose callers
/// queue: at most `depth` of them, each for at most `timeout`.
fn queueing(
    initial: u64,
    name: &str,
    depth: usize,
    timeout: Duration,
) -> AdaptiveLimiter<TokioClock> {
    let classes = vec![PriorityClassConfig::new(name, 1.0).with_queue(depth, timeout)];
    AdaptiveLimiter::with_clock(
        AdaptiveLimitConfig {
            classes,
            ..config(initial)
        },
        TokioClock,
    )
    .unwrap()
}

fn assert_idle<C: Clock>(limiter: &AdaptiveLimiter<C>) {
    let stats = limiter.stats();
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert!(
        stats
            .classes
            .iter()
            .all(|c| c.in_flight == 0 && c.queued == 0),
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_layered_call_at_every_await_leaks_no_permit_and_counts_as_dropped() {
    let limiter = queueing(4, "only", 64, Duration::from_secs(1));
    let service = Arc::new(
        AdaptiveLayer::new(limiter.clone()).layer(
            service_fn(|_: u32| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, std::io::Error>(())
            })
            .lift(),
        ),
    );
    // 16 concurrent callers against 4 permits, so some are cancelled while queued, some
    // while admitted in each of the inner service's awaits, some before anything.
    for cancel_after_ms in 0..=45u64 {
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let service = service.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_millis(cancel_after_ms), service.call(i))
                        .await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().ok();
        }
        assert_idle(&limiter);
    }
    let stats = limiter.stats();
    assert!(
        stats.dropped > 0,
        "cancelled admitted calls count as dropped: {stats:?}"
    );
    assert!(stats.admitted > stats.dropped, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn a_permit_dropped_by_a_panicking_task_is_freed() {
    let limiter = AdaptiveLimiter::with_clock(config(1), TokioClock).unwrap();
    let held = limiter.clone();
    let task = tokio::spawn(async move {
        let _permit = held.acquire().await.unwrap();
        panic!("the caller panics while holding a permit");
    });
    assert!(task.await.is_err());
    assert_idle(&limiter);
    assert!(limiter.try_acquire().is_ok());
}

#[tokio::test]
async fn a_panicking_key_fails_that_call_and_a_panicking_classifier_keeps_the_result() {
    let limiter = AdaptiveLimiter::new(config(4)).unwrap();
    let model = || service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }).lift();
    let bad_key = AdaptiveLayer::new(limiter.clone())
        .key(|_: &u32| -> PriorityClass { panic!("key closure bug") })
        .layer(model());
    let error: Error<std::io::Error> = bad_key.call(1).await.unwrap_err();
    assert!(error.panic().is_some(), "{error:?}");

    let bad_classify = AdaptiveLayer::new(limiter.clone())
        .classify(
            |_: &Result<u32, Error<std::io::Error>>| -> AdaptiveOutcome {
                panic!("classifier bug")
            },
        )
        .layer(model());
    assert_eq!(bad_classify.call(7).await.unwrap(), 7);
    let stats = limiter.stats();
    assert_eq!(stats.panicked, 2);
    assert_eq!(
        stats.admitted, 1,
        "the call whose key panicked took no permit"
    );
    assert_idle(&limiter);
}

#[tokio::test]
async fn readiness_refuses_when_every_permit_is_taken_then_asks_the_inner_service() {
    struct NeverReady;
    impl Service<()> for NeverReady {
        type Response = ();
        type Error = Error<std::io::Error>;
        async fn call(&self, _: ()) -> Result<(), Self::Error> {
            Ok(())
        }
        fn readiness(&self) -> Result<(), Rejected> {
            Err(Rejected::new(RejectKind::CircuitOpen))
        }
    }
    let limiter = AdaptiveLimiter::new(config(1)).unwrap();
    let service = AdaptiveLayer::new(limiter.clone()).layer(NeverReady);
    assert_eq!(
        service.readiness().unwrap_err().kind,
        RejectKind::CircuitOpen
    );
    let _permit = limiter.try_acquire().unwrap();
    assert_eq!(
        service.readiness().unwrap_err().kind,
        RejectKind::ConcurrencyLimited
    );
    assert_eq!(
        limiter.readiness().unwrap_err().kind,
        RejectKind::ConcurrencyLimited
    );
}

#[tokio::test(start_paused = true)]
async fn a_queued_caller_gets_the_next_free_permit_or_its_timeout_or_its_deadline() {
    let limiter = queueing(1, "q", 1, Duration::from_millis(100));
    let first = limiter.acquire().await.unwrap();
    // Freed after 30 ms: the queued caller gets it.
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire().await.map(|p| p.success()) })
    };
    tokio::task::yield_now().await;
    assert_eq!(limiter.stats().queued, 1);
    assert_eq!(
        limiter.try_acquire().unwrap_err().kind,
        RejectKind::ConcurrencyLimited
    );
    assert_eq!(
        limiter.acquire().await.unwrap_err().kind,
        RejectKind::ConcurrencyLimited,
        "the queue (1) is full: refused at once"
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    first.success();
    waiter.await.unwrap().unwrap();

    // Nobody frees it: the timeout.
    let held = limiter.acquire().await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        limiter.acquire().await.unwrap_err().kind,
        RejectKind::Timeout
    );
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    // A shorter request deadline wins.
    let refused = deadline::scope(Duration::from_millis(20), limiter.acquire()).await;
    assert_eq!(refused.unwrap_err().kind, RejectKind::DeadlineExceeded);
    drop(held);
    let stats = limiter.stats();
    assert_eq!(stats.timed_out, 2);
    // Three admissions, one of which waited 30 ms: the mean over all is 10 ms, and the
    // 95th percentile falls among the queued caller's waits.
    let load = limiter.load();
    assert_eq!(load.mean_wait, Duration::from_millis(10));
    assert!(load.p95_wait >= Duration::from_millis(28), "{load:?}");
    assert_idle(&limiter);
}

/// Every permit `class` can get now; the loop ends with one refusal.
fn take_all<C: Clock>(
    limiter: &AdaptiveLimiter<C>,
    class: PriorityClass,
) -> Vec<AdaptivePermit<C>> {
    std::iter::from_fn(|| limiter.try_acquire_as(class).ok()).collect()
}

#[tokio::test]
async fn a_higher_class_borrows_a_lower_class_idle_share_but_not_the_reverse() {
    let limiter = AdaptiveLimiter::new(AdaptiveLimitConfig {
        initial_limit: 10,
        min_limit: 1,
        classes: vec![
            PriorityClassConfig::new("critical", 0.3),
            PriorityClassConfig::new("normal", 0.5),
            PriorityClassConfig::new("sheddable", 0.2),
        ],
        ..Default::default()
    })
    .unwrap();
    let [critical, normal, sheddable] =
        ["critical", "normal", "sheddable"].map(|n| limiter.class(n).unwrap());
    // Normal may use its 5 and the unreserved rest, never critical's idle 3.
    let normal_permits = take_all(&limiter, normal);
    assert_eq!(normal_permits.len(), 7);
    assert_eq!(
        limiter.try_acquire_as(sheddable).unwrap_err().kind,
        RejectKind::Shed
    );
    // Critical takes its 3, and nothing more is left for anyone.
    let critical_permits = take_all(&limiter, critical);
    assert_eq!(critical_permits.len(), 3);
    assert_eq!(
        limiter.try_acquire_as(critical).unwrap_err().kind,
        RejectKind::ConcurrencyLimited
    );
    drop(normal_permits);
    // Critical may now borrow normal's idle share.
    let borrowed = take_all(&limiter, critical);
    assert_eq!(borrowed.len(), 7);
    let stats = limiter.stats();
    assert_eq!(stats.classes[0].in_flight, 10);
    assert_eq!(stats.classes[2].shed, 1);
    assert_eq!(
        stats.classes[0].rejected, 3,
        "each exhausted loop ended with one refusal"
    );
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["classes"][0]["name"], "critical");
    assert_eq!(json["limit"], 10);
    let load = limiter.load();
    assert_fields!(load, in_flight: 10, capacity: Some(10));
}

/// A limiter on a manual clock, one window per 100 ms, one sample enough per window.
fn manual(algorithm: LimitAlgorithm, initial: u64) -> (AdaptiveLimiter<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let limiter = AdaptiveLimiter::with_clock(
        AdaptiveLimitConfig {
            algorithm,
            initial_limit: initial,
            min_limit: 1,
            min_window_samples: 1,
            window: Duration::from_millis(100),
            ..Default::default()
        },
        clock.clone(),
    )
    .unwrap();
    (limiter, clock)
}

/// Runs one window with `calls` calls in flight at once: `calls − 1` of 50 ms ending with
/// `outcome` (fast for the window: 50 ms of 100), and one ignored call that ends the window
/// at 100 ms.
fn window(
    limiter: &AdaptiveLimiter<ManualClock>,
    clock: &ManualClock,
    calls: usize,
    outcome: AdaptiveOutcome,
) {
    let latency = Duration::from_millis(50);
    let probe = limiter.try_acquire().unwrap();
    let permits: Vec<_> = (1..calls).map(|_| limiter.try_acquire().unwrap()).collect();
    clock.advance(latency);
    for permit in permits {
        permit.complete(outcome);
    }
    clock.advance(Duration::from_millis(100) - latency);
    probe.complete(AdaptiveOutcome::Ignored);
}

#[test]
fn dropped_calls_back_the_limit_off_and_ignored_ones_do_not_count() {
    let (limiter, clock) = manual(LimitAlgorithm::Aimd(AimdConfig::default()), 20);
    window(&limiter, &clock, 20, AdaptiveOutcome::Success);
    assert_eq!(limiter.limit(), 22, "a busy fast window grows AIMD by 2");
    window(&limiter, &clock, 20, AdaptiveOutcome::Dropped);
    assert_eq!(limiter.limit(), 20, "a window with drops backs off by 10 %");
    let windows = limiter.stats().windows;
    window(&limiter, &clock, 20, AdaptiveOutcome::Ignored);
    assert_eq!(
        limiter.stats().windows,
        windows,
        "ignored calls are not samples"
    );
    // A permit dropped without completing is a drop.
    let permits: Vec<_> = (0..20).map(|_| limiter.try_acquire().unwrap()).collect();
    clock.advance(Duration::from_millis(150));
    drop(permits);
    assert_eq!(limiter.limit(), 18);
    assert_eq!(limiter.stats().dropped, 39);
}

#[tokio::test]
async fn the_default_classifier_counts_a_refusal_from_below_as_dropped() {
    let (limiter, clock) = manual(LimitAlgorithm::Aimd(AimdConfig::default()), 10);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let tick = clock.clone();
    let service = AdaptiveLayer::new(limiter.clone()).layer(service_fn(move |_: ()| {
        counted.fetch_add(1, Ordering::Relaxed);
        tick.advance(Duration::from_millis(200));
        async {
            Err::<(), Error<std::io::Error>>(Error::Rejected(Rejected::new(
                RejectKind::RateLimited { quota: 0 },
            )))
        }
    }));
    service.call(()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(limiter.stats().dropped, 1);
    assert_eq!(
        limiter.limit(),
        9,
        "the provider's 429 backed the limit off"
    );
}

#[test]
fn a_tracing_event_marks_every_move_larger_than_the_step() {
    use std::sync::Mutex;
    use tracing::subscriber::with_default;

    struct Collect(Arc<Mutex<Vec<String>>>);
    impl tracing::Subscriber for Collect {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            self.0
                .lock()
                .unwrap()
                .push(event.metadata().target().to_string());
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    let events = Arc::new(Mutex::new(Vec::new()));
    with_default(Collect(events.clone()), || {
        let (limiter, clock) = manual(LimitAlgorithm::Aimd(AimdConfig::default()), 20);
        // +2 per window from 20: 22 (10 %, not more), 24 (20 % since 20: an event).
        window(&limiter, &clock, 20, AdaptiveOutcome::Success);
        assert!(events.lock().unwrap().is_empty());
        window(&limiter, &clock, 22, AdaptiveOutcome::Success);
        assert_eq!(limiter.limit(), 24);
    });
    assert_eq!(*events.lock().unwrap(), ["backstop_limit"]);
}

#[test]
fn a_bad_config_is_a_typed_error_naming_the_field() {
    let error = AdaptiveLimiter::new(AdaptiveLimitConfig {
        min_limit: 50,
        initial_limit: 10,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(error.field(), "adaptive.initial_limit");
}

mod admission_model {
    use super::*;
    use proptest::prelude::*;

    /// The admission rule, written plainly: class `i` is admitted when a permit is free and
    /// is not held for an idle share of a higher class.
    fn admits(limit: u64, shares: &[f64], used: &[u64], class: usize) -> Result<(), RejectKind> {
        let total: u64 = used.iter().sum();
        let reserved: u64 = (0..class)
            .map(|j| ((limit as f64 * shares[j]).floor() as u64).saturating_sub(used[j]))
            .sum();
        if total >= limit {
            Err(RejectKind::ConcurrencyLimited)
        } else if total + reserved >= limit {
            Err(RejectKind::Shed)
        } else {
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn admission_matches_the_reference_rule(
            limit in 1u64..40,
            shares in prop::collection::vec(0.0f64..0.33, 1..4),
            ops in prop::collection::vec((any::<bool>(), 0usize..4, any::<prop::sample::Index>()), 1..200),
        ) {
            let classes: Vec<_> = shares
                .iter()
                .enumerate()
                .map(|(i, s)| PriorityClassConfig::new(format!("c{i}"), *s))
                .collect();
            let limiter = AdaptiveLimiter::with_clock(
                AdaptiveLimitConfig { initial_limit: limit, min_limit: 1, classes, ..Default::default() },
                ManualClock::new(),
            )
            .unwrap();
            let mut used = vec![0u64; shares.len()];
            let mut held = Vec::new();
            for (acquire, class, pick) in ops {
                let class = class % shares.len();
                if acquire || held.is_empty() {
                    let handle = limiter.class(&format!("c{class}")).unwrap();
                    let got = limiter.try_acquire_as(handle).map(|p| held.push((class, p))).map_err(|r| r.kind);
                    let expected = admits(limit, &shares, &used, class);
                    prop_assert_eq!(got, expected);
                    if expected.is_ok() {
                        used[class] += 1;
                    }
                } else {
                    let (class, permit) = held.swap_remove(pick.index(held.len()));
                    permit.complete(AdaptiveOutcome::Ignored);
                    used[class] -= 1;
                }
                let stats = limiter.stats();
                prop_assert_eq!(stats.in_flight, used.iter().sum::<u64>());
                prop_assert!(stats.in_flight <= limit);
            }
        }
    }
}
