//! The `[redis]` section: where Redis is and how to talk to it.

use backstop_core::config::{
    ConfigError, Validate, ensure, ensure_at_most, ensure_duration_at_most,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach Redis: exactly one of `url` (one server), `cluster_nodes` (a Redis
/// Cluster's seed nodes) or `sentinel` (a primary found through Sentinel).
///
/// ```
/// use backstop_redis::RedisConfig;
/// use backstop_core::config::Validate;
///
/// let config: RedisConfig = serde_json::from_str(
///     r#"{"sentinel": {"master": "cache", "nodes": ["10.0.0.1:26379", "10.0.0.2:26379"]},
///         "timeout": "250ms"}"#,
/// )
/// .unwrap();
/// assert!(config.validate().is_ok());
///
/// let both = RedisConfig {
///     url: Some("redis://127.0.0.1:6379".into()),
///     cluster_nodes: vec!["127.0.0.1:7000".into()],
///     ..RedisConfig::default()
/// };
/// assert_eq!(both.validate().unwrap_err().field(), "cluster_nodes");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// One server: `redis://host:port/db` (or `rediss://` for TLS). Pointing it at a
    /// cluster node or a replica is reported as a misconfiguration at connect.
    pub url: Option<String>,
    /// A Redis Cluster's seed nodes (`host:port` or URLs); the client discovers the rest
    /// and follows slot moves and failovers.
    pub cluster_nodes: Vec<String>,
    /// A primary behind Sentinel, re-resolved on every reconnect.
    pub sentinel: Option<SentinelConfig>,
    /// TLS settings; present means TLS for `host:port` nodes (a `rediss://` URL implies
    /// TLS on its own) and for the primary Sentinel names. Sentinels written as
    /// `redis://host:port` stay plain, so TLS data nodes can sit behind plain Sentinels.
    /// Needs the crate feature `tls`.
    pub tls: Option<TlsConfig>,
    /// The ACL user of every data node (Redis 6+); when set, it replaces any user written
    /// in the URLs. Needs `password`.
    pub username: Option<String>,
    /// The password of every data node (`AUTH`); when set, it replaces any password written
    /// in the URLs. Sentinels keep the credentials of their own URLs. Never printed by
    /// `Debug`.
    pub password: Option<String>,
    /// Put in front of every key (and channel) the primitives on this connection write,
    /// so several applications or environments can share one Redis: `""` by default, at
    /// most [`RedisConfig::MAX_NAMESPACE_LEN`] bytes, no braces (they would move a key's
    /// hash tag) and no `SCAN … MATCH` glob characters.
    pub namespace: String,
    /// The most one command may take on the wire (at most [`RedisConfig::MAX_TIMEOUT`]);
    /// each primitive bounds its calls further by its own timeout.
    #[serde(with = "backstop_core::duration::human")]
    pub timeout: Duration,
    /// The most opening one connection may take (at most [`RedisConfig::MAX_TIMEOUT`]).
    #[serde(with = "backstop_core::duration::human")]
    pub connect_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            cluster_nodes: Vec::new(),
            sentinel: None,
            tls: None,
            username: None,
            password: None,
            namespace: String::new(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// Every field, with the password redacted.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("cluster_nodes", &self.cluster_nodes)
            .field("sentinel", &self.sentinel)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// `redis://user:secret@host` without the secret.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A primary found through Sentinel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelConfig {
    /// The master name the Sentinels monitor.
    pub master: String,
    /// The Sentinels' addresses (`host:port` or `redis://` URLs).
    pub nodes: Vec<String>,
}

impl SentinelConfig {
    /// Reads `master@host:port,host:port,…` (the form of the `REDIS_SENTINEL` variable).
    ///
    /// ```
    /// use backstop_redis::SentinelConfig;
    ///
    /// let s = SentinelConfig::parse("cache@10.0.0.1:26379,10.0.0.2:26379").unwrap();
    /// assert_eq!(s.master, "cache");
    /// assert_eq!(s.nodes.len(), 2);
    /// assert!(SentinelConfig::parse("no-master-name").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let (master, nodes) = spec
            .split_once('@')
            .ok_or_else(|| ConfigError::new("sentinel", "must read master@host:port,…"))?;
        let config = Self {
            master: master.to_string(),
            nodes: nodes
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        };
        config.validate().map_err(|e| e.within("sentinel"))?;
        Ok(config)
    }
}

impl Validate for SentinelConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.master.is_empty(), "master", "must not be empty")?;
        ensure(
            !self.nodes.is_empty(),
            "nodes",
            "must name at least one Sentinel",
        )?;
        check_nodes("nodes", self.nodes.iter())
    }
}

/// TLS settings: a custom CA and an optional client certificate (files in PEM).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA that signed the server's certificate; the system's roots when absent.
    pub ca: Option<PathBuf>,
    /// A client certificate, for servers that require one (with `key`).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (with `cert`).
    pub key: Option<PathBuf>,
}

impl Validate for TlsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.cert.is_some() == self.key.is_some(),
            if self.cert.is_some() { "key" } else { "cert" },
            "must be given together with the other of `cert` and `key`",
        )?;
        ensure(
            cfg!(feature = "tls"),
            "tls",
            "needs backstop-redis's `tls` feature (the umbrella's `redis-tls`)",
        )
    }
}

impl RedisConfig {
    /// The longest `timeout` and `connect_timeout`: a Redis call slower than this is an
    /// outage.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
    /// The most `cluster_nodes` or Sentinel `nodes`.
    pub const MAX_NODES: usize = 1_000;
    /// The longest `namespace`, in bytes.
    pub const MAX_NAMESPACE_LEN: usize = 256;

    /// One server at `url`.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// A cluster reached through `nodes` (`host:port` seeds).
    pub fn cluster<I: IntoIterator<Item = S>, S: Into<String>>(nodes: I) -> Self {
        Self {
            cluster_nodes: nodes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// A primary behind Sentinel.
    pub fn sentinel(sentinel: SentinelConfig) -> Self {
        Self {
            sentinel: Some(sentinel),
            ..Self::default()
        }
    }

    /// Sets the TLS settings.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the ACL user and password of every data node.
    pub fn with_credentials(
        mut self,
        username: Option<impl Into<String>>,
        password: impl Into<String>,
    ) -> Self {
        self.username = username.map(Into::into);
        self.password = Some(password.into());
        self
    }

    /// Sets the namespace every key and channel starts with.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the per-command timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A node as the URL redis-rs reads: `host:port` gains `redis://` (or `rediss://` when
    /// `tls` is set).
    pub(crate) fn node_url(&self, node: &str) -> String {
        if node.contains("://") {
            node.to_string()
        } else if self.tls.is_some() {
            format!("rediss://{node}")
        } else {
            format!("redis://{node}")
        }
    }
}

impl Validate for RedisConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let set = [
            ("url", self.url.is_some()),
            ("cluster_nodes", !self.cluster_nodes.is_empty()),
            ("sentinel", self.sentinel.is_some()),
        ];
        let mut chosen = set.iter().filter(|(_, on)| *on).map(|(name, _)| *name);
        let first = chosen.next().ok_or_else(|| {
            ConfigError::new("url", "or `cluster_nodes` or `sentinel` must be set")
        })?;
        if let Some(second) = chosen.next() {
            return Err(ConfigError::new(
                second,
                format!("must not be set together with `{first}`: pick one topology"),
            ));
        }
        if let Some(url) = &self.url {
            check_node(url, true).map_err(|rule| ConfigError::new("url", rule))?;
        }
        check_nodes(
            "cluster_nodes",
            self.cluster_nodes.iter().map(|node| self.node_url(node)),
        )?;
        if let Some(sentinel) = &self.sentinel {
            sentinel.validate().map_err(|e| e.within("sentinel"))?;
        }
        if let Some(tls) = &self.tls {
            tls.validate().map_err(|e| e.within("tls"))?;
        }
        ensure(
            self.username.is_none() || self.password.is_some(),
            "password",
            "must be set when `username` is",
        )?;
        ensure(
            self.username.as_ref().is_none_or(|u| !u.is_empty()),
            "username",
            "must not be empty (leave it out for the default user)",
        )?;
        ensure_at_most(
            "namespace",
            self.namespace.len() as u64,
            Self::MAX_NAMESPACE_LEN as u64,
        )?;
        ensure(
            crate::key::is_safe_prefix(&self.namespace),
            "namespace",
            "must not contain braces or glob characters (`*`, `?`, `[`, `]`, `\\`)",
        )?;
        for (field, value) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            ensure(!value.is_zero(), field, "must be greater than zero")?;
            ensure_duration_at_most(field, value, Self::MAX_TIMEOUT)?;
        }
        Ok(())
    }
}

/// Checks the addresses of a cluster or of Sentinels, listed under `field`: at most
/// [`RedisConfig::MAX_NODES`] of them, each a valid address of one node.
fn check_nodes(
    field: &str,
    nodes: impl ExactSizeIterator<Item = impl AsRef<str>>,
) -> Result<(), ConfigError> {
    ensure_at_most(field, nodes.len() as u64, RedisConfig::MAX_NODES as u64)?;
    for (i, node) in nodes.enumerate() {
        check_node(node.as_ref(), false)
            .map_err(|rule| ConfigError::new(format!("{field}[{i}]"), rule))?;
    }
    Ok(())
}

/// Checks one address; `standalone` says whether it is the `url` of one server.
fn check_node(node: &str, standalone: bool) -> Result<(), String> {
    if node.starts_with("redis+sentinel://") || node.starts_with("redis-sentinel://") {
        return Err("is a Sentinel URL: configure `sentinel { master, nodes }` instead".into());
    }
    if node.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err("is a TLS URL, which needs backstop-redis's `tls` feature".into());
    }
    let url = if node.contains("://") {
        node.to_string()
    } else if standalone {
        return Err("must be a URL such as redis://host:6379 or rediss://host:6380".into());
    } else {
        format!("redis://{node}")
    };
    redis::parse_redis_url(&url)
        .map(drop)
        .ok_or_else(|| format!("is not a valid Redis address: {node:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(config: RedisConfig) -> String {
        config.validate().unwrap_err().field().to_string()
    }

    #[test]
    fn exactly_one_topology() {
        assert_eq!(field(RedisConfig::default()), "url");
        let mut both = RedisConfig::url("redis://127.0.0.1:6379");
        both.sentinel = Some(SentinelConfig {
            master: "m".into(),
            nodes: vec!["127.0.0.1:26379".into()],
        });
        assert_eq!(field(both), "sentinel");
        assert!(
            RedisConfig::url("redis://127.0.0.1:6379")
                .validate()
                .is_ok()
        );
        assert!(RedisConfig::cluster(["127.0.0.1:7000"]).validate().is_ok());
    }

    #[test]
    fn bad_addresses_name_their_field() {
        assert_eq!(field(RedisConfig::url("127.0.0.1:6379")), "url");
        assert_eq!(field(RedisConfig::url("redis+sentinel://h:26379/m")), "url");
        assert_eq!(
            field(RedisConfig::cluster([
                "127.0.0.1:7000",
                "redis://:::bad url"
            ])),
            "cluster_nodes[1]"
        );
        let sentinel = RedisConfig::sentinel(SentinelConfig {
            master: String::new(),
            nodes: vec!["h:1".into()],
        });
        assert_eq!(field(sentinel), "sentinel.master");
        let sentinel = RedisConfig::sentinel(SentinelConfig {
            master: "m".into(),
            nodes: vec![],
        });
        assert_eq!(field(sentinel), "sentinel.nodes");
    }

    #[test]
    fn timeouts_are_bounded() {
        let base = || RedisConfig::url("redis://127.0.0.1:6379");
        assert_eq!(field(base().with_timeout(Duration::ZERO)), "timeout");
        assert_eq!(
            field(base().with_timeout(Duration::from_secs(3600))),
            "timeout"
        );
        let slow_connect = RedisConfig {
            connect_timeout: Duration::MAX,
            ..base()
        };
        assert_eq!(field(slow_connect), "connect_timeout");
        let too_many = RedisConfig::cluster((0..2_000).map(|p| format!("127.0.0.1:{p}")));
        assert_eq!(field(too_many), "cluster_nodes");
    }

    #[test]
    fn credentials_and_namespace_are_checked_and_the_password_never_printed() {
        let base = || RedisConfig::url("redis://app:hunter2@127.0.0.1:6379");
        assert_eq!(
            field(RedisConfig {
                username: Some("app".into()),
                ..base()
            }),
            "password"
        );
        assert_eq!(field(base().with_credentials(Some(""), "pw")), "username");
        for bad in ["app{", "app*", "a?", "[x]", "a\\b"] {
            assert_eq!(field(base().with_namespace(bad)), "namespace", "{bad:?}");
        }
        assert_eq!(field(base().with_namespace("n".repeat(300))), "namespace");
        let good = base()
            .with_credentials(Some("app"), "s3cret-pw")
            .with_namespace("staging:");
        assert!(good.validate().is_ok());
        let printed = format!("{good:?}");
        assert!(!printed.contains("s3cret-pw"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("staging:"), "{printed}");
        let read: RedisConfig = serde_json::from_str(
            r#"{"url":"redis://127.0.0.1:6379","username":"app","password":"pw","namespace":"prod:"}"#,
        )
        .unwrap();
        assert_eq!(read.namespace, "prod:");
        assert_eq!(read.password.as_deref(), Some("pw"));
    }

    #[test]
    fn tls_needs_cert_and_key_together() {
        let half = RedisConfig::url("redis://127.0.0.1:6379").with_tls(TlsConfig {
            cert: Some("client.crt".into()),
            ..TlsConfig::default()
        });
        assert_eq!(field(half), "tls.key");
    }

    #[test]
    fn reads_the_section() {
        let config: RedisConfig = serde_json::from_str(
            r#"{"cluster_nodes":["127.0.0.1:7000","127.0.0.1:7001"],"timeout":"150ms","connect_timeout":"2s"}"#,
        )
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(150));
        assert_eq!(
            config.node_url(&config.cluster_nodes[0]),
            "redis://127.0.0.1:7000"
        );
        assert!(serde_json::from_str::<RedisConfig>(r#"{"nodes":[]}"#).is_err());
    }
}
