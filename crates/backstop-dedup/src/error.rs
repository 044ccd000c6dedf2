use backstop_core::{Panicked, Rejected};

/// Why a deduplicated call did not produce a value.
///
/// Every caller that shared an execution receives a clone of the same error, so the
/// leader's failure is never hidden from its followers (unlike `async_singleflight`,
/// whose followers got `Err(None)`). A follower that gave up waiting, or a distributed
/// group whose store is down, is a refusal: [`DedupError::Rejected`] with
/// [`RejectKind::Timeout`](backstop_core::RejectKind::Timeout) or
/// [`RejectKind::Unavailable`](backstop_core::RejectKind::Unavailable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DedupError<E> {
    /// The work returned this error.
    #[error("deduplicated work failed: {0}")]
    Inner(E),
    /// The work panicked; the key is cleared, so the next call starts a fresh execution.
    #[error("deduplicated work panicked: {0}")]
    Panicked(Panicked),
    /// This caller got no result: a follower stopped waiting after its timeout (the
    /// execution goes on for the callers still waiting), or (only from a
    /// `DistributedGroup` configured to fail when Redis does) the coordination store
    /// could not be reached in time.
    #[error(transparent)]
    Rejected(Rejected),
    /// Only from a `DistributedGroup`: the Redis deployment does not match its
    /// configuration (a standalone URL at a cluster node or a replica, cluster seeds at a
    /// standalone server, an unknown Sentinel master, a wrong TLS CA, refused credentials).
    /// Returned under every failure policy: no process runs the work unleased, and no
    /// retry fixes it.
    #[cfg(feature = "redis")]
    #[error("distributed dedup is misconfigured: {0}")]
    Misconfigured(backstop_redis::Misconfiguration),
}

impl<E> DedupError<E> {
    /// The work's own error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The deployment mistake, if a `DistributedGroup` met one (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn misconfiguration(&self) -> Option<&backstop_redis::Misconfiguration> {
        match self {
            Self::Misconfigured(m) => Some(m),
            _ => None,
        }
    }

    /// The refusal, if this caller was refused rather than given the work's outcome.
    pub fn rejection(&self) -> Option<&Rejected> {
        match self {
            Self::Rejected(r) => Some(r),
            _ => None,
        }
    }
}
