//! The user's batch function: one call per batch, one result per item.

use backstop_core::BoxError;
use std::future::Future;

/// Processes a whole batch in one call and returns one response per item, in item order,
/// or an error for the whole batch.
///
/// Any `Fn(Vec<Req>) -> impl Future<Output = Result<Vec<Resp>, E>>` closure is a handler.
/// For per-item failures, make `Response` itself a `Result`.
///
/// ```
/// use backstop_batch::BatchHandler;
///
/// fn embed() -> impl BatchHandler<String, Response = usize> {
///     |texts: Vec<String>| async move {
///         Ok::<_, std::io::Error>(texts.iter().map(String::len).collect())
///     }
/// }
/// # let _ = embed();
/// ```
pub trait BatchHandler<Req>: Send + Sync + 'static {
    /// The response each item gets.
    type Response: Send + 'static;
    /// The error that fails a whole batch.
    type Error: Into<BoxError>;

    /// Handles one batch.
    fn call(
        &self,
        batch: Vec<Req>,
    ) -> impl Future<Output = Result<Vec<Self::Response>, Self::Error>> + Send;
}

impl<F, Req, Fut, Resp, E> BatchHandler<Req> for F
where
    F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Resp>, E>> + Send,
    Resp: Send + 'static,
    E: Into<BoxError>,
{
    type Response = Resp;
    type Error = E;

    fn call(&self, batch: Vec<Req>) -> impl Future<Output = Result<Vec<Resp>, E>> + Send {
        self(batch)
    }
}
