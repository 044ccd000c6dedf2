//! Outages versus mistakes: what a failed Redis call means for the caller.

use backstop_core::ConfigError;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use std::time::Duration;

/// Why a Redis call failed.
///
/// Callers apply their failure policy (fail open, fail closed, a local fallback) to
/// [`Unavailable`](Self::Unavailable) and [`TimedOut`](Self::TimedOut) only. A
/// [`Misconfigured`](Self::Misconfigured) deployment is reported as itself: a policy
/// would hide it for ever.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RedisFault {
    /// Redis could not be reached or failed (connection refused or dropped, failover in
    /// progress, cluster down, server error); the caller's failure policy decides.
    #[error("redis unavailable: {0}")]
    Unavailable(RedisError),
    /// Redis did not answer within the call's timeout; the caller's failure policy decides.
    #[error("redis did not answer within {0:?}")]
    TimedOut(Duration),
    /// The deployment does not match the configuration; no retry or policy will fix it.
    #[error("redis is misconfigured: {0}")]
    Misconfigured(Misconfiguration),
}

/// Two faults are equal when they are the same failure: same variant, and for
/// [`Unavailable`](RedisFault::Unavailable) the same error kind and message (redis-rs's
/// error has no equality of its own).
impl PartialEq for RedisFault {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Unavailable(a), Self::Unavailable(b)) => {
                a.kind() == b.kind() && a.to_string() == b.to_string()
            }
            (Self::TimedOut(a), Self::TimedOut(b)) => a == b,
            (Self::Misconfigured(a), Self::Misconfigured(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for RedisFault {}

impl RedisFault {
    /// Whether this is an outage the caller's failure policy should handle (not a mistake).
    pub fn is_outage(&self) -> bool {
        !matches!(self, Self::Misconfigured(_))
    }

    /// The mistake, when this is one.
    pub fn misconfiguration(&self) -> Option<&Misconfiguration> {
        match self {
            Self::Misconfigured(m) => Some(m),
            _ => None,
        }
    }
}

/// A deployment that does not match its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misconfiguration {
    /// The configuration itself is invalid (the error names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A standalone `url` reaches a Redis Cluster node; configure `cluster_nodes`.
    #[error("{address} is a Redis Cluster node; configure `cluster_nodes` instead of `url`")]
    ClusterNode {
        /// The address configured as standalone.
        address: String,
    },
    /// `cluster_nodes` reach a server without cluster support; configure `url`.
    #[error("{address} has cluster support disabled; configure `url` instead of `cluster_nodes`")]
    NotACluster {
        /// The seed that answered.
        address: String,
    },
    /// The server is a replica where a writable primary is needed.
    #[error("{address} is a read-only replica; writes need the primary")]
    Replica {
        /// The replica's address.
        address: String,
    },
    /// A command or script touched keys of several cluster slots.
    #[error("keys of one command are in different cluster slots: {0}")]
    CrossSlot(String),
    /// The credentials were refused.
    #[error("redis refused the credentials: {0}")]
    Auth(String),
    /// The TLS setup does not match the server (wrong CA, certificate, or a plain
    /// connection to a TLS port).
    #[error("TLS setup does not match the server: {0}")]
    Tls(String),
    /// Sentinel does not know the configured master name.
    #[error("sentinel knows no master named {0:?}")]
    UnknownMaster(String),
}

/// Sorts a redis-rs error into an outage or a mistake. `standalone` says whether the
/// connection was configured as one server (so `MOVED` means a cluster node and
/// `READONLY` a replica), rather than a cluster or Sentinel, which handle those.
pub(crate) fn classify(error: RedisError, address: &str, standalone: bool) -> RedisFault {
    let detail = error.to_string();
    let misconfigured = match error.kind() {
        ErrorKind::Server(ServerErrorKind::CrossSlot) => Some(Misconfiguration::CrossSlot(detail)),
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) if standalone => {
            Some(Misconfiguration::ClusterNode {
                address: address.to_string(),
            })
        }
        ErrorKind::Server(ServerErrorKind::ReadOnly) if standalone => {
            Some(Misconfiguration::Replica {
                address: address.to_string(),
            })
        }
        ErrorKind::AuthenticationFailed => Some(Misconfiguration::Auth(detail)),
        ErrorKind::InvalidClientConfig => Some(Misconfiguration::Config(ConfigError::new(
            "url",
            format!("is refused by the client: {detail}"),
        ))),
        _ if is_auth(&detail) => Some(Misconfiguration::Auth(detail)),
        _ if is_tls(&detail) => Some(Misconfiguration::Tls(detail)),
        _ if detail.contains("cluster support disabled") => Some(Misconfiguration::NotACluster {
            address: address.to_string(),
        }),
        _ => None,
    };
    match misconfigured {
        Some(m) => RedisFault::Misconfigured(m),
        None => RedisFault::Unavailable(error),
    }
}

fn is_auth(detail: &str) -> bool {
    detail.contains("NOAUTH") || detail.contains("WRONGPASS")
}

fn is_tls(detail: &str) -> bool {
    // rustls reports a failed verification as an I/O error with these words.
    [
        "certificate",
        "Certificate",
        "UnknownIssuer",
        "TLS feature is not enabled",
        "tls handshake",
    ]
    .iter()
    .any(|needle| detail.contains(needle))
}
