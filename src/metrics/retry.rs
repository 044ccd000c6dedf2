use super::{Labels, PublishMetrics, values};
use backstop_retry::RetryStats;

impl PublishMetrics for RetryStats {
    fn publish(&self, name: &str) {
        let labels = Labels::named(name);
        labels.publish_fields("backstop_retry", self);
        labels.publish(values! {
            "backstop_retry_hedges_total" => self.hedges_fired,
            "backstop_retry_hedge_delay_seconds" => self.hedge_delay,
        });
    }
}
