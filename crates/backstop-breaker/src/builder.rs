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

    backstop_core::config_setters! {
        BreakerConfig;
        minimum_calls: u32,
        failure_rate_threshold: f64,
        slow_call_rate_threshold: f64,
        slow_call_duration: Some(Duration),
        consecutive_failures: Some(u32),
        wait_in_open: Duration,
        permitted_calls_in_half_open: u32,
        max_wait_in_half_open: Some(Duration),
        automatic_transition: bool,
        cancelled_calls: CancelledCalls,
    }

    /// See [`BreakerConfig::backoff`].
    pub fn backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.config.backoff = Some(Backoff { multiplier, max });
        self
    }

    /// Validates the configuration and builds the breaker.
    pub fn build(self) -> Result<Breaker<C>, ConfigError> {
        self.config.validate()?;
        Ok(Breaker::from_parts(self.name, self.config, self.clock))
    }
}
