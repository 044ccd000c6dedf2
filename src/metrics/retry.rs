use super::{PublishMetrics, counter, gauge, named};
use backstop_retry::RetryStats;

impl PublishMetrics for RetryStats {
    fn publish(&self, name: &str) {
        let labels = named(name);
        counter("backstop_retry_calls_total", &labels, self.calls);
        counter("backstop_retry_attempts_total", &labels, self.attempts);
        counter("backstop_retry_retries_total", &labels, self.retries);
        counter(
            "backstop_retry_budget_refusals_total",
            &labels,
            self.budget_refusals,
        );
        counter("backstop_retry_hedges_total", &labels, self.hedges_fired);
        counter("backstop_retry_hedges_won_total", &labels, self.hedges_won);
        counter(
            "backstop_retry_deadline_exhaustions_total",
            &labels,
            self.deadline_exhaustions,
        );
        counter(
            "backstop_retry_classifier_panics_total",
            &labels,
            self.classifier_panics,
        );
        counter(
            "backstop_retry_streams_cut_total",
            &labels,
            self.streams_cut,
        );
        if let Some(delay) = self.hedge_delay {
            gauge(
                "backstop_retry_hedge_delay_seconds",
                &labels,
                delay.as_secs_f64(),
            );
        }
    }
}
