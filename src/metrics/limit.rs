use super::{PublishMetrics, counter, gauge};
use backstop_limit::{BulkheadStats, KeyedStats, LimiterStats, SlidingWindowStats};

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
