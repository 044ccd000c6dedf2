//! Shared by the benches that measure against Redis (`budget`, `cache`, `limit`): the
//! servers the environment names (`REDIS_URL`, `REDIS_CLUSTER_NODES`), with one skip line
//! for a group when it names none.

#![allow(dead_code)] // each bench uses a different part

use backstop::redis::redis::cluster::ClusterClient;
use backstop::redis::redis::cluster_async::ClusterConnection;

/// The Redis URL in `REDIS_URL`, or `None` after printing that `group` is skipped.
pub(crate) fn redis_url(group: &str) -> Option<String> {
    let url = std::env::var("REDIS_URL").ok();
    if url.is_none() {
        println!("{group} skipped: REDIS_URL is not set");
    }
    url
}

/// A client for the Redis at `REDIS_URL` and a one-worker runtime to drive it, or `None`
/// after printing that `group` is skipped.
pub(crate) fn redis_client(group: &str) -> Option<(redis::Client, tokio::runtime::Runtime)> {
    let client = redis::Client::open(redis_url(group)?).expect("REDIS_URL is a valid Redis URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    Some((client, runtime))
}

/// The cluster nodes in `REDIS_CLUSTER_NODES` (`host:port,…`), or `None` after printing
/// that `group`'s cluster contenders are skipped.
pub(crate) fn cluster_nodes(group: &str) -> Option<String> {
    let nodes = std::env::var("REDIS_CLUSTER_NODES").ok();
    if nodes.is_none() {
        println!("{group} cluster skipped: REDIS_CLUSTER_NODES is not set");
    }
    nodes
}

/// A bare redis-rs connection to the cluster `nodes` name: the peer Backstop's cluster
/// contenders are measured against.
pub(crate) async fn bare_cluster_connection(nodes: &str) -> ClusterConnection {
    let seeds: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
    ClusterClient::new(seeds)
        .expect("valid seeds")
        .get_async_connection()
        .await
        .expect("the cluster is reachable")
}
