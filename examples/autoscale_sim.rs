//! Replays every built-in trace against each policy and prints one line per run:
//! `autoscale workload=<w> contender=<policy> slo_violation_min=<x> replica_hours=<y> actions=<n> …`.
//! The line-up is `backstop::scale::contenders`: the four policies (`hpa`,
//! `threshold`, `queue`, `predictive`), the HPA and queue policies with the noise-aware
//! band (`*_noise_aware`, the same policy with its tolerance widened to 3σ of the
//! metric's measured noise), and a fleet fixed at the peak's size (`fixed_peak`).
//!
//! Run with `cargo run --release --example autoscale_sim`.

use backstop::scale::{ReplicaModel, Trace, contenders, simulate};

const DAYS: u32 = 4;
const PEAK: f64 = 400.0;
const SEED: u64 = 42;

fn main() {
    for trace in Trace::builtins(DAYS, PEAK, SEED) {
        // Every contender starts warm, sized for the trace's first minute.
        let model = ReplicaModel {
            initial_replicas: ReplicaModel::default().fleet_for(trace.rates[0]),
            ..ReplicaModel::default()
        };
        for mut contender in contenders(&model, &trace).expect("the default model is valid") {
            let report = simulate(&trace, &model, contender.name, contender.policy.as_mut())
                .expect("valid model");
            println!("{}", report.line());
        }
    }
}
