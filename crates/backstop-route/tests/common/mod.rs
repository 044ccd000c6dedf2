//! A simulated provider for the route tests: each target answers after a latency with a
//! scripted status.

#![allow(dead_code, unreachable_pub)]

use backstop_core::Error;
use backstop_route::{ErrorClass, RouteConfig, RouteHints, Router, TargetConfig, standard_class};
use std::time::Duration;

/// A provider's answer when it is not a success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status {code}")]
pub struct Status {
    pub code: u16,
    pub retry_after: Option<Duration>,
}

pub fn status(code: u16) -> Error<Status> {
    Error::Inner(Status {
        code,
        retry_after: None,
    })
}

pub fn too_many(retry_after: Option<Duration>) -> Error<Status> {
    Error::Inner(Status {
        code: 429,
        retry_after,
    })
}

/// The gateway's classification of provider statuses.
pub fn classify(error: &Error<Status>) -> ErrorClass {
    match error.inner() {
        Some(Status {
            code: 429,
            retry_after,
        }) => ErrorClass::RateLimited {
            retry_after: *retry_after,
        },
        Some(Status { code: 413, .. }) => ErrorClass::ContextLength,
        Some(Status {
            code: 400..=412, ..
        }) => ErrorClass::Fatal,
        _ => standard_class(error),
    }
}

pub fn target(name: &str, group: u32) -> TargetConfig {
    TargetConfig {
        group,
        ..TargetConfig::named(name)
    }
}

pub fn router(targets: Vec<TargetConfig>) -> Router {
    RouteConfig {
        targets,
        ..RouteConfig::default()
    }
    .build()
    .unwrap()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The name of the target `router` sends a request with `hints` to, every target answering
/// at once with a success.
pub async fn chosen(router: &Router, hints: &RouteHints) -> Result<String, Error<Status>> {
    router
        .run(hints, &classify, |t| {
            let name = t.name().to_string();
            async move { Ok(name) }
        })
        .await
}
