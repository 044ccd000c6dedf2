//! From refusals and quota states to HTTP statuses and headers (feature `http`, on the
//! `http` crate; nothing here serves HTTP).
//!
//! - [`status`]: 429 for a rate limit or budget, 503 for every other refusal.
//! - [`apply_headers`]: `Retry-After`; the IETF `RateLimit-Policy` and `RateLimit` fields
//!   (draft-ietf-httpapi-ratelimit-headers), one item per quota; and the widespread
//!   per-quota `X-RateLimit-Limit-<Quota>`, `X-RateLimit-Remaining-<Quota>` and
//!   `X-RateLimit-Reset-<Quota>` (as OpenAI and Anthropic send them), plus the unsuffixed
//!   `X-RateLimit-*` trio for the quota with the least room left.
//!
//! ```
//! use backstop_core::http::{apply_headers, status};
//! use backstop_core::{QuotaState, RejectKind, Rejected};
//! use http::{HeaderMap, StatusCode};
//! use std::time::Duration;
//!
//! let refused = Rejected::new(RejectKind::RateLimited { quota: 1 })
//!     .with_retry_after(Duration::from_millis(2_500));
//! let quotas = [
//!     QuotaState::new("requests", 60, 12, Duration::from_secs(40), Duration::from_secs(60)),
//!     QuotaState::new("tokens", 10_000, 0, Duration::from_secs(3), Duration::from_secs(60)),
//! ];
//! assert_eq!(status(&refused), StatusCode::TOO_MANY_REQUESTS);
//!
//! let mut headers = HeaderMap::new();
//! apply_headers(&mut headers, Some(&refused), &quotas);
//! assert_eq!(headers["retry-after"], "3");
//! assert_eq!(headers["ratelimit-policy"], r#""requests";q=60;w=60, "tokens";q=10000;w=60"#);
//! assert_eq!(headers["ratelimit"], r#""requests";r=12;t=40, "tokens";r=0;t=3"#);
//! assert_eq!(headers["x-ratelimit-remaining-tokens"], "0");
//! assert_eq!(headers["x-ratelimit-remaining"], "0"); // the tightest quota
//! ```

use crate::{Error, QuotaState, RejectKind, Rejected};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::fmt::Write as _;
use std::time::Duration;

/// The status a refusal maps to: 429 when a rate limit or budget refused (the client is
/// asking too much), 503 for every other refusal (the server is protecting itself).
pub fn status(rejected: &Rejected) -> StatusCode {
    match rejected.kind {
        RejectKind::RateLimited { .. } | RejectKind::TooLarge { .. } | RejectKind::TooManyKeys => {
            StatusCode::TOO_MANY_REQUESTS
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The status for a stack's error: a refusal's [`status`], 500 for a panic, 502 for a
/// failed backend store or connection, and `None` for the bottom service's own error,
/// which only the application can map.
pub fn error_status<E>(error: &Error<E>) -> Option<StatusCode> {
    match error.resolve() {
        Error::Rejected(r) => Some(status(r)),
        Error::Panicked(_) => Some(StatusCode::INTERNAL_SERVER_ERROR),
        Error::Backend(_) => Some(StatusCode::BAD_GATEWAY),
        _ => None,
    }
}

fn secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn header_name(prefix: &str, quota: &str) -> Option<HeaderName> {
    let suffix: String = quota
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    HeaderName::from_bytes(format!("{prefix}-{suffix}").as_bytes()).ok()
}

/// An `sf-string` for a structured-field item key: quotes and backslashes escaped, other
/// non-printable characters dropped.
fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

/// Writes `Retry-After` (for a refusal that knows its wait) and the rate-limit fields for
/// `quotas`, on admitted and refused responses alike.
pub fn apply_headers(headers: &mut HeaderMap, rejected: Option<&Rejected>, quotas: &[QuotaState]) {
    if let Some(secs) = rejected.and_then(Rejected::retry_after_secs) {
        set(headers, RETRY_AFTER, secs.to_string());
    }
    if quotas.is_empty() {
        return;
    }
    let mut policy = String::new();
    let mut state = String::new();
    for (i, q) in quotas.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let key = sf_string(&q.name);
        let _ = write!(policy, "{sep}{key};q={};w={}", q.limit, secs_up(q.window));
        let _ = write!(state, "{sep}{key};r={};t={}", q.remaining, secs_up(q.reset));
        for (prefix, value) in [
            ("x-ratelimit-limit", q.limit),
            ("x-ratelimit-remaining", q.remaining),
            ("x-ratelimit-reset", secs_up(q.reset)),
        ] {
            if let Some(name) = header_name(prefix, &q.name) {
                set(headers, name, value.to_string());
            }
        }
    }
    set(headers, HeaderName::from_static("ratelimit-policy"), policy);
    set(headers, HeaderName::from_static("ratelimit"), state);
    // The quota with the least room, by share of its limit left, is what a client that
    // reads only the unsuffixed fields must respect.
    if let Some(tightest) = quotas.iter().min_by(|a, b| {
        let share = |q: &QuotaState| q.remaining as f64 / q.limit.max(1) as f64;
        share(a).total_cmp(&share(b))
    }) {
        set(
            headers,
            HeaderName::from_static("x-ratelimit-limit"),
            tightest.limit.to_string(),
        );
        set(
            headers,
            HeaderName::from_static("x-ratelimit-remaining"),
            tightest.remaining.to_string(),
        );
        set(
            headers,
            HeaderName::from_static("x-ratelimit-reset"),
            secs_up(tightest.reset).to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_429_or_503() {
        let cases = [
            (RejectKind::RateLimited { quota: 0 }, 429),
            (RejectKind::TooLarge { quota: 0 }, 429),
            (RejectKind::TooManyKeys, 429),
            (RejectKind::CircuitOpen, 503),
            (RejectKind::QueueFull, 503),
            (RejectKind::ConcurrencyLimited, 503),
            (RejectKind::PoolExhausted, 503),
            (RejectKind::Timeout, 503),
            (RejectKind::DeadlineExceeded, 503),
            (RejectKind::Shed, 503),
            (RejectKind::Unavailable, 503),
            (RejectKind::Closed, 503),
        ];
        for (kind, code) in cases {
            assert_eq!(status(&Rejected::new(kind)).as_u16(), code, "{kind:?}");
        }
    }

    #[test]
    fn stack_errors_map_without_downcasting() {
        let inner: Error<&str> = Error::Inner("provider");
        assert_eq!(error_status(&inner), None);
        let shared: Error<&str> = Error::Shared(std::sync::Arc::new(Error::Rejected(
            Rejected::new(RejectKind::CircuitOpen),
        )));
        assert_eq!(error_status(&shared), Some(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn quota_names_are_escaped_and_no_wait_means_no_retry_after() {
        let mut headers = HeaderMap::new();
        let q = [QuotaState::new(
            "my \"q\"",
            5,
            5,
            Duration::ZERO,
            Duration::from_millis(1500),
        )];
        apply_headers(&mut headers, None, &q);
        assert!(headers.get(RETRY_AFTER).is_none());
        assert_eq!(headers["ratelimit-policy"], r#""my \"q\"";q=5;w=2"#);
        assert_eq!(headers["x-ratelimit-remaining-my--q-"], "5");
    }
}
