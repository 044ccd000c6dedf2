use super::{PublishMetrics, counter, gauge};
use backstop_dedup::{GroupStats, WindowStats};

impl PublishMetrics for GroupStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        counter("backstop_dedup_executions_total", &labels, self.executions);
        counter("backstop_dedup_coalesced_total", &labels, self.coalesced);
        counter("backstop_dedup_panics_total", &labels, self.panics);
        counter("backstop_dedup_timeouts_total", &labels, self.timeouts);
        counter("backstop_dedup_abandoned_total", &labels, self.abandoned);
        gauge("backstop_dedup_in_flight", &labels, self.in_flight as f64);
    }
}

impl PublishMetrics for WindowStats {
    fn publish(&self, name: &str) {
        self.group.publish(name);
        let labels = [("name", name.to_owned())];
        counter(
            "backstop_dedup_window_hits_total",
            &labels,
            self.window_hits,
        );
        gauge("backstop_dedup_remembered", &labels, self.remembered as f64);
        counter("backstop_dedup_window_evicted_total", &labels, self.evicted);
    }
}
