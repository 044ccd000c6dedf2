//! Exponential backoff with jitter.

use crate::config::{Jitter, RetryBackoffConfig};
use std::time::Duration;

/// The waits of one call's retries, in order.
#[derive(Debug)]
pub(crate) struct BackoffSeries {
    config: RetryBackoffConfig,
    /// Retries already waited for.
    retries: u32,
    /// The previous wait, for decorrelated jitter.
    previous: Duration,
}

impl BackoffSeries {
    pub(crate) fn new(config: RetryBackoffConfig) -> Self {
        Self {
            previous: config.initial,
            config,
            retries: 0,
        }
    }

    /// The wait before the next retry.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let c = &self.config;
        let exponential = c
            .initial
            .mul_f64(c.multiplier.powi(self.retries.min(64) as i32).min(1e9))
            .min(c.max);
        self.retries = self.retries.saturating_add(1);
        let wait = match c.jitter {
            Jitter::None => exponential,
            // AWS "full jitter": uniform in [0, exponential].
            Jitter::Full => exponential.mul_f64(fastrand::f64()),
            // AWS "decorrelated jitter": uniform in [initial, previous × 3], capped.
            Jitter::Decorrelated => {
                let high = self.previous.saturating_mul(3).max(c.initial);
                let span = high - c.initial;
                (c.initial + span.mul_f64(fastrand::f64())).min(c.max)
            }
        };
        self.previous = wait;
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(jitter: Jitter) -> RetryBackoffConfig {
        RetryBackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter,
        }
    }

    #[test]
    fn without_jitter_the_waits_double_up_to_the_cap() {
        let mut series = BackoffSeries::new(config(Jitter::None));
        let waits: Vec<u64> = (0..7)
            .map(|_| series.next_wait().as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    proptest! {
        #[test]
        fn full_jitter_stays_under_the_exponential(retries in 1usize..40) {
            let mut series = BackoffSeries::new(config(Jitter::Full));
            for n in 0..retries {
                let cap = Duration::from_millis(100).mul_f64(2f64.powi(n as i32)).min(Duration::from_secs(2));
                prop_assert!(series.next_wait() <= cap);
            }
        }

        #[test]
        fn decorrelated_jitter_stays_between_initial_and_three_times_previous(retries in 1usize..40) {
            let mut series = BackoffSeries::new(config(Jitter::Decorrelated));
            let mut previous = Duration::from_millis(100);
            for _ in 0..retries {
                let wait = series.next_wait();
                prop_assert!(wait >= Duration::from_millis(100));
                prop_assert!(wait <= (previous * 3).min(Duration::from_secs(2)).max(Duration::from_millis(100)));
                previous = wait;
            }
        }
    }
}
