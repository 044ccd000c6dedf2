//! Load tests of any Backstop [`Service`](backstop_core::Service): any stack of layers, or
//! any async function through [`service_fn`](backstop_core::service_fn).
//!
//! - **Open loop by default.** Requests go out on a schedule ([`Arrivals::Constant`] or
//!   [`Arrivals::Poisson`]) whatever the service does, and latency counts from the
//!   *scheduled* send time, so a request that waited behind a stalled service shows that
//!   wait (no coordinated omission, as wrk2 measures). Closed-loop virtual users
//!   ([`LoadPlan::closed_loop`]) are there for comparison and are labelled as such.
//! - **Patterns in stages**: constant, ramp, spike, soak and trace replay ([`LoadStage`],
//!   [`TraceReplay`]), one after the other in a [`LoadPlan`]; a stress search
//!   ([`StressTest`]) steps the rate up until an SLO breaks and reports the last rate that
//!   held.
//! - **Measurement** per stage and per outcome class (ok, rejected with its
//!   [`RejectKind`](backstop_core::RejectKind), error, timeout): latency percentiles,
//!   throughput, error rate, a timeline per sample interval, and any
//!   [`LoadSignal`](backstop_core::LoadSignal) or `stats()` snapshot read during the run.
//! - **SLOs** per stage ([`Slo`]): percentiles, error rate (or failure rate, where a
//!   rate limit's 429 is expected rather than a failure) and throughput, each with
//!   pass/fail and the margin.
//! - **Regression detection** ([`compare`]): a run saved as JSON is the baseline; a new run
//!   is compared per stage with Mann-Whitney U on the latency samples, a bootstrap interval
//!   of the p99 ratio and a two-proportion test on error counts.
//! - **Reports** as text (`Display`), JSON and CSV ([`LoadReport`]), and a live progress
//!   line ([`LoadTest::on_progress`]); with feature `metrics`, requests, outcomes and a
//!   latency histogram published live through the `metrics` facade ([`LoadTest::metrics`],
//!   for Prometheus).
//!
//! ```
//! use backstop_core::{Error, service_fn};
//! use backstop_load::{Arrivals, LoadPlan, LoadStage, LoadTest, Slo};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true)
//! #     .build().unwrap().block_on(async {
//! let service = service_fn(|n: u64| async move {
//!     tokio::time::sleep(Duration::from_millis(2)).await;
//!     if n % 100 == 99 { Err(Error::Inner("flaky")) } else { Ok(n) }
//! });
//! let plan = LoadPlan::open_loop(Arrivals::Poisson)
//!     .stage(LoadStage::ramp("warm-up", 10.0, 200.0, Duration::from_secs(2)))
//!     .stage(LoadStage::constant("steady", 200.0, Duration::from_secs(3)).slo(
//!         Slo::new().latency(0.99, Duration::from_millis(10)).error_rate_below(0.02),
//!     ));
//! let report = LoadTest::new(plan).unwrap().run(&service, |i| i).await.unwrap();
//! assert!(report.passed(), "{report}");
//! let steady = report.stage("steady").unwrap();
//! assert!((500..700).contains(&steady.sent));
//! println!("{report}\n{}", report.to_csv());
//! # });
//! ```
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
#[cfg(feature = "http")]
mod http_target;
#[cfg(feature = "metrics")]
mod live;
mod plan;
mod recorder;
mod regression;
mod report;
mod runner;
mod slo;
mod stats;
mod stress;
mod trace;

pub use error::LoadTestError;
#[cfg(feature = "http")]
pub use http_target::{HttpTarget, HttpTargetError};
pub use plan::{
    Arrivals, LoadMode, LoadPlan, LoadStage, MAX_IN_FLIGHT, MAX_RATE, MAX_SAMPLES, MAX_STAGES,
    MAX_TIMELINE_POINTS, MAX_USERS, RatePattern,
};
pub use recorder::OutcomeClass;
pub use regression::{
    Change, ErrorShift, LatencyShift, RegressionConfig, RegressionReport, StageComparison,
    TailShift, compare,
};
pub use report::{
    LatencyFigures, LoadReport, OutcomeReport, SignalReading, StageReport, StatsReading,
    TimelinePoint,
};
pub use runner::{LoadProgress, LoadTest};
pub use slo::{Slo, SloCheck, SloObjective};
pub use stress::{StressPlan, StressReport, StressTest};
pub use trace::{MAX_TRACE_POINTS, TraceParseError, TraceReplay};
