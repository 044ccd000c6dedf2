//! Any text is either a typed error naming what is wrong, or a configuration whose rules
//! all hold and whose sections build their primitives; nothing panics.
#![no_main]

use backstop::config::BackstopConfig;
use backstop::core::config::Validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match BackstopConfig::from_toml_str(text) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(config) => {
            assert_eq!(config.validate(), Ok(()));
            if let Some(limit) = &config.limit {
                limit.requests_limiter().expect("validated quotas build");
                limit.tokens_limiter().expect("validated quotas build");
                let fallback = backstop::limit::Quota::per_second(1).expect("a valid quota");
                limit
                    .budget_limiter(fallback, fallback)
                    .expect("validated quotas build one budget");
                limit.bulkhead().expect("a validated bulkhead builds");
            }
            config.breakers().expect("validated breakers build");
            if let Some(scale) = &config.scale {
                let _ = scale.policy();
            }
        }
    }
});
