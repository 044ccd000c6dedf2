//! What every layer's span says about its call: one span per call, opened with
//! [`layer_span!`](crate::layer_span), run with [`in_span`], ended with [`record_outcome`].

use crate::StackError;
use std::future::Future;
use std::hash::{Hash, Hasher};
use tracing::{Instrument, Span};

/// Opens a layer's span: a `debug` span of target `backstop` named `$name`, with the
/// fields [`record_outcome`] fills (`outcome`, `reject_kind`, `retry_after`) and, before
/// them, each `$field` empty (to record later, e.g. `key_hash`) and each `$fixed = value`.
///
/// When no subscriber wants `debug` (none is set, or its level is `info` or above) the
/// span is [`Span::none`] after one relaxed load of the global level: tracing's own
/// disabled span still fills its fields for the `log` crate whenever tracing's `log`
/// feature is on (any dependency can turn it on, tower's default features do), which cost
/// a closed breaker call 1.7× its unspanned time (`benches/layer_spans.rs`). So a layer's
/// spans are never forwarded to `log`; a tracing subscriber sees them.
///
/// ```
/// let span = backstop_core::layer_span!("backstop.example", key_hash; store = "memory");
/// assert!(span.is_disabled(), "no subscriber listens");
/// ```
#[macro_export]
macro_rules! layer_span {
    ($name:literal $(, $field:ident)* $(; $($fixed:ident = $value:expr),+)?) => {
        if $crate::spans_enabled() {
            $crate::__private::tracing::debug_span!(
                target: "backstop",
                $name,
                $($($fixed = $value,)+)?
                $($field = $crate::__private::tracing::field::Empty,)*
                outcome = $crate::__private::tracing::field::Empty,
                reject_kind = $crate::__private::tracing::field::Empty,
                retry_after = $crate::__private::tracing::field::Empty,
            )
        } else {
            $crate::__private::tracing::Span::none()
        }
    };
}

/// Whether a subscriber may want layer spans now: tracing's global level admits `debug`
/// (one relaxed load). [`layer_span!`](crate::layer_span) opens [`Span::none`] when it does
/// not, and a layer whose admission is synchronous (the rate limit) checks it first and
/// runs the call with no span object at all.
///
/// ```
/// assert!(!backstop_core::spans_enabled(), "no subscriber is set");
/// ```
#[inline]
pub fn spans_enabled() -> bool {
    tracing::level_enabled!(tracing::Level::DEBUG)
}

/// Runs one call through a layer inside `span` and records how it ended.
///
/// With no subscriber interested the span is disabled and the call is exactly the
/// unspanned one: `call` builds the future in each branch, so the disabled path neither
/// builds nor moves an instrumented future (measured on the breaker: building the future
/// once before the branch cost ~25 ns a call; `benches/layer_spans.rs` keeps the check).
pub async fn in_span<T, E, F, Fut>(span: &Span, call: F) -> Result<T, E>
where
    E: StackError,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    if span.is_disabled() {
        return call().await;
    }
    let result = call().instrument(span.clone()).await;
    record_outcome(span, &result);
    result
}

/// Records how a call through a layer ended on its span: `outcome` (`ok`, `rejected`,
/// `error`), and for a refusal its kind (`reject_kind`) and `retry_after` in seconds.
///
/// Every Backstop layer opens one span per call with these fields empty and records them
/// here, so a trace reads the same whichever layer refused.
pub fn record_outcome<T, E: StackError>(span: &Span, result: &Result<T, E>) {
    match result {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(error) => match error.rejection() {
            Some(refused) => {
                span.record("outcome", "rejected");
                span.record("reject_kind", tracing::field::display(&refused.kind));
                if let Some(after) = refused.retry_after {
                    span.record("retry_after", after.as_secs_f64());
                }
            }
            None => {
                span.record("outcome", "error");
            }
        },
    }
}

/// A span's `key_hash`: a hash of a key, never the key itself (it may be a prompt, a user
/// or an API key). SipHash with fixed keys, so a key hashes alike in every process of one
/// build and a trace viewer can group one key's calls without seeing it.
pub fn key_hash<Q: Hash + ?Sized>(key: &Q) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Records [`key_hash`] of `key` on `span`, hashing only when the span is enabled.
pub fn record_key_hash<Q: Hash + ?Sized>(span: &Span, key: &Q) {
    if !span.is_disabled() {
        span.record("key_hash", key_hash(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, RejectKind, Rejected};

    #[test]
    fn a_key_hashes_alike_every_time_and_unlike_another_key() {
        assert_eq!(key_hash("prompt"), key_hash(&"prompt".to_string()));
        assert_ne!(key_hash("prompt"), key_hash("other prompt"));
    }

    #[tokio::test]
    async fn without_a_subscriber_the_call_runs_as_is() {
        let span = layer_span!("backstop.test", key_hash; store = "memory");
        assert!(span.is_disabled());
        record_key_hash(&span, "secret");
        let ok: Result<u32, Error<()>> = in_span(&span, || async { Ok(3) }).await;
        assert_eq!(ok.unwrap(), 3);
        let refused: Result<u32, Error<()>> = in_span(&span, || async {
            Err(Error::Rejected(Rejected::new(RejectKind::Shed)))
        })
        .await;
        assert!(refused.unwrap_err().rejection().is_some());
    }
}
