//! What a policy sees on each evaluation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a metric's target is expressed, as in the HPA's `MetricTarget`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Target {
    /// Average utilization per replica, in percent of what one replica is provisioned for.
    Utilization(f64),
    /// Average value per replica (for example requests per second per replica).
    AverageValue(f64),
    /// One total value for the whole workload (for example a queue length).
    Value(f64),
}

impl Target {
    /// The target number, whatever its kind.
    pub fn value(&self) -> f64 {
        match *self {
            Target::Utilization(v) | Target::AverageValue(v) | Target::Value(v) => v,
        }
    }
}

/// Which kind of HPA metric a sample is (`autoscaling/v2` `MetricSpec.type`), which fixes the
/// targets it may use: Kubernetes refuses a Pods metric with a Utilization target, for one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum MetricType {
    /// Not stated: any target is accepted (Backstop's own metrics).
    #[default]
    Unspecified,
    /// A resource of the pods (CPU, memory): Utilization or AverageValue.
    Resource,
    /// A resource of one container of the pods: Utilization or AverageValue.
    ContainerResource {
        /// The container.
        container: String,
    },
    /// A per-pod custom metric: AverageValue.
    Pods,
    /// A metric describing one object (an Ingress's requests per second): Value or
    /// AverageValue.
    Object,
    /// A metric from outside the cluster (a queue's length): Value or AverageValue.
    External,
}

impl MetricType {
    /// Whether Kubernetes accepts `target` for this kind of metric.
    pub fn accepts(&self, target: &Target) -> bool {
        match self {
            MetricType::Unspecified => true,
            MetricType::Resource | MetricType::ContainerResource { .. } => {
                matches!(target, Target::Utilization(_) | Target::AverageValue(_))
            }
            MetricType::Pods => matches!(target, Target::AverageValue(_)),
            MetricType::Object | MetricType::External => {
                matches!(target, Target::Value(_) | Target::AverageValue(_))
            }
        }
    }
}

/// One replica's reading of a per-replica metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReading {
    /// Whether the replica is ready (warmed up and serving).
    pub ready: bool,
    /// The replica's value, or `None` when it reported nothing.
    pub value: Option<f64>,
    /// The replica's resource request, for a utilization target computed as the HPA does
    /// (`sum(usage) / sum(requests)`); then `value` is raw usage in the request's unit. When
    /// any replica has one, every replica must.
    #[serde(default)]
    pub request: Option<f64>,
}

impl ReplicaReading {
    /// A ready or warming replica's value, without a request.
    pub fn new(ready: bool, value: Option<f64>) -> Self {
        Self {
            ready,
            value,
            request: None,
        }
    }

    /// Sets the replica's resource request.
    #[must_use]
    pub fn with_request(mut self, request: f64) -> Self {
        self.request = Some(request);
        self
    }
}

/// The measured side of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Reading {
    /// One reading per replica; lets the HPA rules for missing and not-ready replicas apply.
    PerReplica(Vec<ReplicaReading>),
    /// The average over the ready replicas; not-ready replicas are `current - ready`.
    Average(f64),
    /// One total for the whole workload.
    Total(f64),
    /// The metric source failed; the text says why.
    Failed(String),
}

/// One metric: its name, what it should be, and what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// The metric's name, echoed in decisions.
    pub name: String,
    /// The target the policy tracks.
    pub target: Target,
    /// The measurement.
    pub reading: Reading,
    /// The HPA metric type; a target the type does not allow makes the sample invalid.
    #[serde(default)]
    pub kind: MetricType,
    /// When the metric was measured, on the observations' clock; `None` means "now".
    #[serde(default, with = "backstop_core::duration::human_option")]
    pub measured_at: Option<Duration>,
}

impl MetricSample {
    /// A sample with the given name, target and reading.
    pub fn new(name: impl Into<String>, target: Target, reading: Reading) -> Self {
        Self {
            name: name.into(),
            target,
            reading,
            kind: MetricType::Unspecified,
            measured_at: None,
        }
    }

    /// States the HPA metric type.
    #[must_use]
    pub fn of_type(mut self, kind: MetricType) -> Self {
        self.kind = kind;
        self
    }

    /// Stamps the time the metric was measured, for the staleness rule.
    #[must_use]
    pub fn measured_at(mut self, at: Duration) -> Self {
        self.measured_at = Some(at);
        self
    }

    /// Whether the sample is older than `max_age` at `now` (never, without a stamp or a limit).
    pub fn is_stale(&self, now: Duration, max_age: Option<Duration>) -> bool {
        match (self.measured_at, max_age) {
            (Some(at), Some(max)) => now.saturating_sub(at) > max,
            _ => false,
        }
    }

    /// The metric's total over the workload, when the reading allows computing one.
    ///
    /// `ready` is the number of ready replicas, used to turn an average into a total.
    pub fn total(&self, ready: u32) -> Option<f64> {
        match &self.reading {
            Reading::PerReplica(replicas) => {
                Some(replicas.iter().filter_map(|r| r.value).sum::<f64>())
            }
            Reading::Average(avg) => Some(avg * f64::from(ready)),
            Reading::Total(total) => Some(*total),
            Reading::Failed(_) => None,
        }
        .filter(|v| v.is_finite())
    }
}

/// Everything a policy is told on one evaluation.
///
/// Time is an input (`at`, measured from any fixed origin), so every decision is reproducible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When the observation was taken, measured from a fixed origin.
    pub at: Duration,
    /// Replicas currently requested (ready or warming up).
    pub current_replicas: u32,
    /// Replicas that are ready and serving.
    pub ready_replicas: u32,
    /// The metric samples.
    pub metrics: Vec<MetricSample>,
}

impl Observation {
    /// An observation with no metrics yet; add them with [`Observation::metric`].
    pub fn new(at: Duration, current_replicas: u32, ready_replicas: u32) -> Self {
        Self {
            at,
            current_replicas,
            ready_replicas,
            metrics: Vec::new(),
        }
    }

    /// Adds a metric sample.
    #[must_use]
    pub fn metric(mut self, sample: MetricSample) -> Self {
        self.metrics.push(sample);
        self
    }

    /// The sample with the given name.
    pub fn find(&self, name: &str) -> Option<&MetricSample> {
        self.metrics.iter().find(|m| m.name == name)
    }
}
