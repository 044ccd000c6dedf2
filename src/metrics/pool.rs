use super::{PublishMetrics, counter, gauge};
use backstop_core::HistogramSnapshot;
use backstop_pool::PoolStats;

impl PublishMetrics for PoolStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        let with =
            |key: &'static str, value: &str| [("name", name.to_owned()), (key, value.to_owned())];
        gauge(
            "backstop_pool_connections",
            &with("state", "in_use"),
            self.in_use as f64,
        );
        gauge(
            "backstop_pool_connections",
            &with("state", "idle"),
            self.idle as f64,
        );
        gauge("backstop_pool_max_size", &labels, self.max_size as f64);
        gauge("backstop_pool_waiters", &labels, self.waiters as f64);
        counter("backstop_pool_created_total", &labels, self.created);
        counter(
            "backstop_pool_create_failures_total",
            &labels,
            self.create_failures,
        );
        let closed = &self.closed;
        for (reason, count) in [
            ("idle", closed.idle),
            ("lifetime", closed.lifetime),
            ("health_check", closed.health_check),
            ("broken", closed.broken),
            ("resize", closed.resize),
            ("pool_closed", closed.pool_closed),
        ] {
            counter("backstop_pool_closed_total", &with("reason", reason), count);
        }
        counter("backstop_pool_checkouts_total", &labels, self.checkouts);
        counter("backstop_pool_timeouts_total", &labels, self.timeouts);
        counter("backstop_pool_panicked_total", &labels, self.panicked);
        counter(
            "backstop_pool_leaks_suspected_total",
            &labels,
            self.leaks_suspected,
        );
        counter("backstop_pool_resizes_total", &labels, self.resizes);
    }

    fn histograms(&self) -> Vec<(&'static str, &HistogramSnapshot)> {
        vec![
            ("backstop_pool_wait_seconds", &self.wait_histogram),
            ("backstop_pool_usage_seconds", &self.usage_histogram),
        ]
    }
}
