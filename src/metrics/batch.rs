use super::{Labels, PublishMetrics, values};
use backstop_batch::BatchStats;
use backstop_core::HistogramSnapshot;

impl PublishMetrics for BatchStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        // Batches are counted by dispatch reason below.
        labels.publish_fields_except("backstop_batch", self, &["batches"]);
        labels.publish(values! {
            "backstop_batch_in_flight" => self.in_flight_batches,
            "backstop_batch_max_size" => self.effective_max_batch_size,
            "backstop_batch_size_mean" => self.batch_size.mean,
        });
        labels.publish_by(
            "backstop_batch_rejected_total",
            "reason",
            values! {
                "full" => self.rejected_full,
                "timeout" => self.rejected_timeout,
                "closed" => self.rejected_closed,
            },
        );
        let reasons = &self.dispatch_reasons;
        labels.publish_by(
            "backstop_batch_batches_total",
            "reason",
            values! {
                "full" => reasons.full,
                "preferred" => reasons.preferred,
                "timeout" => reasons.timeout,
                "flush" => reasons.flush,
            },
        );
        let size = &self.batch_size;
        labels.publish_by(
            "backstop_batch_size",
            "quantile",
            values! {
                "0.5" => size.p50,
                "0.95" => size.p95,
                "0.99" => size.p99,
            },
        );
    }

    fn histograms(&self) -> Vec<(&'static str, &HistogramSnapshot)> {
        vec![
            (
                "backstop_batch_queue_wait_seconds",
                &self.queue_wait_histogram,
            ),
            ("backstop_batch_handler_seconds", &self.handler_histogram),
        ]
    }
}
