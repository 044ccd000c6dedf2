use super::{Labels, PublishMetrics, values};
use backstop_core::HistogramSnapshot;
use backstop_pool::PoolStats;

impl PublishMetrics for PoolStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_pool", self);
        labels.publish_by(
            "backstop_pool_connections",
            "state",
            values! {
                "in_use" => self.in_use,
                "idle" => self.idle,
            },
        );
        let closed = &self.closed;
        labels.publish_by(
            "backstop_pool_closed_total",
            "reason",
            values! {
                "idle" => closed.idle,
                "lifetime" => closed.lifetime,
                "health_check" => closed.health_check,
                "broken" => closed.broken,
                "resize" => closed.resize,
                "pool_closed" => closed.pool_closed,
            },
        );
    }

    fn histograms(&self) -> Vec<(&'static str, &HistogramSnapshot)> {
        vec![
            ("backstop_pool_wait_seconds", &self.wait_histogram),
            ("backstop_pool_usage_seconds", &self.usage_histogram),
        ]
    }
}
