use super::{Labels, PublishMetrics, values};
use backstop_scale::Decision;

/// The latest decision: what the policy wants now and what it saw. Counting decisions
/// is the caller's business (it knows how often it evaluates); a change is visible as a
/// step in `desired_replicas`.
impl PublishMetrics for Decision {
    fn publish(&self, name: &str) {
        Labels::named(name).publish(values! {
            "backstop_scale_current_replicas" => self.current,
            "backstop_scale_desired_replicas" => self.desired,
            "backstop_scale_recommended_replicas" => self.recommendation,
        });
    }
}
