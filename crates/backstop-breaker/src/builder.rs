//! Building a breaker from code.

use std::sync::Arc;
use std::time::Duration;

use backstop_core::config::{ConfigError, Validate};
use backstop_core::{Clock, DefaultClock};

use crate::{Backoff, Breaker, BreakerConfig, BreakerWindow, CancelledCalls};

/// Builds a [`Breaker`]; every setter maps to a [`BreakerConfig`] field and
/// [`build`](Self::build) validates the whole.
#[derive(Debug, Clone)]
pub struct BreakerBuilder<C = DefaultClock> {
    name: Arc<str>,
    config: BreakerConfig,
    clock: C,
}

impl Breaker<DefaultClock> {
    /// A builder with resilience4j's defaults and the [`DefaultClock`].
    pub fn builder() -> BreakerBuilder<DefaultClock> {
        BreakerBuilder {
            name: Arc::from("breaker"),
            config: BreakerConfig::default(),
            clock: DefaultClock::default(),
        }
    }

    /// A breaker named `name` with `config`, on the [`DefaultClock`].
    pub fn new(name: &str, config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::builder().name(name).config(config).build()
    }
}

impl<C: Clock> BreakerBuilder<C> {
    /// Names the breaker (for events, stats and tracing). Default `"breaker"`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads time from `clock` (a `ManualClock` in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> BreakerBuilder<C2> {
        BreakerBuilder {
            name: self.name,
            config: self.config,
            clock,
        }
    }

    /// Rates over the last `size` calls.
    pub fn count_window(mut self, size: u32) -> Self {
        self.config.window = BreakerWindow::Count { size };
        self
    }

    /// Rates over the calls of the last `seconds` seconds.
    pub fn time_window(mut self, seconds: u32) -> Self {
        self.config.window = BreakerWindow::Time { seconds };
        self
    }

    /// See [`BreakerConfig::minimum_calls`].
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// See [`BreakerConfig::failure_rate_threshold`].
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate_threshold = percent;
        self
    }

    /// See [`BreakerConfig::slow_call_rate_threshold`].
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.config.slow_call_rate_threshold = percent;
        self
    }

    /// See [`BreakerConfig::slow_call_duration`].
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = Some(duration);
        self
    }

    /// See [`BreakerConfig::consecutive_failures`].
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = Some(failures);
        self
    }

    /// See [`BreakerConfig::wait_in_open`].
    pub fn wait_in_open(mut self, wait: Duration) -> Self {
        self.config.wait_in_open = wait;
        self
    }

    /// See [`BreakerConfig::backoff`].
    pub fn backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.config.backoff = Some(Backoff { multiplier, max });
        self
    }

    /// See [`BreakerConfig::permitted_calls_in_half_open`].
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.config.permitted_calls_in_half_open = calls;
        self
    }

    /// See [`BreakerConfig::max_wait_in_half_open`].
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.config.max_wait_in_half_open = Some(wait);
        self
    }

    /// See [`BreakerConfig::automatic_transition`].
    pub fn automatic_transition(mut self, automatic: bool) -> Self {
        self.config.automatic_transition = automatic;
        self
    }

    /// See [`BreakerConfig::cancelled_calls`].
    pub fn cancelled_calls(mut self, cancelled: CancelledCalls) -> Self {
        self.config.cancelled_calls = cancelled;
        self
    }

    /// Validates the configuration and builds the breaker.
    pub fn build(self) -> Result<Breaker<C>, ConfigError> {
        self.config.validate()?;
        Ok(Breaker::from_parts(self.name, self.config, self.clock))
    }
}
