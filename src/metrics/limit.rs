use super::{PublishMetrics, counter, gauge};
use backstop_limit::{
    AdaptiveLimitStats, BudgetStats, BulkheadStats, KeyedStats, LimiterStats, SlidingWindowStats,
};

impl PublishMetrics for LimiterStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        counter("backstop_limit_admitted_total", &labels, self.admitted);
        counter("backstop_limit_rejected_total", &labels, self.rejected);
        gauge("backstop_limit_remaining", &labels, self.remaining as f64);
    }
}

impl PublishMetrics for KeyedStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        counter("backstop_limit_admitted_total", &labels, self.admitted);
        counter("backstop_limit_rejected_total", &labels, self.rejected);
        gauge("backstop_limit_keys", &labels, self.keys as f64);
        counter("backstop_limit_evicted_keys_total", &labels, self.evicted);
        gauge("backstop_limit_overrides", &labels, self.overrides as f64);
    }
}

impl PublishMetrics for SlidingWindowStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        counter("backstop_limit_admitted_total", &labels, self.admitted);
        counter("backstop_limit_rejected_total", &labels, self.rejected);
    }
}

impl PublishMetrics for BulkheadStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        gauge(
            "backstop_bulkhead_in_flight",
            &labels,
            self.in_flight as f64,
        );
        gauge("backstop_bulkhead_queued", &labels, self.queued as f64);
        counter("backstop_bulkhead_admitted_total", &labels, self.admitted);
        for (reason, count) in [("full", self.rejected_full), ("timeout", self.timed_out)] {
            counter(
                "backstop_bulkhead_rejected_total",
                &[("name", name.to_owned()), ("reason", reason.to_owned())],
                count,
            );
        }
    }
}

/// The Redis limiter: decisions by outcome, outages, misconfigurations.
#[cfg(feature = "redis")]
impl PublishMetrics for backstop_limit::RedisStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        counter("backstop_limit_admitted_total", &labels, self.allowed);
        counter("backstop_limit_rejected_total", &labels, self.rejected);
        counter(
            "backstop_limit_redis_errors_total",
            &labels,
            self.redis_errors,
        );
        counter(
            "backstop_limit_misconfigured_total",
            &labels,
            self.misconfigured,
        );
    }
}

/// The adaptive limiter: its limit and load, its refusals by reason, and each priority
/// class under a `class` label.
impl PublishMetrics for AdaptiveLimitStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        gauge("backstop_adaptive_limit", &labels, self.limit as f64);
        gauge(
            "backstop_adaptive_in_flight",
            &labels,
            self.in_flight as f64,
        );
        gauge("backstop_adaptive_queued", &labels, self.queued as f64);
        if let Some(baseline) = self.baseline {
            gauge(
                "backstop_adaptive_baseline_latency_seconds",
                &labels,
                baseline.as_secs_f64(),
            );
        }
        if let Some(latency) = self.window_latency {
            gauge(
                "backstop_adaptive_window_latency_seconds",
                &labels,
                latency.as_secs_f64(),
            );
        }
        counter("backstop_adaptive_admitted_total", &labels, self.admitted);
        for (reason, count) in [
            ("full", self.rejected),
            ("shed", self.shed),
            ("timeout", self.timed_out),
        ] {
            let labels = [("name", name.to_owned()), ("reason", reason.to_owned())];
            counter("backstop_adaptive_rejected_total", &labels, count);
        }
        counter("backstop_adaptive_windows_total", &labels, self.windows);
        counter("backstop_adaptive_dropped_total", &labels, self.dropped);
        counter("backstop_adaptive_panicked_total", &labels, self.panicked);
        for class in &self.classes {
            let labels = [("name", name.to_owned()), ("class", class.name.to_string())];
            gauge(
                "backstop_adaptive_class_guaranteed",
                &labels,
                class.guaranteed as f64,
            );
            gauge(
                "backstop_adaptive_class_in_flight",
                &labels,
                class.in_flight as f64,
            );
            gauge(
                "backstop_adaptive_class_queued",
                &labels,
                class.queued as f64,
            );
            counter(
                "backstop_adaptive_class_admitted_total",
                &labels,
                class.admitted,
            );
            for (reason, count) in [
                ("full", class.rejected),
                ("shed", class.shed),
                ("timeout", class.timed_out),
            ] {
                let labels = [
                    ("name", name.to_owned()),
                    ("class", class.name.to_string()),
                    ("reason", reason.to_owned()),
                ];
                counter("backstop_adaptive_class_rejected_total", &labels, count);
            }
        }
    }
}

/// Spending budgets: reservations by outcome, and per level the ids tracked (per-id spend
/// stays out of the metrics: ids are unbounded label values).
impl PublishMetrics for BudgetStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        counter("backstop_budget_reserved_total", &labels, self.reserved);
        counter("backstop_budget_refused_total", &labels, self.refused);
        counter("backstop_budget_settled_total", &labels, self.settled);
        counter("backstop_budget_dropped_total", &labels, self.dropped);
        counter(
            "backstop_budget_drop_failed_total",
            &labels,
            self.drop_failed,
        );
        for level in &self.levels {
            let labels = [("name", name.to_owned()), ("level", level.name.clone())];
            gauge("backstop_budget_keys", &labels, level.keys as f64);
            counter("backstop_budget_evicted_keys_total", &labels, level.evicted);
        }
    }
}
