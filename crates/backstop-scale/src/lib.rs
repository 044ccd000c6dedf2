//! Autoscaling decisions for Backstop: HPA-exact target tracking, threshold steps, KEDA-style
//! queue scaling, predictive scaling, and a simulator that shows which wins on a trace.
//!
//! Agent workloads are bursty and daily-periodic. Reactive scaling lags the burst by the
//! replicas' warm-up and over-provisions the night. This crate is pure, synchronous decision
//! logic — no Kubernetes, no cloud SDK: a [`Policy`] turns an [`Observation`] (time, current and
//! ready replicas, metric samples) into a [`Decision`] (desired replicas, the rule that decided,
//! each metric's proposal), which is `Serialize` so it can be logged and explained. Time is an
//! input, so every decision is reproducible in tests and in the [`simulate`] replay.
//!
//! # Policies
//!
//! - [`TargetTracking`] follows the Kubernetes HPA exactly: `ceil(current × value / target)`,
//!   tolerance 0.1 (one per direction if set; current or 1.28 rule), the largest proposal across
//!   metrics, conservative handling of missing metrics (at max(100 %, target) of the request
//!   under a utilization target) and not-ready replicas, explicit metric types ([`MetricType`])
//!   and pod requests for utilization ([`ReplicaReading::with_request`]), per-metric timestamps
//!   with a staleness rule ([`HpaConfig::max_metric_age`]), stabilization windows (0 s up, 300 s down) and rate
//!   policies (+100 % or +4 per 15 s up, −100 % per 15 s down; select max/min/disabled).
//!   Opt-in beyond the HPA: [`HpaConfig::noise_tolerance`] widens each metric's tolerance to
//!   k × its measured short-term noise (from successive differences, so a trend does not
//!   count), which stops the fleet chasing white noise on a flat load (on the simulator's
//!   `noisy` trace: 758 actions and 411 flaps become 66 and 21, at the same replica-hours).
//! - [`ThresholdPolicy`]: above 80 % add a step, below 30 % remove one, 300 s cooldown; the step
//!   can also be a percent of the current fleet, so a large fleet is not grown one replica per
//!   cooldown, and a demand metric can size it past saturation.
//! - [`QueuePolicy`]: KEDA-style backlog per replica, activation threshold, scale to and from
//!   zero, several triggers per object (the largest proposal wins, any trigger activates),
//!   fallback (fired when failures exceed the threshold; `static`, `currentReplicas`,
//!   `currentReplicasIfHigher`, `currentReplicasIfLower`), `idleReplicaCount`,
//!   `initialCooldownPeriod` — with KEDA's reported bugs (#1850, #7239, #7770) fixed and tested.
//!   It takes the same opt-in [`QueueConfig::noise_tolerance`] band.
//! - [`PredictivePolicy`]: seasonal-naive, Holt-Winters or linear-trend forecasts, scaling
//!   ahead by the warm-up lead time, acting only while recent forecasts were accurate, and
//!   never below the reactive proposal.
//! - [`Scheduled`] wraps any policy with cron-like windows that set a minimum (KEDA's cron
//!   scaler, combinable with every other policy).
//! - [`BurstHold`] wraps any policy with a burst-aware scale-down hold: it learns how soon
//!   load comes back after a scale-down and keeps replicas through lulls shorter than that
//!   (when restarting would cost more than holding), falling back to the HPA's 300 s otherwise.
//! - [`BurstEnvelope`] wraps any policy with headroom for the bursts the recent past makes
//!   likely (a high quantile of how far the demand rose within one replica start-up over the
//!   last hours), released only as the last start-up's peak passes, and pays for it by trimming
//!   a reactive scale-up to what the demand and the backlog will need once the new replicas
//!   serve. Around [`PredictivePolicy`] it is what the forecast degrades to when its error is
//!   high.
//!
//! # Simulator
//!
//! [`simulate`] replays a [`Trace`] (diurnal, diurnal with a spike, spike, ramp, step, noisy,
//! a CSV, or a real `timestamp,value` series with [`Trace::from_series_csv`]) against a [`ReplicaModel`] and reports SLO-violation minutes, replica-hours,
//! actions, flaps and peak backlog. `contenders` (feature `sim`, on by default) is the standard line-up that
//! `examples/autoscale_sim.rs` prints. On the daily-periodic traces (4 days, seed 42) the
//! predictive policy has 3.75 and 3.9 times fewer SLO-violation minutes than reactive HPA at
//! 1.01 and 1.00 times its replica-hours, and every dynamic policy runs on 43–54 % fewer
//! replica-hours than the fleet fixed at the peak (a test holds both). Where the load has
//! no daily shape the savings are smaller by construction: on `noisy` (white noise on a flat
//! mean) even an oracle that always runs exactly the replicas the current rate needs saves
//! only 25–30 % against the peak fleet (also a test), and the policies save 7–10 %; on
//! `step`, the threshold policy (the seeds' 30–80 % band) scales down only below 30 %
//! utilization, so after the step down it may hold 80/30 ≈ 2.7 times the replicas it needs,
//! and saves 19 % where target tracking saves 49 %.
//!
//! On the real series in `../shared/traces/load/` (`autoscale_sim --trace PATH`, peak scaled to
//! 400 requests per second, 180 s start-up), SLO-violation minutes and replica-hours against HPA:
//!
//! | Series | `predictive_envelope` | `hpa_envelope` | `predictive` | `predictive_burst_hold` |
//! |---|---|---|---|---|
//! | NYC taxi (30 min) | 0.01× at 1.06× | 0.04× at 1.21× | 0.26× at 1.02× | 0.26× at 1.02× |
//! | Twitter GOOG (5 min) | 0.04× at 0.91× | 0.03× at 0.93× | 0.99× at 0.99× | 0.23× at 1.00× |
//! | Twitter AAPL (5 min) | 0.46× at 0.99× | 0.46× at 0.99× | 1.00× at 1.00× | 1.00× at 1.00× |
//!
//! `predictive_envelope` — the predictive policy inside a [`BurstEnvelope`] — is the one
//! policy within 0.5× HPA's violation minutes at 1.1× its replica-hours on all three. On AAPL
//! the load sits at a tenth of one replica's capacity and jumps, unannounced, to two or more
//! replicas' worth about 120 times in 55 days; every such jump costs a start-up of violation
//! unless the capacity is already there. Two choices make the envelope pay for itself there
//! and on NYC taxi at once. Its headroom is a share of the demand
//! ([`HeadroomScale::Proportional`], learnt over a day): a burst of request traffic grows with
//! the traffic, so a quiet night holds little and a busy afternoon much; in demand units (the
//! envelope before, 6 h of rises) AAPL got 0.69× at 0.98×, and the best of a sweep of
//! quantiles and lookbacks within 1.1× was 0.68×. And it holds no headroom while the
//! forecast inside it is trusted ([`Policy::forecast_trusted`]): on the smooth, periodic NYC
//! taxi load the forecast already covers what comes, and headroom held besides cost 1.21× the
//! replica-hours. `autoscale_sim --trace PATH --envelope-sweep` replays `hpa_envelope` over
//! quantiles 0.9–1 and lookbacks 1–72 h. The threshold policy sizes a scale-up from the queue
//! metric once utilization passes its threshold ([`ThresholdConfig::demand_metric`];
//! utilization alone stops at 100 % however large the burst), which took it on AAPL from 2.60×
//! HPA's violation minutes at 0.66× its replica-hours to 0.66× at 1.62× (NYC taxi 0.33× at
//! 1.25×, GOOG 0.24× at 0.97×): no Backstop policy has more violation minutes than HPA on any
//! of the three series.
//!
//! # Deciding in two steps
//!
//! [`Policy::recommend`] computes a decision without changing anything (a dry run);
//! [`Policy::commit`] records it once applied and [`Policy::apply_failed`] records a failed
//! apply, so the history the rate limits read holds only changes that happened (the Kubernetes
//! controller records scale events only after a successful update). [`Policy::decide`] is both
//! steps; the [`Autoscaler`] driver uses the two-step form. [`TargetTracking::state`] and
//! [`QueuePolicy::state`] return a `Serialize` [`ScaleState`]: the stabilization window, the
//! committed scale events, and the conditions `AbleToScale`, `ScalingActive`, `ScalingLimited`.
//!
//! # Where Backstop differs from Kubernetes and KEDA, on purpose
//!
//! | Behaviour | Kubernetes / KEDA | Backstop |
//! |---|---|---|
//! | Tolerance rule | current: `1 − down ≤ r ≤ 1 + up`; 1.28: `abs(1 − r) ≤ t` | current by default ([`ToleranceRule`] selects 1.28) |
//! | Scaling from zero (queue) | KEDA activates to 1, then the HPA scales | straight to the count the backlog needs ([`QueueConfig::activate_to_min`] for KEDA's) |
//! | Going to zero (queue) | KEDA drops N → 0 after the cooldown (#7770) | follows the scale-down rate down to 1 (or `min_replicas`) first, then goes idle |
//! | Metric outage without fallback | KEDA #1850: could scale to zero | holds the count |
//! | Fallback from zero | KEDA #7239: not applied | applied at once |
//! | Fallback from a running fleet | `static` jumps to the count | a recommendation: stabilized and rate-limited, whatever the behaviour |
//! | `initialCooldownPeriod` | default 0 | `None` waits a full cooldown; set [`QueueConfig::initial_cooldown`] for KEDA's |
//! | Not-ready pods (`Reading::Average`) | per-pod CPU initialization rules | `current − ready` replicas count as not ready |
//! | Missing pods in an `Object`/`External` metric | not applicable | a total reading has none |
//! | Cooldown ([`Behavior::cooldown`]) | none in the HPA | optional, 0 by default |
//! | Noise-aware band | none | opt-in [`HpaConfig::noise_tolerance`], 0 by default |
//! | Rate `Percent` scale-up | `ceil` | `ceil` (the same); scale-down truncates, as the HPA |
//!
//! # Design
//!
//! The HPA's algorithm is what operators already reason about, so it is reproduced rule for
//! rule (the replica calculator, `stabilizeRecommendationWithBehaviors`,
//! `calculateScaleUpLimitWithScalingRules`) rather than reinvented, and its documented examples
//! are tests. Unlike the HPA, KEDA and AWS, the logic is a library: the [`Autoscaler`] driver
//! reads [`MetricSource`]s (including any `backstop_core::LoadSignal`) and applies decisions to
//! a [`ScaleTarget`] you implement, and the same policies run inside the simulator.
//!
//! ```
//! use std::time::Duration;
//! use backstop_scale::{HpaConfig, MetricSample, Observation, Policy, Reading, Target, TargetTracking};
//!
//! let mut hpa = TargetTracking::new(HpaConfig::default().with_bounds(1, 10)).unwrap();
//! let rps = |v: f64| MetricSample::new("rps", Target::AverageValue(100.0), Reading::Average(v));
//! // 200 rps per replica against a 100 target doubles 3 replicas to 6.
//! let d = hpa.decide(&Observation::new(Duration::ZERO, 3, 3).metric(rps(200.0)));
//! assert_eq!(d.desired, 6);
//! println!("{}", serde_json::to_string(&d).unwrap());
//! ```

#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: every item is labelled with the features it
// needs (rustdoc's `doc_cfg`, which now includes what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod autoscaler;
mod behavior;
mod burst;
mod config;
#[cfg(feature = "sim")]
mod contenders;
mod decision;
mod envelope;
mod error;
pub mod forecast;
mod hpa;
mod noise;
mod observation;
mod predictive;
mod queue;
mod recent;
mod schedule;
mod series;
mod sim;
mod state;
mod threshold;
mod trace;

pub use autoscaler::{
    Autoscaler, AutoscalerStats, LoadSignalMetric, MetricSource, Replicas, ScaleTarget,
};
pub use burst::BurstHold;
pub use config::{
    Behavior, BurstEnvelopeConfig, BurstHoldConfig, FallbackBehavior, FallbackConfig,
    ForecastModel, HeadroomScale, HpaConfig, MAX_ENVELOPE_SAMPLES, MAX_ERROR_WINDOW,
    MAX_GAP_SAMPLES, MAX_LEAD_SAMPLES, MAX_LEAD_TIME, MAX_QUEUE_TRIGGERS, MAX_SCHEDULE_WINDOWS,
    PredictiveConfig, QueueConfig, QueueTrigger, RateKind, RatePolicy, ScalingRules,
    ScheduleConfig, ScheduleWindow, Select, ThresholdConfig, ToleranceRule,
};
#[cfg(feature = "sim")]
pub use contenders::{Contender, contenders};
pub use decision::{Decision, MetricProposal, Policy, Reason};
pub use envelope::BurstEnvelope;
pub use error::{ScaleError, TraceError};
pub use hpa::{PolicyStats, TargetTracking};
pub use observation::{MetricSample, MetricType, Observation, Reading, ReplicaReading, Target};
pub use predictive::{PredictivePolicy, PredictiveStats};
pub use queue::QueuePolicy;
pub use schedule::Scheduled;
pub use series::MAX_SERIES_STEPS;
pub use sim::{FixedPolicy, MAX_SIM_REPLICAS, ReplicaModel, SimReport, metrics, simulate};
pub use state::{ScaleConditions, ScaleEvent, ScaleState, StampedReplicas};
pub use threshold::ThresholdPolicy;
pub use trace::Trace;
