//! What every layer's span says about how its call ended.

use crate::StackError;

/// Records how a call through a layer ended on its span: `outcome` (`ok`, `rejected`,
/// `error`), and for a refusal its kind (`reject_kind`) and `retry_after` in seconds.
///
/// Every Backstop layer opens one span per call with these fields empty and records them
/// here, so a trace reads the same whichever layer refused.
pub fn record_outcome<T, E: StackError>(span: &tracing::Span, result: &Result<T, E>) {
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
