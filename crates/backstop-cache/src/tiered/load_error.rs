//! Why a load produced no value, typed for the caller, and how one load's failure reaches
//! every caller that shared it.
//!
//! Loads are coalesced by one `backstop_dedup::Group` per cache, whatever the loader's
//! error type, so inside the group the loader's error travels as `Arc<dyn Any>`; the group
//! is keyed by the error's `TypeId` as well as the key (moka keys its waiters the same
//! way), so every caller of a flight asked for the same `E` and the downcast back to
//! `Arc<E>` cannot miss.

use backstop_core::{Error, Panicked, RejectKind, Rejected, StackError};
use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

/// Why `get_or_load` produced no value. Every caller that shared one load receives the
/// same error: the loader's own `E`, shared as an `Arc`.
///
/// ```
/// use backstop_cache::{LoadError, TieredCache};
///
/// #[derive(Debug)]
/// struct ProviderDown(u16);
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let cache: TieredCache<String, String> = TieredCache::in_memory(100)
///     .unwrap();
/// let failed = cache
///     .get_or_load(&"q".to_string(), || async { Err::<Option<String>, _>(ProviderDown(503)) })
///     .await;
/// match failed {
///     Err(LoadError::Loader(error)) => assert_eq!(error.0, 503), // typed, no downcast
///     other => panic!("unexpected {other:?}"),
/// }
/// # });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader returned this error.
    Loader(Arc<E>),
    /// The load was refused or cut off: [`RejectKind::Timeout`] when the loader ran
    /// longer than `loader_timeout`.
    Rejected(Rejected),
    /// The loader panicked; the panic was contained and the key released.
    Panicked(Panicked),
}

impl<E> Clone for LoadError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Loader(error) => Self::Loader(Arc::clone(error)),
            Self::Rejected(rejected) => Self::Rejected(*rejected),
            Self::Panicked(panicked) => Self::Panicked(panicked.clone()),
        }
    }
}

impl<E> LoadError<E> {
    /// The refusal, if the load was refused or timed out.
    pub fn rejection(&self) -> Option<&Rejected> {
        match self {
            Self::Rejected(rejected) => Some(rejected),
            _ => None,
        }
    }

    /// The loader's error, if that is what failed.
    pub fn loader_error(&self) -> Option<&E> {
        match self {
            Self::Loader(error) => Some(error),
            _ => None,
        }
    }
}

impl<E: StackError> LoadError<E> {
    /// This error as the stack error `E` itself: the loader's shared error through
    /// [`StackError::shared`], a refusal through [`StackError::rejected`], a panic through
    /// [`StackError::panicked`]. What the cache layer returns.
    pub fn into_stack_error(self) -> E {
        match self {
            Self::Loader(error) => match Arc::try_unwrap(error) {
                Ok(error) => error,
                Err(shared) => E::shared(shared),
            },
            Self::Rejected(rejected) => E::rejected(rejected),
            Self::Panicked(panicked) => E::panicked(panicked),
        }
    }
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loader(error) => write!(f, "cache loader failed: {error}"),
            Self::Rejected(rejected) => write!(f, "cache load {rejected}"),
            Self::Panicked(panicked) => fmt::Display::fmt(panicked, f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The message already names the loader's error, a refusal or a panic; the chain
        // goes on with what the loader's error says caused it.
        match self {
            Self::Loader(error) => error.source(),
            Self::Rejected(_) | Self::Panicked(_) => None,
        }
    }
}

/// The loader's error inside the coalescing group, whatever its type.
#[derive(Clone)]
pub(crate) struct AnyError(Arc<dyn Any + Send + Sync>);

/// For logs: what failed, without needing the loader's error to be `Display`.
impl fmt::Display for AnyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the loader returned an error")
    }
}

impl fmt::Debug for AnyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyError({self})")
    }
}

/// A load's failure inside the coalescing group: the stack error over the loader's
/// type-erased error, so refusals, panics and sharing are core's own variants.
pub(crate) type Failure = Error<AnyError>;

/// The loader's error as a group failure.
pub(crate) fn loader_failure<E: Send + Sync + 'static>(error: E) -> Failure {
    Error::Inner(AnyError(Arc::new(error)))
}

/// The caller's typed error. `E` is the type the flight was keyed by.
pub(crate) fn typed<E: Send + Sync + 'static>(failure: Failure) -> LoadError<E> {
    match failure {
        Error::Inner(AnyError(error)) => match error.downcast::<E>() {
            Ok(error) => LoadError::Loader(error),
            // Unreachable while flights are keyed by `TypeId::of::<E>()`; a refusal is
            // still a typed answer rather than a panic.
            Err(_) => LoadError::Rejected(Rejected::new(RejectKind::Unavailable)),
        },
        Error::Rejected(rejected) => LoadError::Rejected(rejected),
        Error::Panicked(panicked) => LoadError::Panicked(panicked),
        Error::Shared(shared) => typed(Arc::unwrap_or_clone(shared)),
        // A backend failure: only a Redis-backed coordination store fails this way; the
        // cache's own group has none, so this is a store being unavailable, not the loader.
        _ => LoadError::Rejected(Rejected::new(RejectKind::Unavailable)),
    }
}

/// A flight's key: the loader's error type and the cache key.
pub(crate) type FlightKey = (TypeId, String);

/// The loads in flight of one cache.
pub(crate) type Loads<V> = backstop_dedup::Group<FlightKey, Option<V>, Failure>;
