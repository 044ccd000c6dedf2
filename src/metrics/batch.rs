use super::{PublishMetrics, counter, gauge};
use backstop_batch::BatchStats;
use backstop_core::HistogramSnapshot;

impl PublishMetrics for BatchStats {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        let with =
            |key: &'static str, value: &str| [("name", name.to_owned()), (key, value.to_owned())];
        counter("backstop_batch_submitted_total", &labels, self.submitted);
        counter("backstop_batch_succeeded_total", &labels, self.succeeded);
        counter("backstop_batch_failed_total", &labels, self.failed);
        for (reason, count) in [
            ("full", self.rejected_full),
            ("timeout", self.rejected_timeout),
            ("closed", self.rejected_closed),
        ] {
            counter(
                "backstop_batch_rejected_total",
                &with("reason", reason),
                count,
            );
        }
        counter("backstop_batch_cancelled_total", &labels, self.cancelled);
        let reasons = &self.dispatch_reasons;
        for (reason, count) in [
            ("full", reasons.full),
            ("preferred", reasons.preferred),
            ("timeout", reasons.timeout),
            ("flush", reasons.flush),
        ] {
            counter(
                "backstop_batch_batches_total",
                &with("reason", reason),
                count,
            );
        }
        counter(
            "backstop_batch_handler_errors_total",
            &labels,
            self.handler_errors,
        );
        counter(
            "backstop_batch_handler_panics_total",
            &labels,
            self.handler_panics,
        );
        counter(
            "backstop_batch_dispatcher_panics_total",
            &labels,
            self.dispatcher_panics,
        );
        counter(
            "backstop_batch_callback_panics_total",
            &labels,
            self.callback_panics,
        );
        gauge("backstop_batch_queued", &labels, self.queued as f64);
        gauge(
            "backstop_batch_in_flight",
            &labels,
            self.in_flight_batches as f64,
        );
        gauge(
            "backstop_batch_max_size",
            &labels,
            self.effective_max_batch_size as f64,
        );
        gauge("backstop_batch_size_mean", &labels, self.batch_size.mean);
        for (quantile, size) in [
            ("0.5", self.batch_size.p50),
            ("0.95", self.batch_size.p95),
            ("0.99", self.batch_size.p99),
        ] {
            gauge(
                "backstop_batch_size",
                &with("quantile", quantile),
                size as f64,
            );
        }
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
