//! TLS material for every topology (feature `tls`, on redis-rs's rustls support).

use crate::config::RedisConfig;
use crate::error::Misconfiguration;
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::SentinelClientBuilder;
use redis::{Client, IntoConnectionInfo};

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

/// The data nodes' credentials from the configuration, which replace those of the URLs.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

impl Credentials {
    pub(crate) fn of(config: &RedisConfig) -> Self {
        Self {
            username: config.username.clone(),
            password: config.password.clone(),
        }
    }

    /// `url` with these credentials in place of its own, when any are configured.
    pub(crate) fn apply(&self, url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
        let info = url.into_connection_info()?;
        let Some(password) = &self.password else {
            return Ok(info);
        };
        let mut settings = info.redis_settings().clone().set_password(password);
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        Ok(info.set_redis_settings(settings))
    }
}

/// A client for one URL with `credentials`, trusting `certificates` when given.
pub(crate) fn client(
    url: &str,
    certificates: Option<&Certificates>,
    credentials: &Credentials,
) -> redis::RedisResult<Client> {
    let info = credentials.apply(url)?;
    #[cfg(feature = "tls")]
    if let Some(certs) = certificates {
        return Client::build_with_tls(info, certs.clone());
    }
    #[cfg(not(feature = "tls"))]
    let _ = certificates;
    Client::open(info)
}

/// A cluster builder with `credentials`, trusting `certificates` when given.
pub(crate) fn cluster(
    mut builder: ClusterClientBuilder,
    certificates: Option<&Certificates>,
    credentials: &Credentials,
) -> ClusterClientBuilder {
    if let Some(password) = &credentials.password {
        builder = builder.password(password);
        if let Some(username) = &credentials.username {
            builder = builder.username(username);
        }
    }
    #[cfg(feature = "tls")]
    if let Some(certs) = certificates {
        return builder.certs(certs.clone());
    }
    #[cfg(not(feature = "tls"))]
    let _ = certificates;
    builder
}

/// A Sentinel client for `master` through `sentinels` (URLs): the primary it names is
/// reached with `credentials`, over TLS trusting `certificates` when `tls` is set (whatever
/// the Sentinels' own scheme), and the Sentinels over TLS when their URLs say `rediss://`.
pub(crate) fn sentinel(
    sentinels: &[String],
    master: &str,
    tls: bool,
    certificates: Option<&Certificates>,
    credentials: &Credentials,
) -> redis::RedisResult<redis::sentinel::SentinelClient> {
    let mut addresses = Vec::with_capacity(sentinels.len());
    let mut encrypted = 0;
    for url in sentinels {
        let info = url.as_str().into_connection_info()?;
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            encrypted += 1;
        }
        addresses.push(info.addr().clone());
    }
    if encrypted != 0 && encrypted != addresses.len() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "either every Sentinel is reached over TLS (rediss://) or none is",
        )));
    }
    let mut builder = SentinelClientBuilder::new(
        addresses,
        master,
        redis::sentinel::SentinelServerType::Master,
    )?;
    if let Some(password) = &credentials.password {
        builder = builder.set_client_to_redis_password(password);
        if let Some(username) = &credentials.username {
            builder = builder.set_client_to_redis_username(username);
        }
    }
    if tls {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
    }
    #[cfg(feature = "tls")]
    if let Some(certs) = certificates {
        if tls {
            builder = builder.set_client_to_redis_certificates(certs.clone());
        }
        if encrypted != 0 {
            builder = builder.set_client_to_sentinel_certificates(certs.clone());
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = (certificates, encrypted);
    builder.build()
}
