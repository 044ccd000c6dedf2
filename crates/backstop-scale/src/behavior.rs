//! The HPA's stabilization windows and rate policies, as in `normalizeDesiredReplicasWithBehaviors`.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::Duration;

use crate::config::{Behavior, RateKind, RatePolicy, ScalingRules, Select};
use crate::decision::{Decision, MetricProposal, Reason};
use crate::observation::Observation;
use crate::state::{ScaleConditions, ScaleEvent, ScaleState, StampedReplicas};

#[derive(Debug, Clone, Copy)]
struct Stamped {
    at: Duration,
    replicas: u32,
}

/// Recent recommendations and scale events, and the rules that turn them into a bound.
#[derive(Debug, Clone)]
pub(crate) struct Normalizer {
    behavior: Behavior,
    recommendations: VecDeque<Stamped>,
    ups: VecDeque<Stamped>,
    downs: VecDeque<Stamped>,
    last_action: Option<Duration>,
}

/// [`Policy`](crate::Policy) for a policy that scales through a [`Normalizer`]: it has
/// `evaluate(obs)`, `observe(obs, decision)` (what an evaluation leaves behind, applied or not)
/// and the fields `normalizer` and `stats`.
macro_rules! normalized_policy {
    ($policy:ty) => {
        impl $crate::decision::Policy for $policy {
            fn recommend(
                &self,
                obs: &$crate::observation::Observation,
            ) -> $crate::decision::Decision {
                self.evaluate(obs)
            }

            fn commit(
                &mut self,
                obs: &$crate::observation::Observation,
                decision: &$crate::decision::Decision,
            ) {
                self.observe(obs, decision);
                self.normalizer
                    .record_scale(obs.at, decision.current, decision.desired);
                self.stats.record(decision);
            }

            fn apply_failed(
                &mut self,
                obs: &$crate::observation::Observation,
                decision: &$crate::decision::Decision,
            ) {
                // As the HPA: the recommendation stays in the window, but no scale event is
                // recorded, so the rate limits of the retry are not spent on a change that never
                // happened.
                self.observe(obs, decision);
                self.stats.apply_failures += 1;
            }
        }
    };
}
pub(crate) use normalized_policy;

/// `true` when `at` is strictly after `now - span` (the HPA's `After(cutoff)`).
fn within(at: Duration, now: Duration, span: Duration) -> bool {
    match now.checked_sub(span) {
        Some(cutoff) => at > cutoff,
        None => true,
    }
}

/// Drops the entries of `history` (oldest first) that are no longer within `span` of `now`:
/// no window or period that long will read them again.
fn drop_older(history: &mut VecDeque<Stamped>, now: Duration, span: Duration) {
    while history.front().is_some_and(|s| !within(s.at, now, span)) {
        history.pop_front();
    }
}

impl Normalizer {
    pub(crate) fn new(behavior: Behavior) -> Self {
        Self {
            behavior,
            recommendations: VecDeque::new(),
            ups: VecDeque::new(),
            downs: VecDeque::new(),
            last_action: None,
        }
    }

    fn in_cooldown(&self, now: Duration) -> bool {
        !self.behavior.cooldown.is_zero()
            && self
                .last_action
                .is_some_and(|t| now.saturating_sub(t) < self.behavior.cooldown)
    }

    /// The decision on `raw`, the largest proposal (from `metric`): held in a cooldown,
    /// otherwise stabilized and rate-limited within `min..=max` by [`Normalizer::normalize`].
    pub(crate) fn decide(
        &self,
        obs: &Observation,
        raw: u32,
        (min, max): (u32, u32),
        metric: String,
        proposals: Vec<MetricProposal>,
    ) -> Decision {
        let current = obs.current_replicas;
        if self.in_cooldown(obs.at) {
            return Decision {
                recommendation: Some(raw),
                proposals,
                ..Decision::hold(obs.at, current, Reason::Cooldown)
            };
        }
        let (desired, why) = self.normalize(obs.at, current, raw, (min, max));
        let reason = why.unwrap_or(if desired == current {
            Reason::Steady
        } else {
            Reason::Metric { metric }
        });
        Decision {
            at: obs.at,
            current,
            desired,
            recommendation: Some(raw),
            reason,
            proposals,
        }
    }

    /// Stabilizes `desired`, then applies the rate policies and the bounds. Pure: the
    /// recommendation is recorded by [`Normalizer::record_recommendation`].
    pub(crate) fn normalize(
        &self,
        now: Duration,
        current: u32,
        desired: u32,
        bounds: (u32, u32),
    ) -> (u32, Option<Reason>) {
        let (stabilized, stab_reason) = self.stabilize(now, current, desired);
        let (limited, rate_reason) = self.rate_limit(now, current, stabilized, bounds);
        let reason = if limited != stabilized {
            rate_reason
        } else if stabilized != desired {
            stab_reason
        } else {
            None
        };
        (limited, reason)
    }

    /// The history as the HPA sees it: a fresh one holds the current count
    /// (`recordInitialRecommendation`), whatever the windows.
    fn history(&self, now: Duration, current: u32) -> impl Iterator<Item = Stamped> + '_ {
        let seed = self.recommendations.is_empty().then_some(Stamped {
            at: now,
            replicas: current,
        });
        seed.into_iter().chain(self.recommendations.iter().copied())
    }

    fn stabilize(&self, now: Duration, current: u32, desired: u32) -> (u32, Option<Reason>) {
        let up_window = self.behavior.scale_up.stabilization_window;
        let down_window = self.behavior.scale_down.stabilization_window;
        let mut up = desired;
        let mut down = desired;
        // A seed stamped `now` counts in a window longer than zero, as the HPA's seed, stamped
        // a moment before its stabilization runs, does.
        for rec in self.history(now, current) {
            if within(rec.at, now, up_window) {
                up = up.min(rec.replicas);
            }
            if within(rec.at, now, down_window) {
                down = down.max(rec.replicas);
            }
        }
        let recommendation = current.max(up).min(down);
        let reason = if desired < current {
            Reason::ScaleDownStabilized
        } else {
            Reason::ScaleUpStabilized
        };
        (recommendation, Some(reason))
    }

    /// Records a recommendation for the stabilization windows, seeding a fresh history with
    /// the current count first, as the HPA does whether or not the scale is then applied.
    pub(crate) fn record_recommendation(&mut self, now: Duration, current: u32, desired: u32) {
        if self.recommendations.is_empty() {
            self.recommendations.push_back(Stamped {
                at: now,
                replicas: current,
            });
        }
        let longest = self
            .behavior
            .scale_up
            .stabilization_window
            .max(self.behavior.scale_down.stabilization_window);
        drop_older(&mut self.recommendations, now, longest);
        self.recommendations.push_back(Stamped {
            at: now,
            replicas: desired,
        });
    }

    fn change_in_period(events: &VecDeque<Stamped>, now: Duration, period: Duration) -> i64 {
        events
            .iter()
            .filter(|e| within(e.at, now, period))
            .map(|e| i64::from(e.replicas))
            .sum()
    }

    fn period_start(&self, now: Duration, current: u32, period: Duration) -> i64 {
        i64::from(current) - Self::change_in_period(&self.ups, now, period)
            + Self::change_in_period(&self.downs, now, period)
    }

    /// The furthest count the rate policies of `rules` allow in `direction`: the current count
    /// when scaling that way is disabled, no bound when there are no policies, otherwise the
    /// bound of the policy allowing the largest change (`Select::Max`) or the smallest.
    fn limit(
        &self,
        now: Duration,
        current: u32,
        rules: &ScalingRules,
        direction: Direction,
    ) -> i64 {
        let pick = match rules.select {
            Select::Disabled => return i64::from(current),
            Select::Max => Direction::larger_change,
            Select::Min => Direction::smaller_change,
        };
        rules
            .policies
            .iter()
            .map(|p| direction.bound(self.period_start(now, current, p.period), p))
            .reduce(|a, b| pick(direction, a, b))
            .unwrap_or(direction.unbounded())
    }

    /// Holds a change in `desired` to what the rate policies of its direction allow, and
    /// to the bound (`min` or `max`) it moves towards, naming whichever held it.
    fn rate_limit(
        &self,
        now: Duration,
        current: u32,
        desired: u32,
        (min, max): (u32, u32),
    ) -> (u32, Option<Reason>) {
        let (direction, rules, bound, rate_reason, bound_reason) = match desired.cmp(&current) {
            Ordering::Greater => (
                Direction::Up,
                &self.behavior.scale_up,
                max,
                Reason::ScaleUpLimit,
                Reason::TooManyReplicas,
            ),
            Ordering::Less => (
                Direction::Down,
                &self.behavior.scale_down,
                min,
                Reason::ScaleDownLimit,
                Reason::TooFewReplicas,
            ),
            Ordering::Equal => return (desired, None),
        };
        // The rate policies never push the count the other way.
        let limit = direction.larger_change(
            self.limit(now, current, rules, direction),
            i64::from(current),
        );
        let bound = i64::from(bound);
        let (allowed, reason) = if direction.beyond(bound, limit) {
            (limit, rate_reason)
        } else {
            (bound, bound_reason)
        };
        if direction.beyond(i64::from(desired), allowed) {
            return (clamp_u32(allowed), Some(reason));
        }
        (desired, None)
    }

    /// Records a scale action so later rate limits count it.
    pub(crate) fn record_scale(&mut self, now: Duration, from: u32, to: u32) {
        if from == to {
            return;
        }
        self.last_action = Some(now);
        let event = Stamped {
            at: now,
            replicas: from.abs_diff(to),
        };
        if to > from {
            self.ups.push_back(event);
        } else {
            self.downs.push_back(event);
        }
        let longest_up = longest_period(&self.behavior.scale_up);
        let longest_down = longest_period(&self.behavior.scale_down);
        drop_older(&mut self.ups, now, longest_up);
        drop_older(&mut self.downs, now, longest_down);
    }

    /// The history as [`ScaleState`] shows it, with the conditions `last` (the last committed
    /// decision) leaves.
    pub(crate) fn state(&self, last: Option<Decision>) -> ScaleState {
        let stamp = |s: &Stamped| StampedReplicas {
            at: s.at,
            replicas: s.replicas,
        };
        let mut events: Vec<ScaleEvent> = self
            .ups
            .iter()
            .map(|e| ScaleEvent {
                at: e.at,
                change: i64::from(e.replicas),
            })
            .chain(self.downs.iter().map(|e| ScaleEvent {
                at: e.at,
                change: -i64::from(e.replicas),
            }))
            .collect();
        events.sort_by_key(|e| e.at);
        ScaleState {
            recommendations: self.recommendations.iter().map(stamp).collect(),
            events,
            last_change: self.last_action,
            conditions: ScaleConditions::of(last.as_ref()),
            metric_failures: 0,
            last,
        }
    }

    pub(crate) fn history_len(&self) -> usize {
        self.recommendations.len()
    }
}

/// Which way a rate policy limits the count.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Up,
    Down,
}

impl Direction {
    /// The count policy `p` allows from `start`, the count at the start of its period.
    fn bound(self, start: i64, p: &RatePolicy) -> i64 {
        match (self, p.kind) {
            (Direction::Up, RateKind::Pods) => start + i64::from(p.value),
            // Rounded up so that a small fleet can always grow by at least one.
            (Direction::Up, RateKind::Percent) => {
                (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
            }
            (Direction::Down, RateKind::Pods) => start - i64::from(p.value),
            // Truncated, as the HPA does.
            (Direction::Down, RateKind::Percent) => {
                (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64
            }
        }
    }

    /// Whether count `a` lies strictly further in this direction than `b`.
    fn beyond(self, a: i64, b: i64) -> bool {
        match self {
            Direction::Up => a > b,
            Direction::Down => a < b,
        }
    }

    /// Of two bounds, the one allowing the larger change.
    fn larger_change(self, a: i64, b: i64) -> i64 {
        if self.beyond(a, b) { a } else { b }
    }

    /// Of two bounds, the one allowing the smaller change.
    fn smaller_change(self, a: i64, b: i64) -> i64 {
        if self.beyond(a, b) { b } else { a }
    }

    /// The bound of a direction without rate policies.
    fn unbounded(self) -> i64 {
        match self {
            Direction::Up => i64::MAX,
            Direction::Down => i64::MIN,
        }
    }
}

fn longest_period(rules: &ScalingRules) -> Duration {
    rules
        .policies
        .iter()
        .map(|p| p.period)
        .max()
        .unwrap_or(Duration::ZERO)
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}
