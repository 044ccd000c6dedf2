//! TLS material for every topology (feature `tls`, on redis-rs's rustls support).

use crate::config::RedisConfig;
use crate::error::Misconfiguration;
use redis::Client;
use redis::cluster::ClusterClientBuilder;

/// What a client trusts and presents.
#[cfg(feature = "tls")]
pub(crate) type Certificates = redis::TlsCertificates;
/// Without the `tls` feature there is nothing to hold (validation refuses `tls`).
#[cfg(not(feature = "tls"))]
pub(crate) type Certificates = ();

/// Reads the CA and client certificate files of `config.tls`, naming the file that fails.
#[cfg(feature = "tls")]
pub(crate) fn certificates(config: &RedisConfig) -> Result<Option<Certificates>, Misconfiguration> {
    // rustls needs one process-wide crypto provider, and panics when several are compiled
    // in and none is installed; install ring's unless the application installed its own
    // first (then this is a no-op). ring is deprecated for lacking post-quantum key
    // exchange, but aws-lc-rs, the alternative, adds a large C build to every user's.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Misconfiguration::Tls(format!("tls.{field}: cannot read {}: {e}", path.display()))
        })
    };
    let root_cert = tls.ca.as_deref().map(|p| read("ca", p)).transpose()?;
    let client_tls = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("cert", cert)?,
            client_key: read("key", key)?,
        }),
        _ => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// Without the `tls` feature: nothing to read.
#[cfg(not(feature = "tls"))]
pub(crate) fn certificates(_: &RedisConfig) -> Result<Option<Certificates>, Misconfiguration> {
    Ok(None)
}

/// A client for one URL, trusting `certificates` when given.
pub(crate) fn client(url: &str, certificates: Option<&Certificates>) -> redis::RedisResult<Client> {
    #[cfg(feature = "tls")]
    if let Some(certs) = certificates {
        return Client::build_with_tls(url, certs.clone());
    }
    #[cfg(not(feature = "tls"))]
    let _ = certificates;
    Client::open(url)
}

/// A cluster builder trusting `certificates` when given.
pub(crate) fn cluster(
    builder: ClusterClientBuilder,
    certificates: Option<&Certificates>,
) -> ClusterClientBuilder {
    #[cfg(feature = "tls")]
    if let Some(certs) = certificates {
        return builder.certs(certs.clone());
    }
    #[cfg(not(feature = "tls"))]
    let _ = certificates;
    builder
}
