//! How well adaptive concurrency limits protect a backend, on simulated (paused) time.
//!
//! `cargo bench -p backstop --bench adaptive_quality` prints, per scenario and contender,
//! `<metric> workload=<scenario> contender=<c> value=<v>` lines:
//!
//! - `p99_ms`: 99th-percentile latency of answered calls (critical ones in `surge`);
//! - `goodput`: answered calls per second within 1.5× the unloaded latency (75 ms);
//! - `critical_success`: the fraction of critical calls answered (every call is critical
//!   outside `surge`; a fixed bulkhead's queued calls still waiting at the end count as
//!   unanswered).
//!
//! The backend (`crates/backstop-limit/tests/adaptive_sim`) serves 100 calls at once for
//! 50 ms each (±10 % jitter; ±30 % in `noisy`) and queues the rest: 2,000 calls/s.
//! Scenarios: `overload` (3× capacity for 20 s), `surge` (critical at 0.3× capacity,
//! sheddable 0.5× for 10 s then 5× for 10 s; the surge is measured; half the limit held
//! for critical), `knee_shift` (3× the initial capacity while it goes 100 → 50 → 200
//! slots, 10 s each), `noisy` (as `overload` with ±30 % jitter). Contenders:
//! `fixed_bulkhead` (200 = 2×C permits, unbounded queue), `aimd`, `vegas`, `gradient2`
//! (defaults, refusing at once).

#[path = "../crates/backstop-limit/tests/adaptive_sim/mod.rs"]
mod adaptive_sim;

use adaptive_sim::{Backend, ClassReport, Contender, Phase, run};
use backstop::core::TokioClock;
use backstop::limit::{
    AdaptiveLimitConfig, AdaptiveLimiter, AimdConfig, Bulkhead, BulkheadConfig, Gradient2Config,
    LimitAlgorithm, PriorityClass, PriorityClassConfig, VegasConfig,
};
use std::time::Duration;

const SERVICE: Duration = Duration::from_millis(50);
const CAPACITY_PER_SEC: f64 = 2_000.0;
const WINDOW: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
enum Scenario {
    Overload,
    Surge,
    KneeShift,
    Noisy,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Overload => "overload",
            Self::Surge => "surge",
            Self::KneeShift => "knee_shift",
            Self::Noisy => "noisy",
        }
    }

    fn noise(self) -> f64 {
        if matches!(self, Self::Noisy) {
            0.3
        } else {
            0.1
        }
    }

    /// The phases, given the critical and sheddable classes (one class outside `surge`).
    fn phases(self, critical: PriorityClass, sheddable: PriorityClass) -> Vec<Phase> {
        let steady = |rate: f64, resize| Phase {
            duration: Duration::from_secs(if matches!(self, Self::KneeShift) {
                10
            } else {
                20
            }),
            rates: vec![(critical, rate)],
            resize,
        };
        match self {
            Self::Overload | Self::Noisy => vec![steady(3.0 * CAPACITY_PER_SEC, None)],
            Self::KneeShift => vec![
                steady(3.0 * CAPACITY_PER_SEC, None),
                steady(3.0 * CAPACITY_PER_SEC, Some((100, 50))),
                steady(3.0 * CAPACITY_PER_SEC, Some((50, 200))),
            ],
            Self::Surge => [0.5, 5.0]
                .into_iter()
                .map(|sheddable_rate| Phase {
                    duration: Duration::from_secs(10),
                    rates: vec![
                        (critical, 0.3 * CAPACITY_PER_SEC),
                        (sheddable, sheddable_rate * CAPACITY_PER_SEC),
                    ],
                    resize: None,
                })
                .collect(),
        }
    }
}

fn contender(name: &str, scenario: Scenario) -> (Contender, PriorityClass, PriorityClass) {
    let algorithm = match name {
        "aimd" => LimitAlgorithm::Aimd(AimdConfig::default()),
        "vegas" => LimitAlgorithm::Vegas(VegasConfig::default()),
        "gradient2" => LimitAlgorithm::Gradient2(Gradient2Config::default()),
        _ => {
            let bulkhead = Bulkhead::new(BulkheadConfig {
                max_concurrent: 200,
                max_queued: BulkheadConfig::MAX_SLOTS,
                max_wait: None,
            })
            .expect("valid bulkhead");
            // The bulkhead has no classes; the reports still tell them apart.
            let limiter = classes_limiter(LimitAlgorithm::default(), scenario);
            let (critical, sheddable) = classes(&limiter, scenario);
            return (Contender::Fixed(bulkhead), critical, sheddable);
        }
    };
    let limiter = classes_limiter(algorithm, scenario);
    let (critical, sheddable) = classes(&limiter, scenario);
    (Contender::Adaptive(limiter), critical, sheddable)
}

fn classes_limiter(algorithm: LimitAlgorithm, scenario: Scenario) -> AdaptiveLimiter<TokioClock> {
    let classes = if matches!(scenario, Scenario::Surge) {
        vec![
            PriorityClassConfig::new("critical", 0.5),
            PriorityClassConfig::new("sheddable", 0.0),
        ]
    } else {
        Vec::new()
    };
    AdaptiveLimiter::with_clock(
        AdaptiveLimitConfig {
            algorithm,
            window: WINDOW,
            classes,
            ..Default::default()
        },
        TokioClock,
    )
    .expect("valid config")
}

fn classes(
    limiter: &AdaptiveLimiter<TokioClock>,
    scenario: Scenario,
) -> (PriorityClass, PriorityClass) {
    match scenario {
        Scenario::Surge => (
            limiter.class("critical").expect("configured"),
            limiter.class("sheddable").expect("configured"),
        ),
        _ => (limiter.default_class(), limiter.default_class()),
    }
}

fn main() {
    let scenarios = [
        Scenario::Overload,
        Scenario::Surge,
        Scenario::KneeShift,
        Scenario::Noisy,
    ];
    for scenario in scenarios {
        for name in ["fixed_bulkhead", "aimd", "vegas", "gradient2"] {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            let (contender, critical, sheddable) = contender(name, scenario);
            let phases = scenario.phases(critical, sheddable);
            let classes = if matches!(scenario, Scenario::Surge) {
                2
            } else {
                1
            };
            let report = rt.block_on(run(
                Backend::new(100, SERVICE, scenario.noise()),
                contender,
                classes,
                phases,
                WINDOW,
            ));
            // The surge's second phase is the one measured; other scenarios use every phase.
            let measured: Vec<&Vec<ClassReport>> = match scenario {
                Scenario::Surge => vec![&report.phases[1]],
                _ => report.phases.iter().collect(),
            };
            let mut critical_calls = ClassReport::default();
            let mut all_calls = ClassReport::default();
            let mut seconds = 0.0;
            for classes in &measured {
                seconds += if matches!(scenario, Scenario::Overload | Scenario::Noisy) {
                    20.0
                } else {
                    10.0
                };
                for (index, class) in classes.iter().enumerate() {
                    if index == 0 {
                        critical_calls.latencies.extend(&class.latencies);
                        critical_calls.arrived += class.arrived;
                    }
                    all_calls.latencies.extend(&class.latencies);
                    all_calls.arrived += class.arrived;
                }
            }
            let workload = scenario.name();
            let p99 = critical_calls.quantile(0.99).as_secs_f64() * 1e3;
            let goodput = all_calls.goodput(SERVICE.mul_f64(1.5), Duration::from_secs_f64(seconds));
            println!("p99_ms workload={workload} contender={name} value={p99:.1}");
            println!("goodput workload={workload} contender={name} value={goodput:.0}");
            println!(
                "critical_success workload={workload} contender={name} value={:.4}",
                critical_calls.success()
            );
        }
    }
}
