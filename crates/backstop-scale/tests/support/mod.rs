//! Setup the integration tests share.

use std::time::Duration;

use backstop_scale::{Behavior, HpaConfig, ScalingRules, TargetTracking};

/// `s` seconds.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `config` with no stabilization window, no rate limit and no cooldown, so the replica
/// calculator (and whatever wraps the policy) shows alone.
pub(crate) fn raw(config: HpaConfig) -> TargetTracking {
    let unlimited = ScalingRules::default_up()
        .with_window(Duration::ZERO)
        .with_policies(vec![]);
    let behavior = Behavior {
        scale_up: unlimited.clone(),
        scale_down: unlimited,
        cooldown: Duration::ZERO,
    };
    TargetTracking::new(config.with_behavior(behavior)).unwrap()
}
