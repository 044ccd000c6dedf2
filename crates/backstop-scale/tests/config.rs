//! Configs: serde with human durations, and clear validation errors.

use std::time::Duration;

use backstop_scale::{
    ForecastModel, HpaConfig, PredictiveConfig, PredictivePolicy, QueueConfig, QueuePolicy,
    RateKind, Select, TargetTracking, ThresholdConfig, ThresholdPolicy,
};

#[test]
fn hpa_config_deserializes_with_human_durations_and_defaults() {
    let config: HpaConfig = serde_json::from_str(
        r#"{
            "min_replicas": 2,
            "max_replicas": 30,
            "behavior": {
                "scale_down": {
                    "stabilization_window": "2m",
                    "policies": [{"kind": "pods", "value": 4, "period": "1m"}],
                    "select": "min"
                },
                "cooldown": "30s"
            }
        }"#,
    )
    .unwrap();
    assert_eq!(config.tolerance, 0.1);
    assert_eq!(
        config.behavior.scale_down.stabilization_window,
        Duration::from_secs(120)
    );
    assert_eq!(config.behavior.scale_down.policies[0].kind, RateKind::Pods);
    assert_eq!(config.behavior.scale_down.select, Select::Min);
    assert_eq!(config.behavior.cooldown, Duration::from_secs(30));
    // Scale-up keeps the HPA default.
    assert_eq!(config.behavior.scale_up.policies.len(), 2);
    assert!(TargetTracking::new(config).is_ok());
}

#[test]
fn invalid_configs_name_the_field_and_the_rule() {
    let err = TargetTracking::new(HpaConfig::default().with_bounds(5, 2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: `min_replicas` must not be greater than max_replicas"
    );
    let err = TargetTracking::new(HpaConfig::default().with_bounds(0, 2)).unwrap_err();
    assert_eq!(err.field(), "min_replicas");
    let err = TargetTracking::new(HpaConfig::default().with_tolerance(-0.1)).unwrap_err();
    assert_eq!(err.field(), "tolerance");
    let mut bad_policy = HpaConfig::default();
    bad_policy.behavior.scale_down.policies[0].value = 0;
    let err = TargetTracking::new(bad_policy).unwrap_err();
    assert_eq!(err.field(), "behavior.scale_down.policies[0]");
    let err = QueuePolicy::new(QueueConfig::default().with_target(0.0)).unwrap_err();
    assert_eq!(err.field(), "target_per_replica");
    let err = QueuePolicy::new(QueueConfig::default().with_fallback(3, 50)).unwrap_err();
    assert_eq!(err.field(), "fallback.replicas");
    let t = ThresholdConfig {
        scale_up_above: 20.0,
        ..ThresholdConfig::default()
    };
    assert_eq!(
        ThresholdPolicy::new(t).unwrap_err().field(),
        "scale_up_above"
    );
    let err =
        ThresholdPolicy::new(ThresholdConfig::default().with_step_percents(-1.0, 0.0)).unwrap_err();
    assert_eq!(err.field(), "up_step_percent");
    let err = ThresholdPolicy::new(ThresholdConfig::default().with_step_percents(0.0, 150.0))
        .unwrap_err();
    assert_eq!(err.field(), "down_step_percent");
    let p = PredictiveConfig {
        model: ForecastModel::HoltWinters {
            alpha: 0.0,
            beta: 0.1,
            gamma: 0.1,
        },
        ..PredictiveConfig::default()
    };
    assert_eq!(PredictivePolicy::new(p).unwrap_err().field(), "model.alpha");
    let p = PredictiveConfig {
        reactive: HpaConfig::default().with_bounds(3, 1),
        ..PredictiveConfig::default()
    };
    assert_eq!(
        PredictivePolicy::new(p).unwrap_err().field(),
        "reactive.min_replicas"
    );
}

#[test]
fn unknown_durations_are_rejected_by_serde() {
    let err = serde_json::from_str::<QueueConfig>(r#"{"cooldown": "five minutes"}"#);
    assert!(err.is_err());
}
