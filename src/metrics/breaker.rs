use super::{PublishMetrics, counter, gauge};
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
        for state in STATES {
            gauge(
                "backstop_breaker_state",
                &[
                    ("name", name.to_owned()),
                    ("state", state.as_str().to_owned()),
                ],
                if state == self.state { 1.0 } else { 0.0 },
            );
        }
        let labels = [("name", name.to_owned())];
        // The stats say percent; Prometheus convention is a ratio from 0 to 1.
        if let Some(rate) = self.failure_rate {
            gauge("backstop_breaker_failure_ratio", &labels, rate / 100.0);
        }
        if let Some(rate) = self.slow_call_rate {
            gauge("backstop_breaker_slow_call_ratio", &labels, rate / 100.0);
        }
        gauge(
            "backstop_breaker_buffered_calls",
            &labels,
            self.buffered_calls as f64,
        );
        gauge(
            "backstop_breaker_failed_calls",
            &labels,
            self.failed_calls as f64,
        );
        gauge(
            "backstop_breaker_slow_calls",
            &labels,
            self.slow_calls as f64,
        );
        counter(
            "backstop_breaker_rejected_calls_total",
            &labels,
            self.rejected_calls,
        );
        counter(
            "backstop_breaker_listener_panics_total",
            &labels,
            self.listener_panics,
        );
        counter(
            "backstop_breaker_classifier_panics_total",
            &labels,
            self.classifier_panics,
        );
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
