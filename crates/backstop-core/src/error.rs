//! One error type through any stack of Backstop layers.
//!
//! The decision (recorded with its reasons in `ARCHITECTURE.md`): **layers do not wrap the
//! error of the service below them.** A Backstop layer's service has the same `Error` as its
//! inner service, and asks of that type only what [`StackError`] offers: a way to say
//! "refused" ([`Rejected`]), "one execution's error shared by several callers" (`Arc`, so no
//! layer needs `Clone` of the errors below it), "user code panicked" and "a store or
//! connection Backstop depends on failed". The provider at the bottom lifts its own error
//! once into [`Error<E>`] (with [`ServiceExt::lift`](crate::ServiceExt::lift)), and from then
//! on every permutation of layers has the type `Error<E>`: one `match`, no downcast, and the
//! provider's `E` stays typed.
//!
//! ```
//! use backstop_core::{Error, RejectKind, Rejected, Service, ServiceExt, service_fn};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("provider said {0}")]
//! struct ProviderError(u16);
//!
//! let provider = service_fn(|n: u32| async move {
//!     if n == 0 { Err(ProviderError(500)) } else { Ok(n) }
//! })
//! .lift(); // Error = backstop_core::Error<ProviderError>
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! match provider.call(0).await {
//!     Err(Error::Inner(ProviderError(code))) => assert_eq!(code, 500),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # });
//! // A layer refusing a call builds the refusal through `StackError`, whatever the stack:
//! let refused: Error<ProviderError> =
//!     backstop_core::StackError::rejected(Rejected::new(RejectKind::CircuitOpen));
//! assert_eq!(refused.rejection().unwrap().kind, RejectKind::CircuitOpen);
//! ```

use crate::{Panicked, Rejected};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A type-erased error, as tower's `BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of something a Backstop primitive depends on (Redis, a pool manager's
/// connection), shared so it can reach several callers.
pub type BackendError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What every Backstop layer needs of the error type flowing through it.
///
/// [`Error<E>`] implements it for any `E`; an application may implement it for its own
/// error type instead and use that through the whole stack.
pub trait StackError: Sized + Send + Sync + 'static {
    /// A Backstop primitive refused the call.
    fn rejected(rejected: Rejected) -> Self;
    /// One execution's error, handed to every caller that shared it (dedup followers,
    /// batch items, cache loads).
    fn shared(error: Arc<Self>) -> Self;
    /// User code called by a primitive panicked.
    fn panicked(panicked: Panicked) -> Self;
    /// A store or connection the primitive depends on failed.
    fn backend(error: BackendError) -> Self;
    /// The refusal this error carries, looking through shared errors.
    fn rejection(&self) -> Option<&Rejected>;
}

/// The error of a stack of Backstop layers over a service whose own error is `E`.
///
/// Match it directly, or use the accessors, which look through [`Error::Shared`]:
/// [`rejection`](Error::rejection), [`inner`](Error::inner),
/// [`retry_after`](Error::retry_after).
///
/// It is `Clone` when `E` is, so a failure that several waiters share (a coalesced load)
/// can be handed to each of them as this one type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error<E> {
    /// A Backstop primitive refused the call; it did not run.
    Rejected(Rejected),
    /// The service at the bottom of the stack failed.
    Inner(E),
    /// One execution failed and its error was shared by several callers.
    Shared(Arc<Error<E>>),
    /// User code called by a primitive panicked.
    Panicked(Panicked),
    /// A store or connection a primitive depends on failed.
    Backend(BackendError),
}

impl<E> Error<E> {
    /// Wraps the bottom service's error; the function `lift` maps with.
    pub fn inner_error(error: E) -> Self {
        Self::Inner(error)
    }

    /// The error itself, looking through any number of [`Error::Shared`] wrappers.
    pub fn resolve(&self) -> &Self {
        let mut error = self;
        while let Self::Shared(shared) = error {
            error = shared;
        }
        error
    }

    /// The refusal, if a Backstop primitive refused the call.
    pub fn rejection(&self) -> Option<&Rejected> {
        match self.resolve() {
            Self::Rejected(r) => Some(r),
            _ => None,
        }
    }

    /// The bottom service's error, if that is what failed.
    pub fn inner(&self) -> Option<&E> {
        match self.resolve() {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The caught panic, if user code panicked.
    pub fn panic(&self) -> Option<&Panicked> {
        match self.resolve() {
            Self::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// The bottom service's error by value, when this error owns it (not shared).
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Shared(shared) => Arc::try_unwrap(shared).ok().and_then(Self::into_inner),
            _ => None,
        }
    }

    /// The wait after which a retry could pass, for a refusal that knows it.
    pub fn retry_after(&self) -> Option<Duration> {
        self.rejection().and_then(|r| r.retry_after)
    }
}

impl<E: Send + Sync + 'static> StackError for Error<E> {
    #[inline]
    fn rejected(rejected: Rejected) -> Self {
        Self::Rejected(rejected)
    }

    fn shared(error: Arc<Self>) -> Self {
        Self::Shared(error)
    }

    fn panicked(panicked: Panicked) -> Self {
        Self::Panicked(panicked)
    }

    fn backend(error: BackendError) -> Self {
        Self::Backend(error)
    }

    fn rejection(&self) -> Option<&Rejected> {
        Error::rejection(self)
    }
}

impl<E> From<Rejected> for Error<E> {
    fn from(rejected: Rejected) -> Self {
        Self::Rejected(rejected)
    }
}

impl<E> From<Panicked> for Error<E> {
    fn from(panicked: Panicked) -> Self {
        Self::Panicked(panicked)
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => fmt::Display::fmt(r, f),
            Self::Inner(e) => fmt::Display::fmt(e, f),
            Self::Shared(shared) => fmt::Display::fmt(shared, f),
            Self::Panicked(p) => fmt::Display::fmt(p, f),
            Self::Backend(b) => write!(f, "backend failed: {b}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    /// The chain continues through every level: a shared error's source is the error it
    /// shares, the bottom service's error is followed by its own `source()`.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rejected(_) => None,
            Self::Inner(e) => e.source(),
            Self::Shared(shared) => Some(&**shared),
            Self::Panicked(_) => None,
            Self::Backend(b) => Some(&**b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectKind;

    #[derive(Debug, PartialEq)]
    struct Io(&'static str);
    impl fmt::Display for Io {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Io {}

    #[test]
    fn accessors_look_through_shared_errors() {
        let refused = Error::<Io>::Rejected(
            Rejected::new(RejectKind::QueueFull).with_retry_after(Duration::from_secs(1)),
        );
        let shared = Error::Shared(Arc::new(Error::Shared(Arc::new(refused))));
        assert_eq!(shared.rejection().unwrap().kind, RejectKind::QueueFull);
        assert_eq!(shared.retry_after(), Some(Duration::from_secs(1)));
        assert!(shared.inner().is_none());

        let inner = Error::Shared(Arc::new(Error::Inner(Io("down"))));
        assert_eq!(inner.inner(), Some(&Io("down")));
        assert_eq!(inner.to_string(), "down");
        assert_eq!(inner.into_inner(), Some(Io("down")));
    }

    #[test]
    fn source_chain_reaches_the_shared_error() {
        use std::error::Error as _;
        let shared: Error<Io> = Error::Shared(Arc::new(Error::Inner(Io("root"))));
        let next = shared.source().expect("a shared error has a source");
        assert_eq!(next.to_string(), "root");
    }
}
