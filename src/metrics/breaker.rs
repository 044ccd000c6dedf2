use super::{Labels, PublishMetrics, values};
use backstop_breaker::{BreakerStats, State};

const STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
    State::MetricsOnly,
];

/// The state is one-hot (`state="open"` is 1, the others 0), the usual Prometheus
/// encoding of an enum, so `max by (name)` alerts work and transitions are visible.
impl PublishMetrics for BreakerStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        let states = STATES.map(|state| (state.as_str(), (state == self.state).into()));
        labels.publish_by("backstop_breaker_state", "state", &states);
        // The stats say percent; Prometheus convention is a ratio from 0 to 1.
        let ratio = |percent: Option<f64>| percent.map(|rate| rate / 100.0);
        labels.publish(values! {
            "backstop_breaker_failure_ratio" => ratio(self.failure_rate),
            "backstop_breaker_slow_call_ratio" => ratio(self.slow_call_rate),
        });
        labels.publish_fields("backstop_breaker", self);
    }
}

/// A registry's snapshot: each breaker under its own name, prefixed by the registry's.
impl PublishMetrics for Vec<BreakerStats> {
    fn publish(&self, name: &str) {
        for stats in self {
            let instance = if name.is_empty() {
                stats.name.clone()
            } else {
                format!("{name}/{}", stats.name)
            };
            stats.publish(&instance);
        }
    }
}
