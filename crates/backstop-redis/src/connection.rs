//! The connection handle every Backstop crate shares.

use crate::config::RedisConfig;
use crate::error::{Misconfiguration, RedisFault, classify};
use crate::tls::{Certificates, Credentials};
use backstop_core::config::Validate;
use parking_lot::RwLock;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Which kind of deployment a [`RedisConnection`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server.
    Standalone,
    /// A Redis Cluster.
    Cluster,
    /// A primary found through Sentinel.
    Sentinel,
}

/// A cheap-clone handle to Redis, whatever the topology: clones share one multiplexed
/// connection (a cluster connection holds one per node).
///
/// It connects on first use and checks what it reached: a standalone `url` at a cluster
/// node or at a replica is a [`Misconfiguration`], reported by every call until fixed. It
/// reconnects by itself: a standalone connection retries, a cluster follows `MOVED` and
/// refreshes its slot map after a failover, and a Sentinel connection that breaks or meets
/// `READONLY` (its primary was demoted) asks the Sentinels for the current primary on the
/// next call.
///
/// ```no_run
/// use backstop_redis::{RedisConfig, RedisConnection};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Exactly one of `url`, `cluster_nodes` or `sentinel`; every Backstop Redis user
/// // (limiter, dedup, cache tier, pool manager) takes this one handle.
/// let config = RedisConfig { url: Some("redis://127.0.0.1:6379".into()), ..Default::default() };
/// let redis = RedisConnection::connect(&config).await?;
/// let pong: String = redis
///     .run(|mut conn| async move { redis::cmd("PING").query_async(&mut conn).await })
///     .await?;
/// assert_eq!(pong, "PONG");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisConnection {
    shared: Arc<Shared>,
}

struct Shared {
    target: Target,
    topology: Topology,
    /// For error messages: the URL, the seeds or the master name.
    address: String,
    timeout: Duration,
    connect_timeout: Duration,
    current: RwLock<Option<RedisConn>>,
    /// One connect at a time; the others wait for it and share its result.
    connecting: tokio::sync::Mutex<()>,
    /// A mistake found at connect, reported by every call after it.
    misconfigured: RwLock<Option<Misconfiguration>>,
    /// Seed URLs: the cluster's (for its subscriber connection) or the Sentinels'.
    seeds: Vec<String>,
    /// The Sentinel master name.
    master: Option<String>,
    certificates: Option<Certificates>,
    credentials: Credentials,
    namespace: Box<str>,
}

enum Target {
    Standalone(Client),
    Cluster(ClusterClient),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("topology", &self.shared.topology)
            .field("address", &self.shared.address)
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

/// One live connection, as [`RedisConnection::run`] hands it to its closure: use it with
/// any redis-rs command, script or pipeline (it is a [`ConnectionLike`]).
#[derive(Clone)]
pub struct RedisConn(Conn);

#[derive(Clone)]
enum Conn {
    Managed(ConnectionManager),
    Cluster(ClusterConnection),
    Plain(MultiplexedConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Conn::Managed(_) => "standalone",
            Conn::Cluster(_) => "cluster",
            Conn::Plain(_) => "sentinel primary",
        };
        f.debug_tuple("RedisConn").field(&kind).finish()
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Conn::Managed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Plain(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Managed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
        }
    }
}

/// One server to `SCAN`: the only server, or one cluster primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanNode {
    /// `host:port` of a cluster primary; `None` for the only server.
    address: Option<(String, u16)>,
}

impl ScanNode {
    /// `host:port`, when this is a cluster primary.
    pub fn address(&self) -> Option<String> {
        self.address.as_ref().map(|(h, p)| format!("{h}:{p}"))
    }
}

impl From<Client> for RedisConnection {
    /// A standalone connection on an existing client, with default timeouts.
    fn from(client: Client) -> Self {
        let address = client.get_connection_info().addr().to_string();
        let defaults = RedisConfig::default();
        Self::from_target(
            Target::Standalone(client),
            Topology::Standalone,
            address,
            &defaults,
            Vec::new(),
            None,
        )
    }
}

impl RedisConnection {
    /// A handle for `config`, validated (the error names the field); it connects on first
    /// use. TLS files are read here.
    pub fn new(config: &RedisConfig) -> Result<Self, Misconfiguration> {
        config.validate()?;
        let certificates = crate::tls::certificates(config)?;
        let seeds: Vec<String> = config
            .cluster_nodes
            .iter()
            .map(|n| config.node_url(n))
            .collect();
        let invalid = |field: &str, e: redis::RedisError| {
            Misconfiguration::Config(backstop_core::ConfigError::new(
                field,
                format!("is refused by the client: {e}"),
            ))
        };
        let credentials = Credentials::of(config);
        let (target, topology, address) = if let Some(url) = &config.url {
            let client = crate::tls::client(url, certificates.as_ref(), &credentials)
                .map_err(|e| invalid("url", e))?;
            let address = client.get_connection_info().addr().to_string();
            (Target::Standalone(client), Topology::Standalone, address)
        } else if !config.cluster_nodes.is_empty() {
            let builder = ClusterClient::builder(seeds.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.timeout)
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(500);
            let builder = crate::tls::cluster(builder, certificates.as_ref(), &credentials);
            let client = builder.build().map_err(|e| invalid("cluster_nodes", e))?;
            (Target::Cluster(client), Topology::Cluster, seeds.join(","))
        } else if let Some(sentinel) = &config.sentinel {
            let nodes: Vec<String> = sentinel.nodes.iter().map(|n| config.node_url(n)).collect();
            let client = crate::tls::sentinel(
                &nodes,
                &sentinel.master,
                config.tls.is_some(),
                certificates.as_ref(),
                &credentials,
            )
            .map_err(|e| invalid("sentinel", e))?;
            (
                Target::Sentinel(tokio::sync::Mutex::new(client)),
                Topology::Sentinel,
                format!("{}@{}", sentinel.master, sentinel.nodes.join(",")),
            )
        } else {
            unreachable!("validation requires one topology")
        };
        let master = config.sentinel.as_ref().map(|s| s.master.clone());
        let seeds = match &config.sentinel {
            Some(sentinel) => sentinel.nodes.iter().map(|n| config.node_url(n)).collect(),
            None => seeds,
        };
        let mut connection =
            Self::from_target(target, topology, address, config, seeds, certificates);
        if let Some(shared) = Arc::get_mut(&mut connection.shared) {
            shared.master = master;
            shared.credentials = credentials;
        }
        Ok(connection)
    }

    fn from_target(
        target: Target,
        topology: Topology,
        address: String,
        config: &RedisConfig,
        seeds: Vec<String>,
        certificates: Option<Certificates>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                target,
                topology,
                address,
                timeout: config.timeout,
                connect_timeout: config.connect_timeout,
                current: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                misconfigured: RwLock::new(None),
                seeds,
                master: None,
                certificates,
                credentials: Credentials::default(),
                namespace: config.namespace.as_str().into(),
            }),
        }
    }

    /// Builds the handle and connects now, so a misconfiguration or an unreachable server
    /// shows at startup rather than on the first call.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisFault> {
        let connection = Self::new(config).map_err(RedisFault::Misconfigured)?;
        connection.conn().await?;
        Ok(connection)
    }

    /// The topology this handle talks to.
    pub fn topology(&self) -> Topology {
        self.shared.topology
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// What every key and channel of the primitives on this connection starts with
    /// ([`RedisConfig::namespace`]; empty by default).
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// `text` behind the [`namespace`](Self::namespace): the prefix a primitive on this
    /// connection gives its keys.
    ///
    /// ```
    /// use backstop_redis::{RedisConfig, RedisConnection};
    ///
    /// let config = RedisConfig::url("redis://127.0.0.1:6379").with_namespace("staging:");
    /// let redis = RedisConnection::new(&config).unwrap();
    /// assert_eq!(redis.namespaced("rl"), "staging:rl");
    /// ```
    pub fn namespaced(&self, text: &str) -> String {
        format!("{}{text}", self.shared.namespace)
    }

    /// Runs `f` on a live connection, connecting first when needed, within the handle's
    /// timeout (connecting included), and sorts a failure into an outage or a mistake.
    ///
    /// ```no_run
    /// # async fn demo(redis: backstop_redis::RedisConnection) -> Result<(), backstop_redis::RedisFault> {
    /// let value: Option<String> = redis
    ///     .run(|mut conn| async move { redis::cmd("GET").arg("k").query_async(&mut conn).await })
    ///     .await?;
    /// # let _ = value; Ok(()) }
    /// ```
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisFault>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let timeout = backstop_core::time::clamp(self.shared.timeout + self.shared.connect_timeout);
        match tokio::time::timeout(timeout, async {
            let conn = self.conn().await?;
            f(conn).await.map_err(|e| self.fault(e))
        })
        .await
        {
            Ok(result) => result,
            Err(_) => {
                self.forget_after_outage();
                Err(RedisFault::TimedOut(timeout))
            }
        }
    }

    /// A live connection (connecting first when needed).
    pub async fn conn(&self) -> Result<RedisConn, RedisFault> {
        if let Some(mistake) = self.shared.misconfigured.read().clone() {
            return Err(RedisFault::Misconfigured(mistake));
        }
        if let Some(conn) = self.shared.current.read().clone() {
            return Ok(conn);
        }
        let _turn = self.shared.connecting.lock().await;
        if let Some(conn) = self.shared.current.read().clone() {
            return Ok(conn);
        }
        // Boxed: connecting is the cold path, and redis-rs's connect futures (cluster,
        // Sentinel) are deep enough that inlining them into every caller's future overflows
        // the compiler's layout depth limit.
        let connect = tokio::time::timeout(
            backstop_core::time::clamp(self.shared.connect_timeout),
            Box::pin(self.open()),
        );
        let conn = match connect.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(fault)) => {
                if let RedisFault::Misconfigured(mistake) = &fault {
                    *self.shared.misconfigured.write() = Some(mistake.clone());
                }
                return Err(fault);
            }
            Err(_) => return Err(RedisFault::TimedOut(self.shared.connect_timeout)),
        };
        *self.shared.current.write() = Some(conn.clone());
        Ok(conn)
    }

    async fn open(&self) -> Result<RedisConn, RedisFault> {
        let shared = &self.shared;
        match &shared.target {
            Target::Standalone(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(shared.connect_timeout))
                    .set_response_timeout(Some(shared.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                let manager = ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(|e| self.fault(e))?;
                let mut conn = RedisConn(Conn::Managed(manager));
                self.check_primary(&mut conn, true).await?;
                Ok(conn)
            }
            Target::Cluster(client) => {
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(|e| self.fault(e))?;
                Ok(RedisConn(Conn::Cluster(conn)))
            }
            Target::Sentinel(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(shared.connect_timeout))
                    .set_response_timeout(Some(shared.timeout));
                let plain = client
                    .lock()
                    .await
                    .get_async_connection_with_config(&config)
                    .await;
                let plain = match plain {
                    Ok(plain) => plain,
                    Err(e) if e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel => {
                        return Err(self.master_not_found(e).await);
                    }
                    Err(e) => return Err(self.fault(e)),
                };
                let mut conn = RedisConn(Conn::Plain(plain));
                self.check_primary(&mut conn, false).await?;
                Ok(conn)
            }
        }
    }

    /// Reads `INFO` and refuses a cluster node or a replica where one primary is expected.
    /// Through Sentinel a replica is a failover still in progress (an outage), not a mistake.
    async fn check_primary(
        &self,
        conn: &mut RedisConn,
        standalone: bool,
    ) -> Result<(), RedisFault> {
        let info: String = redis::cmd("INFO")
            .query_async(conn)
            .await
            .map_err(|e| self.fault(e))?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("cluster_enabled") == Some("1") {
            return Err(RedisFault::Misconfigured(Misconfiguration::ClusterNode {
                address: self.shared.address.clone(),
            }));
        }
        if field("role") == Some("slave") {
            if standalone {
                return Err(RedisFault::Misconfigured(Misconfiguration::Replica {
                    address: self.shared.address.clone(),
                }));
            }
            return Err(RedisFault::Unavailable(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Sentinel still names a replica as the primary; failover in progress",
            ))));
        }
        Ok(())
    }

    /// redis-rs says "master not found" both when no Sentinel knows the name (a mistake)
    /// and when the master they name does not answer (an outage): ask them which.
    async fn master_not_found(&self, error: redis::RedisError) -> RedisFault {
        let master = self.shared.master.clone().unwrap_or_default();
        for node in &self.shared.seeds {
            // Sentinels keep the credentials of their own URLs.
            let Ok(client) = crate::tls::client(
                node,
                self.shared.certificates.as_ref(),
                &Credentials::default(),
            ) else {
                continue;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let known: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&master)
                .query_async(&mut conn)
                .await;
            match known {
                Ok(None) => {
                    return RedisFault::Misconfigured(Misconfiguration::UnknownMaster(master));
                }
                Ok(Some(_)) => break,
                Err(_) => continue,
            }
        }
        self.fault(error)
    }

    fn fault(&self, error: redis::RedisError) -> RedisFault {
        let standalone = self.shared.topology == Topology::Standalone;
        let fault = classify(error, &self.shared.address, standalone);
        if fault.is_outage() {
            self.forget_after_outage();
        }
        fault
    }

    /// A Sentinel connection that failed is dropped, so the next call asks the Sentinels
    /// where the primary is now. Standalone and cluster connections reconnect themselves.
    fn forget_after_outage(&self) {
        if self.shared.topology == Topology::Sentinel {
            self.shared.current.write().take();
        }
    }

    /// The servers a full `SCAN` must visit: the only server, or every cluster primary.
    pub async fn scan_nodes(&self) -> Result<Vec<ScanNode>, RedisFault> {
        if self.shared.topology != Topology::Cluster {
            return Ok(vec![ScanNode { address: None }]);
        }
        let slots: Value = self
            .run(|mut conn| async move {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut primaries: Vec<(String, u16)> = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let Some(Value::Array(primary)) = parts.get(2) else {
                    continue;
                };
                let host = match primary.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = primary.get(1) else {
                    continue;
                };
                let Ok(port) = u16::try_from(*port) else {
                    continue;
                };
                if !primaries.contains(&(host.clone(), port)) {
                    primaries.push((host, port));
                }
            }
        }
        Ok(primaries
            .into_iter()
            .map(|address| ScanNode {
                address: Some(address),
            })
            .collect())
    }

    /// One `SCAN cursor MATCH pattern COUNT count` page on `node`: the next cursor (0 when
    /// done) and the keys found.
    pub async fn scan_page(
        &self,
        node: &ScanNode,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), RedisFault> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let node = node.clone();
        self.run(|conn| async move {
            match (conn.0, node.address) {
                (Conn::Cluster(mut cluster), Some((host, port))) => {
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let value = cluster.route_command(cmd, routing).await?;
                    Ok(redis::from_redis_value(value)?)
                }
                (conn, _) => cmd.query_async(&mut RedisConn(conn)).await,
            }
        })
        .await
    }

    /// A pub/sub connection on the primary (Sentinel), the server (standalone) or a seed
    /// node (cluster: a classic `PUBLISH` reaches subscribers on every node).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisFault> {
        let open = async {
            match &self.shared.target {
                Target::Standalone(client) => {
                    client.get_async_pubsub().await.map_err(|e| self.fault(e))
                }
                Target::Sentinel(client) => {
                    let master = client
                        .lock()
                        .await
                        .async_get_client()
                        .await
                        .map_err(|e| self.fault(e))?;
                    master.get_async_pubsub().await.map_err(|e| self.fault(e))
                }
                Target::Cluster(_) => {
                    let mut last = None;
                    for seed in &self.shared.seeds {
                        match self.seed_client(seed) {
                            Ok(client) => match client.get_async_pubsub().await {
                                Ok(pubsub) => return Ok(pubsub),
                                Err(e) => last = Some(self.fault(e)),
                            },
                            Err(e) => last = Some(self.fault(e)),
                        }
                    }
                    Err(last.unwrap_or(RedisFault::TimedOut(self.shared.connect_timeout)))
                }
            }
        };
        match tokio::time::timeout(
            backstop_core::time::clamp(self.shared.connect_timeout),
            open,
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RedisFault::TimedOut(self.shared.connect_timeout)),
        }
    }

    fn seed_client(&self, seed: &str) -> redis::RedisResult<Client> {
        crate::tls::client(
            seed,
            self.shared.certificates.as_ref(),
            &self.shared.credentials,
        )
    }
}
