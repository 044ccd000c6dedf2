//! What the fleet tests of every crate share: the addresses `.ci/redis-fleet` exports, and
//! killing and restarting a server by pid for failover tests.

use backstop_redis::{
    Misconfiguration, RedisConfig, RedisConnection, RedisFault, SentinelConfig, TlsConfig,
};
use std::time::Duration;

/// The mistake connecting with `config` is refused for: it names a deployment that does
/// not match it. Panics when the connection succeeds or fails for another reason.
pub async fn connect_mistake(config: &RedisConfig) -> Misconfiguration {
    match RedisConnection::connect(config).await {
        Err(RedisFault::Misconfigured(mistake)) => mistake,
        Err(other) => panic!("expected a misconfiguration, got {other:?}"),
        Ok(_) => panic!("expected a misconfiguration, the connection succeeded"),
    }
}

/// The variable's value, or `None` with a skip notice; under CI a missing variable fails
/// the test, so no Redis test is silently skipped there.
pub fn env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "{name} is not set under CI: .ci/run must start the Redis fleet"
            );
            eprintln!("skipped: {name} is not set (run `bash .ci/redis-fleet start`)");
            None
        }
    }
}

/// A name no other run shares (`fleet-test:{name}:{nanos}`), for the prefixes and
/// namespaces of tests whose keys outlive one process.
///
/// # Panics
///
/// When the system clock reads before the Unix epoch.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock reads after the Unix epoch")
        .as_nanos();
    format!("fleet-test:{name}:{nanos}")
}

/// The fleet's cluster (`REDIS_CLUSTER_NODES`) with a 500 ms command timeout.
pub fn cluster() -> Option<RedisConfig> {
    let nodes = env("REDIS_CLUSTER_NODES")?;
    Some(RedisConfig::cluster(nodes.split(',')).with_timeout(Duration::from_millis(500)))
}

/// The fleet's cluster and its seeds, once the cluster is whole (waiting up to 30 s): the
/// start of every failover test, which must not begin while a previous one still heals.
///
/// # Panics
///
/// When the cluster is not whole within 30 s.
pub fn whole_cluster() -> Option<(RedisConfig, Vec<String>)> {
    let config = cluster()?;
    let seeds = cluster_seeds()?;
    assert!(
        wait_until(Duration::from_secs(30), || cluster_whole(&seeds[0])),
        "the cluster is whole before the test"
    );
    Some((config, seeds))
}

/// The cluster's seeds as `host:port`.
pub fn cluster_seeds() -> Option<Vec<String>> {
    Some(
        env("REDIS_CLUSTER_NODES")?
            .split(',')
            .map(str::to_string)
            .collect(),
    )
}

/// The fleet's Sentinel setup (`REDIS_SENTINEL`).
pub fn sentinel() -> Option<RedisConfig> {
    let spec = env("REDIS_SENTINEL")?;
    Some(RedisConfig::sentinel(
        SentinelConfig::parse(&spec).expect("REDIS_SENTINEL reads master@host:port,…"),
    ))
}

/// The standalone server (`REDIS_URL`).
pub fn standalone() -> Option<RedisConfig> {
    Some(RedisConfig::url(env("REDIS_URL")?))
}

/// The TLS server (`REDIS_TLS_URL`) trusting the fleet's CA (`REDIS_TLS_CA`).
pub fn tls() -> Option<RedisConfig> {
    let url = env("REDIS_TLS_URL")?;
    let ca = env("REDIS_TLS_CA")?;
    Some(RedisConfig::url(url).with_tls(TlsConfig {
        ca: Some(ca.into()),
        ..TlsConfig::default()
    }))
}

/// `redis-cli` against `host:port`, its output trimmed.
pub fn cli(address: &str, args: &[&str]) -> String {
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One field of `INFO` of the server at `address`.
pub fn info_field(address: &str, field: &str) -> Option<String> {
    cli(address, &["info"]).lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

/// A server killed by pid; dropping this restarts it from its config file, so a failing
/// test leaves the fleet whole for the next one.
pub struct Killed {
    config_file: String,
    restarted: bool,
}

impl Drop for Killed {
    fn drop(&mut self) {
        if !self.restarted {
            self.start(&[]);
        }
    }
}

/// Kills the server at `address` with SIGKILL, by the pid its `INFO` reports.
pub fn kill(address: &str) -> Killed {
    let pid = info_field(address, "process_id").expect("INFO names the pid");
    let config_file = info_field(address, "config_file").expect("started from a config file");
    assert!(
        !config_file.is_empty(),
        "the fleet starts servers from config files"
    );
    let status = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    Killed {
        config_file,
        restarted: false,
    }
}

impl Killed {
    /// Starts the server again from its config file as a replica of `primary`
    /// (`host:port`), as an operator brings a failed primary back after a failover.
    pub fn restart_as_replica_of(mut self, primary: &str) {
        let (host, port) = primary.rsplit_once(':').expect("host:port");
        self.start(&["--replicaof", host, port]);
        self.restarted = true;
    }

    fn start(&self, overrides: &[&str]) {
        let _ = std::process::Command::new("redis-server")
            .arg(&self.config_file)
            .args(overrides)
            .status();
    }
}

/// Waits (polling `redis-cli`, at most `bound`) until `ready` holds: for setting the
/// fleet back up between failover tests, not for the behaviour under test.
pub fn wait_until(bound: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < bound {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The Sentinel's answer for the current primary of `master`, as `host:port`.
pub fn sentinel_primary(spec: &str) -> String {
    let (master, nodes) = spec.split_once('@').unwrap();
    let first = nodes.split(',').next().unwrap();
    let out = cli(first, &["sentinel", "get-master-addr-by-name", master]);
    let mut lines = out.lines();
    format!("{}:{}", lines.next().unwrap(), lines.next().unwrap())
}

/// The cluster primaries' addresses, from `CLUSTER NODES` of `seed`.
pub fn cluster_primaries(seed: &str) -> Vec<String> {
    cli(seed, &["cluster", "nodes"])
        .lines()
        .filter(|l| l.contains("master") && !l.contains("fail"))
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap()
                .split('@')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The address of the primary serving `slot`, from `CLUSTER NODES` of `seed`.
pub fn cluster_primary_of(seed: &str, slot: u16) -> Option<String> {
    cli(seed, &["cluster", "nodes"]).lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields.get(2)?.contains("master") || fields[2].contains("fail") {
            return None;
        }
        let serves = fields
            .iter()
            .skip(8)
            .any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => range.parse::<u16>().is_ok_and(|s| s == slot),
            });
        serves.then(|| fields[1].split('@').next().unwrap_or_default().to_string())
    })
}

/// Whether the cluster is whole again, in every node's own view: six nodes, none failing,
/// three primaries serving slots, three replicas, and `cluster_state:ok` everywhere.
pub fn cluster_whole(seed: &str) -> bool {
    let view = |address: &str| {
        let nodes = cli(address, &["cluster", "nodes"]);
        let healthy: Vec<Vec<&str>> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() >= 8 && !f[2].contains("fail") && f[7] == "connected")
            .collect();
        let primaries = healthy
            .iter()
            .filter(|f| f[2].contains("master") && f.len() > 8)
            .count();
        let replicas = healthy.iter().filter(|f| f[2].contains("slave")).count();
        let addresses: Vec<String> = healthy
            .iter()
            .map(|f| f[1].split('@').next().unwrap_or_default().to_string())
            .collect();
        (healthy.len() == 6 && primaries == 3 && replicas == 3).then_some(addresses)
    };
    let Some(addresses) = view(seed) else {
        return false;
    };
    addresses
        .iter()
        .all(|a| view(a).is_some() && cli(a, &["cluster", "info"]).contains("cluster_state:ok"))
}

/// A `redis://` URL at a replica of the Sentinel setup's primary, for tests that such a URL
/// is refused; `None` with a skip notice without the setup. A failover test leaves the
/// fleet without an online replica for a few seconds, so this waits up to a minute for
/// one; then, under CI, it fails the test rather than skip it.
pub fn sentinel_replica_url() -> Option<String> {
    let spec = env("REDIS_SENTINEL")?;
    let mut replica = None;
    wait_until(Duration::from_secs(60), || {
        replica = sentinel_replica(&spec);
        replica.is_some()
    });
    let Some(replica) = replica else {
        assert!(
            std::env::var("CI").is_err(),
            "no replica of the Sentinel primary came online within 60 s"
        );
        eprintln!("skipped: no replica of the Sentinel primary is online");
        return None;
    };
    Some(format!("redis://{replica}"))
}

/// A replica of the Sentinel setup's primary, as `host:port`, when one is online.
pub fn sentinel_replica(spec: &str) -> Option<String> {
    let (master, nodes) = spec.split_once('@')?;
    let sentinel = nodes.split(',').next()?;
    let replicas = cli(sentinel, &["sentinel", "replicas", master]);
    // The reply lists name, ip, port, … per replica; `name` is `ip:port`.
    let mut lines = replicas.lines();
    let replica = loop {
        if lines.next()? == "name" {
            break lines.next()?.to_string();
        }
    };
    (info_field(&replica, "role").as_deref() == Some("slave")).then_some(replica)
}
