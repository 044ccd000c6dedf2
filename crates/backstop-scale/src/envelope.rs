//! Burst-envelope headroom and a start-up-aware scale-up cap around any policy.

use std::collections::VecDeque;
use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};

use crate::config::{BurstEnvelopeConfig, HeadroomScale, MAX_ENVELOPE_SAMPLES};
use crate::decision::{Decision, Policy, Reason};
use crate::observation::Observation;

/// The lowest demand a proportional rise is measured from, in replicas' worth of load.
const QUIET_FLOOR: f64 = 0.1;

/// Keeps the SLO on bursty traffic by holding headroom for the bursts the recent past makes
/// likely, paid for by not starting replicas that would arrive after the backlog is gone.
///
/// Reactive policies size the fleet for the load they see, so every burst waits a whole replica
/// start-up; and a backlog-per-replica metric then asks for one replica per few queued requests,
/// which start after the backlog has drained and are held through the scale-down window. This
/// wrapper changes both (see [`BurstEnvelopeConfig`]): it keeps `ceil((demand + h) / target)`
/// replicas, `h` being a high quantile of how much the demand rose within one start-up over the
/// last day (by default as a share of the demand it rose from), and trims a reactive scale-up
/// to what the demand, the headroom and the backlog will need once the new replicas serve. A
/// forecast's scale-up ([`Reason::Predicted`]) is not trimmed: it is already sized for the time
/// the replicas will be ready. Scale-downs are the inner policy's.
///
/// Wrapped around [`PredictivePolicy`](crate::PredictivePolicy), it is what the predictive
/// policy degrades to while its forecasts are inaccurate: while the forecast is trusted
/// ([`Policy::forecast_trusted`]) it holds no headroom, since the forecast already sizes the
/// fleet for what is coming, and a smooth periodic load pays for no burst it will not see.
///
/// ```
/// use std::time::Duration;
/// use backstop_scale::{BurstEnvelope, BurstEnvelopeConfig, HeadroomScale, HpaConfig,
///     MetricSample, Observation, Policy, Reading, Target, TargetTracking};
///
/// let config = BurstEnvelopeConfig::default()
///     .with_metric("rps", 10.0)
///     .with_backlog_metric(None)
///     .with_scale(HeadroomScale::Absolute);
/// let mut policy = BurstEnvelope::new(TargetTracking::new(HpaConfig::default()).unwrap(), config)
///     .unwrap();
/// let at = |s: u64, replicas: u32, rps: f64| {
///     Observation::new(Duration::from_secs(s), replicas, replicas)
///         .metric(MetricSample::new("rps", Target::AverageValue(10.0), Reading::Total(rps)))
/// };
/// // The demand jumped from 10 to 40 once: the rise of 30 becomes the headroom (taken once
/// // per start-up, 180 s by default).
/// policy.decide(&at(0, 1, 10.0));
/// policy.decide(&at(15, 1, 40.0));
/// policy.decide(&at(200, 4, 40.0));
/// assert_eq!(policy.headroom(), 30.0);
/// // Back at 10 with 4 replicas, the count covers 10 + 30: 4 stay.
/// assert_eq!(policy.decide(&at(400, 4, 10.0)).desired, 4);
/// ```
#[derive(Debug, Clone)]
pub struct BurstEnvelope<P> {
    inner: P,
    config: BurstEnvelopeConfig,
    /// Demand samples over the last `startup`, increasing (a sliding minimum).
    lows: VecDeque<(Duration, f64)>,
    /// Demand samples over the last `startup`, decreasing (a sliding maximum).
    highs: VecDeque<(Duration, f64)>,
    /// Rises over the last `lookback`, oldest first.
    rises: VecDeque<(Duration, f64)>,
    headroom: f64,
    refreshed: Option<Duration>,
}

impl<P: Policy> BurstEnvelope<P> {
    /// Validates the config and wraps `inner`.
    pub fn new(inner: P, config: BurstEnvelopeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            inner,
            config,
            lows: VecDeque::new(),
            highs: VecDeque::new(),
            rises: VecDeque::new(),
            headroom: 0.0,
            refreshed: None,
        })
    }

    /// The wrapped policy.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The headroom learnt: in demand units, or as a share of the demand under
    /// [`HeadroomScale::Proportional`].
    pub fn headroom(&self) -> f64 {
        self.headroom
    }

    /// The headroom held over `demand`, in demand units.
    fn headroom_over(&self, demand: f64) -> f64 {
        match self.config.scale {
            HeadroomScale::Absolute => self.headroom,
            HeadroomScale::Proportional => demand * self.headroom,
        }
    }

    fn total(obs: &Observation, metric: &str) -> Option<f64> {
        obs.find(metric)
            .and_then(|m| m.total(obs.ready_replicas))
            .filter(|v| v.is_finite() && *v >= 0.0)
    }

    fn replicas(&self, demand: f64) -> u32 {
        // Float-to-int `as` saturates; the headroom floor is bounded by max_replicas anyway.
        (demand / self.config.target_per_replica).ceil() as u32
    }

    /// Learns the demand of an evaluation, applied or not.
    fn observe(&mut self, obs: &Observation) {
        let Some(demand) = Self::total(obs, &self.config.metric) else {
            return;
        };
        let c = &self.config;
        push_extreme(&mut self.lows, obs.at, demand, c.startup, f64::le);
        push_extreme(&mut self.highs, obs.at, demand, c.startup, f64::ge);
        let low = self.lows.front().map_or(demand, |(_, v)| *v);
        make_room(&mut self.rises, obs.at, c.lookback);
        let rise = match c.scale {
            HeadroomScale::Absolute => demand - low,
            // A rise from (nearly) nothing is measured against a tenth of one replica's
            // load: as a share of zero it would be infinite and hold the whole fleet, and
            // against a whole replica's load the rises of a quiet hour vanish (on the AAPL
            // trace that left 1.6x the violation minutes).
            HeadroomScale::Proportional => {
                (demand - low) / low.max(c.target_per_replica * QUIET_FLOOR)
            }
        };
        self.rises.push_back((obs.at, rise));
        // The headroom cannot usefully change faster than a replica starts, so the quantile
        // (linear in the samples kept) is taken once per start-up rather than per evaluation.
        if self
            .refreshed
            .is_none_or(|t| obs.at.saturating_sub(t) >= c.startup)
        {
            let mut rises: Vec<f64> = self.rises.iter().map(|(_, r)| *r).collect();
            let index = ((rises.len() - 1) as f64 * c.quantile).round() as usize;
            let (_, h, _) = rises.select_nth_unstable_by(index, f64::total_cmp);
            self.headroom = *h;
            self.refreshed = Some(obs.at);
        }
    }
}

impl<P: Policy> Policy for BurstEnvelope<P> {
    fn recommend(&self, obs: &Observation) -> Decision {
        let mut decision = self.inner.recommend(obs);
        let current = obs.current_replicas;
        let Some(demand) = Self::total(obs, &self.config.metric) else {
            return decision;
        };
        if matches!(decision.reason, Reason::AboveMax | Reason::Cooldown) {
            return decision;
        }
        let c = &self.config;
        // A trusted forecast already sizes the fleet for the coming start-up.
        let trusted = self.inner.forecast_trusted();
        let headroom = if trusted {
            0.0
        } else {
            self.headroom_over(demand)
        };
        let envelope = demand + headroom;
        // Capacity released now takes a whole start-up to come back, so the floor comes down
        // only as the highest demand of the last start-up does (it never raises the count).
        let recent = self
            .highs
            .front()
            .filter(|(at, _)| obs.at.saturating_sub(*at) <= c.startup)
            .map_or(demand, |(_, v)| v.max(demand));
        if decision.desired > current
            && decision.reason != Reason::Predicted
            && let Some(backlog) = c
                .backlog_metric
                .as_deref()
                .and_then(|m| Self::total(obs, m))
        {
            // What the ready replicas cannot take keeps queueing until the new ones serve.
            let ready = f64::from(obs.ready_replicas) * c.target_per_replica;
            let queued = backlog + (demand - ready).max(0.0) * c.startup.as_secs_f64();
            let needed = self.replicas(envelope + queued / c.drain_time.as_secs_f64());
            if decision.desired > needed {
                decision.desired = needed.max(current);
                decision.reason = Reason::StartupCapped;
            }
        }
        let held = if trusted {
            0
        } else {
            self.replicas(recent + self.headroom_over(recent))
                .min(current)
        };
        let floor = self.replicas(envelope).max(held).min(c.max_replicas);
        if floor > decision.desired {
            decision.desired = floor;
            decision.reason = Reason::BurstHeadroom;
        }
        decision
    }

    fn commit(&mut self, obs: &Observation, decision: &Decision) {
        self.observe(obs);
        self.inner.commit(obs, decision);
    }

    fn apply_failed(&mut self, obs: &Observation, decision: &Decision) {
        self.observe(obs);
        self.inner.apply_failed(obs, decision);
    }

    fn forecast_trusted(&self) -> bool {
        self.inner.forecast_trusted()
    }
}

/// Samples of the last `span`, oldest first: makes room for one more sample at `now` by
/// dropping those older than `span` and, beyond [`MAX_ENVELOPE_SAMPLES`], the oldest.
fn make_room(samples: &mut VecDeque<(Duration, f64)>, now: Duration, span: Duration) {
    while samples.len() >= MAX_ENVELOPE_SAMPLES
        || samples
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > span)
    {
        samples.pop_front();
    }
}

/// Adds `demand` at `now` to a sliding extreme over the last `span` (a monotonic queue whose
/// front is the extreme): the later samples `demand` outranks (`outranks(demand, sample)`:
/// `f64::le` for a minimum, `f64::ge` for a maximum) can never be the extreme again while it
/// is in the window, so they go first.
fn push_extreme(
    samples: &mut VecDeque<(Duration, f64)>,
    now: Duration,
    demand: f64,
    span: Duration,
    outranks: fn(&f64, &f64) -> bool,
) {
    while samples.back().is_some_and(|(_, v)| outranks(&demand, v)) {
        samples.pop_back();
    }
    make_room(samples, now, span);
    samples.push_back((now, demand));
}
