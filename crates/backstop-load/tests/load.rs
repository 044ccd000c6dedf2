//! The acceptance tests, on paused Tokio time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backstop_core::{Error, RejectKind, Rejected, Service, service_fn};
use backstop_load::{
    Arrivals, LoadPlan, LoadStage, LoadTest, RegressionConfig, Slo, StressPlan, StressTest,
    TraceReplay, compare,
};
use tokio::sync::{Mutex, Semaphore};

const MS: Duration = Duration::from_millis(1);

/// One call at a time; the first call stalls for a second, every other takes 1 ms.
fn stalls_once() -> impl Service<u64, Response = (), Error = Error<()>> {
    let lock = Arc::new(Mutex::new(()));
    let stalled = Arc::new(AtomicBool::new(false));
    service_fn(move |_: u64| {
        let lock = lock.clone();
        let first = !stalled.swap(true, Ordering::SeqCst);
        async move {
            let _held = lock.lock().await;
            tokio::time::sleep(if first { Duration::from_secs(1) } else { MS }).await;
            Ok(())
        }
    })
}

fn slow_count(report: &backstop_load::LoadReport) -> usize {
    report.stages[0]
        .samples_us
        .iter()
        .filter(|us| **us >= 100_000)
        .count()
}

#[tokio::test(start_paused = true)]
async fn open_loop_latency_includes_the_wait_behind_a_stall_closed_loop_hides_it() {
    let stage = || LoadStage::constant("run", 100.0, Duration::from_secs(3));
    let open = LoadTest::new(LoadPlan::open_loop(Arrivals::Constant).stage(stage()))
        .unwrap()
        .run(&stalls_once(), |i| i)
        .await
        .unwrap();
    let closed = LoadTest::new(LoadPlan::closed_loop(1).stage(stage()))
        .unwrap()
        .run(&stalls_once(), |i| i)
        .await
        .unwrap();
    // Open loop: the ~100 requests scheduled during the stall queued behind it.
    assert!(slow_count(&open) >= 90, "{open}");
    assert!(open.stages[0].latency.p50_us < 100_000, "{open}");
    assert_eq!(open.stages[0].sent, 300);
    // Closed loop: only the stalled request itself looks slow.
    assert_eq!(slow_count(&closed), 1, "{closed}");
    assert!(closed.mode.starts_with("closed-loop"));
    assert!(open.mode.starts_with("open-loop"));
}

fn noop() -> impl Service<u64, Response = (), Error = Error<()>> {
    service_fn(|_: u64| async { Ok::<_, Error<()>>(()) })
}

#[tokio::test(start_paused = true)]
async fn arrival_rates_follow_the_target() {
    let constant = LoadTest::new(
        LoadPlan::open_loop(Arrivals::Constant).stage(LoadStage::constant(
            "c",
            200.0,
            Duration::from_secs(5),
        )),
    )
    .unwrap()
    .run(&noop(), |i| i)
    .await
    .unwrap();
    assert_eq!(constant.stages[0].sent, 1000);
    for point in &constant.timeline[..5] {
        assert_eq!(point.sent, 200, "{:?}", constant.timeline);
    }
    let poisson = LoadTest::new(
        LoadPlan::open_loop(Arrivals::Poisson)
            .seed(7)
            .stage(LoadStage::constant("p", 200.0, Duration::from_secs(10))),
    )
    .unwrap()
    .run(&noop(), |i| i)
    .await
    .unwrap();
    // Mean 2000, standard deviation about 45: within 4 sigma.
    let sent = poisson.stages[0].sent as i64;
    assert!((sent - 2000).abs() < 180, "{sent}");
}

#[tokio::test(start_paused = true)]
async fn patterns_produce_their_scheduled_rates() {
    let csv = "timestamp,value\n0,50\n10,150\n20,0\n30,100\n";
    // 10 trace seconds per run second: four 1 s rows of 50, 150, 0, 100 per second.
    let trace = TraceReplay::from_csv(csv, 10.0, 1.0).unwrap();
    let plan = LoadPlan::open_loop(Arrivals::Constant)
        .stage(LoadStage::ramp("ramp", 0.0, 200.0, Duration::from_secs(4)))
        .stage(LoadStage::spike(
            "spike",
            50.0,
            400.0,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(3),
        ))
        .stage(LoadStage::soak(80.0, Duration::from_secs(2)))
        .stage(LoadStage::trace("trace", trace));
    let report = LoadTest::new(plan)
        .unwrap()
        .run(&noop(), |i| i)
        .await
        .unwrap();
    let per_second: Vec<i64> = report.timeline.iter().map(|p| p.sent as i64).collect();
    // Ramp 0 -> 200 over 4 s: 25, 75, 125, 175 per second.
    let expected = [
        25, 75, 125, 175, // ramp
        50, 400, 50, // spike
        80, 80, // soak
        50, 150, 0, 100, // trace
    ];
    for (second, want) in expected.iter().enumerate() {
        assert!(
            (per_second[second] - want).abs() <= 2,
            "second {second}: {per_second:?}"
        );
    }
    assert!(report.stage("spike").unwrap().sent.abs_diff(500) <= 1);
    assert!(report.stage("trace").unwrap().sent.abs_diff(300) <= 1);
}

/// Capacity 1000/s: ten permits, 10 ms per call. Above it the queue grows without bound.
fn knee_service() -> impl Service<u64, Response = (), Error = Error<()>> {
    let permits = Arc::new(Semaphore::new(10));
    service_fn(move |_: u64| {
        let permits = permits.clone();
        async move {
            let _permit = permits.acquire().await.expect("never closed");
            tokio::time::sleep(10 * MS).await;
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn stress_finds_a_known_capacity_within_ten_percent() {
    let plan = StressPlan::new(
        200.0,
        100.0,
        3000.0,
        Duration::from_secs(2),
        Slo::new().latency(0.99, 50 * MS),
    );
    let found = StressTest::new(plan)
        .unwrap()
        .run(&knee_service(), |i| i)
        .await
        .unwrap();
    let capacity = found.capacity.expect("the first steps hold");
    assert!((900.0..=1100.0).contains(&capacity), "{found}");
    assert_eq!(found.broke_at, Some(capacity + 100.0));
    assert!(!found.steps.stages.last().unwrap().passed);
}

/// Latency drawn from a seeded log-normal-ish distribution, scaled by `factor`.
fn random_latency(seed: u64, factor: f64) -> impl Service<u64, Response = (), Error = Error<()>> {
    let rng = Arc::new(std::sync::Mutex::new(fastrand::Rng::with_seed(seed)));
    service_fn(move |_: u64| {
        let draw = {
            let mut rng = rng.lock().unwrap();
            // Sum of uniforms, exponentiated: a skewed distribution with a tail.
            let normal = (0..6).map(|_| rng.f64()).sum::<f64>() - 3.0;
            (20.0 * (0.5 * normal).exp() * factor * 1000.0) as u64
        };
        async move {
            tokio::time::sleep(Duration::from_micros(draw)).await;
            Ok(())
        }
    })
}

async fn run_once(seed: u64, factor: f64) -> backstop_load::LoadReport {
    let plan = LoadPlan::open_loop(Arrivals::Constant)
        .seed(seed)
        .stage(LoadStage::constant("steady", 500.0, Duration::from_secs(2)));
    LoadTest::new(plan)
        .unwrap()
        .run(&random_latency(seed, factor), |i| i)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn regression_detection_has_few_false_alarms_and_catches_a_20_percent_regression() {
    let config = RegressionConfig {
        resamples: 200,
        ..RegressionConfig::default()
    };
    let repetitions = 40;
    let (mut quiet, mut caught) = (0, 0);
    for rep in 0..repetitions {
        let baseline = run_once(1000 + rep, 1.0).await;
        // The baseline goes through JSON, as a saved one would.
        let baseline = backstop_load::LoadReport::from_json(&baseline.to_json()).unwrap();
        let same = run_once(5000 + rep, 1.0).await;
        let slower = run_once(9000 + rep, 1.2).await;
        if !compare(&baseline, &same, &config).significant() {
            quiet += 1;
        }
        let verdict = compare(&baseline, &slower, &config);
        // Every 20 % slower run reads as worse, never better, on every test that fires.
        assert!(!verdict.stages[0].p99.ratio_high.lt(&1.0), "{verdict}");
        if verdict.regressed() {
            caught += 1;
        }
    }
    assert!(
        quiet * 100 >= repetitions * 95,
        "{quiet}/{repetitions} quiet"
    );
    assert!(
        caught * 100 >= repetitions * 95,
        "{caught}/{repetitions} caught"
    );
}

#[tokio::test(start_paused = true)]
async fn outcome_classes_timeouts_and_slo_margins_are_reported() {
    let service = service_fn(|n: u64| async move {
        match n % 4 {
            0 => Err(Error::Rejected(Rejected::new(RejectKind::RateLimited {
                quota: 0,
            }))),
            1 => Err(Error::Inner("boom")),
            2 => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    });
    let plan = LoadPlan::open_loop(Arrivals::Constant)
        .timeout(100 * MS)
        .stage(
            LoadStage::constant("mixed", 100.0, Duration::from_secs(2))
                .slo(Slo::new().error_rate_below(0.5).throughput_above(20.0)),
        );
    let report = LoadTest::new(plan)
        .unwrap()
        .run(&service, |i| i)
        .await
        .unwrap();
    let stage = &report.stages[0];
    assert_eq!(
        (stage.ok, stage.rejected, stage.errors, stage.timeouts),
        (50, 50, 50, 50)
    );
    let classes: Vec<&str> = stage.outcomes.iter().map(|o| o.class.as_str()).collect();
    assert_eq!(classes, ["error", "ok", "rejected:rate_limited", "timeout"]);
    let timeout = stage
        .outcomes
        .iter()
        .find(|o| o.class == "timeout")
        .unwrap();
    assert!((100_000..=101_000).contains(&timeout.latency.max_us));
    // Error rate 0.75 breaks its 0.5 ceiling by half; throughput 25/s beats 20 by a quarter.
    assert!(!stage.slo[0].passed && (stage.slo[0].margin + 0.5).abs() < 1e-9);
    assert!(stage.slo[1].passed && (stage.slo[1].margin - 0.25).abs() < 1e-9);
    assert!(!report.passed());
    let csv = report.to_csv();
    assert_eq!(csv.lines().count(), 1 + 5);
    assert!(csv.contains("mixed,rejected:rate_limited,50,"));
    assert!(report.to_string().contains("BROKEN"));
}

#[tokio::test(start_paused = true)]
async fn load_signals_are_sampled_and_a_hung_service_is_bounded_by_the_drain() {
    struct Fixed;
    impl backstop_core::LoadSignal for Fixed {
        fn load(&self) -> backstop_core::LoadSnapshot {
            backstop_core::LoadSnapshot {
                queued: 3,
                ..Default::default()
            }
        }
    }
    let hung = service_fn(|_: u64| futures::future::pending::<Result<(), Error<()>>>());
    let mut plan = LoadPlan::open_loop(Arrivals::Constant).stage(LoadStage::constant(
        "hang",
        10.0,
        Duration::from_secs(2),
    ));
    plan.drain_timeout = Duration::from_secs(1);
    plan.max_in_flight = 5;
    let report = LoadTest::new(plan)
        .unwrap()
        .signal("queue", Fixed)
        .run(&hung, |i| i)
        .await
        .unwrap();
    let stage = &report.stages[0];
    assert_eq!((stage.sent, stage.dropped, stage.unfinished), (5, 15, 5));
    assert_eq!(stage.error_rate, 1.0);
    assert!(report.signals.len() >= 2);
    assert!(
        report
            .signals
            .iter()
            .all(|s| s.queued == 3 && s.name == "queue")
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_request_builder_is_a_typed_error() {
    let plan = LoadPlan::open_loop(Arrivals::Constant).stage(LoadStage::constant(
        "x",
        10.0,
        Duration::from_secs(1),
    ));
    let result = LoadTest::new(plan)
        .unwrap()
        .run(&noop(), |i| if i == 3 { panic!("bad request") } else { i })
        .await;
    assert!(matches!(
        result,
        Err(backstop_load::LoadTestError::RequestPanicked(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn stats_snapshots_are_sampled_during_the_run() {
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = calls.clone();
    let service = service_fn(move |_: u64| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Error<()>>(()) }
    });
    #[derive(serde::Serialize)]
    struct Stats {
        calls: u64,
    }
    let seen = calls.clone();
    let plan = LoadPlan::open_loop(Arrivals::Constant)
        .sample_interval(Duration::from_millis(500))
        .stage(LoadStage::constant("s", 100.0, Duration::from_secs(3)));
    let report = LoadTest::new(plan)
        .unwrap()
        .stats("backend", move || Stats {
            calls: seen.load(Ordering::SeqCst),
        })
        .stats("broken", || -> u64 { panic!("stats panicked") })
        .run(&service, |i| i)
        .await
        .unwrap();
    let readings: Vec<u64> = report
        .stats
        .iter()
        .map(|r| {
            assert_eq!(r.name, "backend");
            r.value["calls"].as_u64().unwrap()
        })
        .collect();
    // One reading per half second until the last send (2.995 s); each one the calls made
    // by then (50 per interval).
    assert_eq!(readings.len(), 5, "{readings:?}");
    for (i, calls) in readings.iter().enumerate() {
        assert_eq!(*calls, 50 * (i as u64 + 1), "{readings:?}");
    }
    let json = report.to_json();
    assert_eq!(
        backstop_load::LoadReport::from_json(&json)
            .unwrap()
            .stats
            .len(),
        readings.len()
    );
}
