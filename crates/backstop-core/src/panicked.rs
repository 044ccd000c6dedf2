//! Containing user code: a panic in a loader, handler, manager or classifier becomes a
//! value ([`Panicked`]) instead of unwinding through Backstop's own state.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// User code called by a Backstop primitive panicked; the panic was caught.
///
/// ```
/// use backstop_core::{Panicked, contain};
///
/// let caught: Panicked = contain("weigher", || -> u32 { panic!("bad weight") }).unwrap_err();
/// assert_eq!(caught.site(), "weigher");
/// assert_eq!(caught.message(), "bad weight");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    site: &'static str,
    message: Arc<str>,
}

impl Panicked {
    /// A panic caught at `site` (which callback: `"loader"`, `"manager.create"`…), with the
    /// message taken from the panic's payload.
    pub fn from_payload(site: &'static str, payload: &(dyn Any + Send)) -> Self {
        let message: Arc<str> = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Arc::from(*s)
        } else if let Some(s) = payload.downcast_ref::<String>() {
            Arc::from(s.as_str())
        } else {
            Arc::from("non-string panic payload")
        };
        Self { site, message }
    }

    /// Which callback panicked.
    pub fn site(&self) -> &'static str {
        self.site
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} panicked: {}", self.site, self.message)
    }
}

impl std::error::Error for Panicked {}

/// Runs a synchronous callback, turning a panic into [`Panicked`].
///
/// The callback's captured state is treated as unwind-safe: Backstop only calls it again
/// after a panic if the caller decides to, and never holds its own locks across it.
///
/// Inlined: `catch_unwind` costs nothing until a panic, but an out-of-line call here cost
/// the rate-limit layer's admitted call ~16 ns (`benches/layer_spans.rs`).
#[inline]
pub fn contain<T>(site: &'static str, f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked::from_payload(site, &*payload))
}

/// Wraps a future so that a panic while polling it resolves to `Err(Panicked)`.
///
/// ```
/// use backstop_core::contain_future;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let out = contain_future("loader", async { panic!("boom") as u32 }).await;
/// assert_eq!(out.unwrap_err().message(), "boom");
/// # });
/// ```
pub fn contain_future<F: Future>(site: &'static str, future: F) -> Contained<F> {
    Contained {
        site,
        future: Box::pin(future),
    }
}

/// A future that resolves to `Err(Panicked)` if its inner future panics, made by
/// [`contain_future`].
pub struct Contained<F> {
    site: &'static str,
    // Boxed so `Contained` is `Unpin` and needs no pin projection (no unsafe code).
    future: Pin<Box<F>>,
}

impl<F> fmt::Debug for Contained<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contained")
            .field("site", &self.site)
            .finish()
    }
}

impl<F: Future> Future for Contained<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let site = self.site;
        let future = self.future.as_mut();
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(Panicked::from_payload(site, &*payload))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_and_str_payloads_keep_their_message() {
        let owned = contain("a", || -> () { panic!("{}", String::from("owned")) }).unwrap_err();
        assert_eq!(owned.message(), "owned");
        let other = contain("b", || std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(other.message(), "non-string panic payload");
        assert_eq!(other.to_string(), "b panicked: non-string panic payload");
        assert_eq!(contain("c", || 3), Ok(3));
    }
}
