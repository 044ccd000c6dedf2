use super::{Labels, PublishMetrics, values};
use backstop_route::RouterStats;

/// The router's totals under `name`, and each target's under `name` and `target`.
impl PublishMetrics for RouterStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_route", self);
        for target in &self.targets {
            let labels = labels.with("target", target.name.clone());
            // Zero when the target is not cooling down.
            let cooldown = target.cooling_down.unwrap_or_default();
            labels.publish_fields("backstop_route_target", target);
            labels.publish(values! {
                "backstop_route_target_cooldown_seconds" => cooldown,
                "backstop_route_target_ewma_latency_seconds" => target.ewma_latency,
            });
            let failed = &target.failed;
            labels.publish_by(
                "backstop_route_target_failed_total",
                "class",
                values! {
                    "server_error" => failed.server_error,
                    "timeout" => failed.timeout,
                    "rate_limited" => failed.rate_limited,
                    "circuit_open" => failed.circuit_open,
                    "unavailable" => failed.unavailable,
                    "context_length" => failed.context_length,
                    "fatal" => failed.fatal,
                },
            );
            labels.publish_by(
                "backstop_route_target_skipped_total",
                "reason",
                values! {
                    "no_budget" => target.skipped_no_budget,
                    "circuit_open" => target.skipped_circuit_open,
                },
            );
        }
    }
}
