use super::{PublishMetrics, counter, gauge, named};
use backstop_route::RouterStats;

/// The router's totals under `name`, and each target's under `name` and `target`.
impl PublishMetrics for RouterStats {
    fn publish(&self, name: &str) {
        let labels = named(name);
        counter("backstop_route_calls_total", &labels, self.calls);
        counter("backstop_route_succeeded_total", &labels, self.succeeded);
        counter("backstop_route_fallbacks_total", &labels, self.fallbacks);
        counter("backstop_route_exhausted_total", &labels, self.exhausted);
        counter(
            "backstop_route_all_cooling_refusals_total",
            &labels,
            self.all_cooling_refusals,
        );
        counter("backstop_route_probes_total", &labels, self.probes);
        counter(
            "backstop_route_deadline_exhaustions_total",
            &labels,
            self.deadline_exhaustions,
        );
        counter("backstop_route_panics_total", &labels, self.panics);
        counter(
            "backstop_route_waited_retry_after_total",
            &labels,
            self.waited_retry_after,
        );
        for target in &self.targets {
            let labels = [("name", name.to_owned()), ("target", target.name.clone())];
            counter("backstop_route_target_chosen_total", &labels, target.chosen);
            counter(
                "backstop_route_target_succeeded_total",
                &labels,
                target.succeeded,
            );
            let failed = &target.failed;
            for (class, count) in [
                ("server_error", failed.server_error),
                ("timeout", failed.timeout),
                ("rate_limited", failed.rate_limited),
                ("circuit_open", failed.circuit_open),
                ("unavailable", failed.unavailable),
                ("context_length", failed.context_length),
                ("fatal", failed.fatal),
            ] {
                let labels = [
                    ("name", name.to_owned()),
                    ("target", target.name.clone()),
                    ("class", class.to_owned()),
                ];
                counter("backstop_route_target_failed_total", &labels, count);
            }
            for (reason, count) in [
                ("no_budget", target.skipped_no_budget),
                ("circuit_open", target.skipped_circuit_open),
            ] {
                let labels = [
                    ("name", name.to_owned()),
                    ("target", target.name.clone()),
                    ("reason", reason.to_owned()),
                ];
                counter("backstop_route_target_skipped_total", &labels, count);
            }
            counter(
                "backstop_route_target_cooldowns_total",
                &labels,
                target.cooldowns,
            );
            gauge(
                "backstop_route_target_cooldown_seconds",
                &labels,
                target.cooling_down.map_or(0.0, |left| left.as_secs_f64()),
            );
            gauge(
                "backstop_route_target_in_flight",
                &labels,
                target.in_flight as f64,
            );
            gauge(
                "backstop_route_target_ewma_latency_seconds",
                &labels,
                target.ewma_latency.as_secs_f64(),
            );
        }
    }
}
