use super::{PublishMetrics, gauge};
use backstop_scale::Decision;

/// The latest decision: what the policy wants now and what it saw. Counting decisions
/// is the caller's business (it knows how often it evaluates); a change is visible as a
/// step in `desired_replicas`.
impl PublishMetrics for Decision {
    fn publish(&self, name: &str) {
        let labels = [("name", name.to_owned())];
        gauge(
            "backstop_scale_current_replicas",
            &labels,
            f64::from(self.current),
        );
        gauge(
            "backstop_scale_desired_replicas",
            &labels,
            f64::from(self.desired),
        );
        if let Some(recommendation) = self.recommendation {
            gauge(
                "backstop_scale_recommended_replicas",
                &labels,
                f64::from(recommendation),
            );
        }
    }
}
