use super::{Labels, PublishMetrics, values};
use backstop_limit::{AdaptiveLimitStats, BudgetStats, BulkheadStats, LimiterStats};

/// Every rate limiter, local or Redis, under the same names: decisions by outcome, the room
/// left (direct limiters), the keys tracked (keyed limiters), outages and misconfigurations
/// (the Redis limiter); the fields that do not apply are zero.
impl PublishMetrics for LimiterStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_limit", self);
        labels.publish(values! {
            "backstop_limit_evicted_keys_total" => self.evicted,
        });
    }
}

impl PublishMetrics for BulkheadStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_bulkhead", self);
        labels.publish_by(
            "backstop_bulkhead_rejected_total",
            "reason",
            values! {
                "full" => self.rejected_full,
                "timeout" => self.timed_out,
            },
        );
    }
}

/// The adaptive limiter: its limit and load, its refusals by reason, and each priority
/// class under a `class` label.
impl PublishMetrics for AdaptiveLimitStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields_except("backstop_adaptive", self, &["rejected"]);
        labels.publish(values! {
            "backstop_adaptive_baseline_latency_seconds" => self.baseline,
            "backstop_adaptive_window_latency_seconds" => self.window_latency,
        });
        let refusals = [self.rejected, self.shed, self.timed_out];
        publish_refusals(&labels, "backstop_adaptive_rejected_total", refusals);
        for class in &self.classes {
            let labels = labels.with("class", class.name.to_string());
            labels.publish_fields_except("backstop_adaptive_class", class, &["rejected"]);
            let refusals = [class.rejected, class.shed, class.timed_out];
            publish_refusals(&labels, "backstop_adaptive_class_rejected_total", refusals);
        }
    }
}

/// An adaptive limiter's refusals (the whole limiter's or one class's) by reason: `full`,
/// `shed` for a higher class, `timeout` in the queue.
fn publish_refusals(labels: &Labels, metric: &'static str, [full, shed, timeout]: [u64; 3]) {
    labels.publish_by(
        metric,
        "reason",
        values! {
            "full" => full,
            "shed" => shed,
            "timeout" => timeout,
        },
    );
}

/// Spending budgets: reservations by outcome, and per level the ids tracked (per-id spend
/// stays out of the metrics: ids are unbounded label values).
impl PublishMetrics for BudgetStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_budget", self);
        for level in &self.levels {
            let labels = labels.with("level", level.name.clone());
            labels.publish_fields("backstop_budget", level);
            labels.publish(values! {
                "backstop_budget_evicted_keys_total" => level.evicted,
            });
        }
    }
}
