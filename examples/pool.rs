//! Named TCP connection pools behind a `PoolLayer`, against a loopback echo server.
//!
//! `cargo run --example pool`
//!
//! Starts an echo server, builds a `PoolSet` with two per-service pools, sends 200
//! requests from 32 concurrent callers through a `PoolLayer` (8 connections), kills the
//! server and restarts it to show broken connections being discarded, then prints each
//! pool's stats.

use std::collections::BTreeMap;
use std::time::Duration;

use backstop::core::{Layer, Service, ServiceExt, service_fn};
use backstop::pool::{Leased, PoolConfig, PoolLayer, PoolSet, PoolSetConfig, TcpManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Echoes on every accepted socket; aborting it closes them all (they live in its JoinSet).
async fn echo_server(listener: TcpListener) {
    let mut sessions = tokio::task::JoinSet::new();
    while let Ok((mut socket, _)) = listener.accept().await {
        sessions.spawn(async move {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = socket.read(&mut buf).await {
                if socket.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(echo_server(listener));

    let mut pools = BTreeMap::new();
    pools.insert(
        "llm_primary".to_string(),
        PoolConfig::builder()
            .max_size(8)
            .min_idle(2)
            .wait_timeout(Duration::from_secs(2))
            .health_check_bypass(Duration::ZERO)
            .leak_detection_threshold(Duration::from_secs(10))
            .build()?,
    );
    pools.insert(
        "vector_db".to_string(),
        PoolConfig::builder().max_size(2).build()?,
    );
    let set = PoolSet::new(PoolSetConfig { pools }, |_| {
        TcpManager::new(addr.to_string())
    })?;
    let llm = set.get("llm_primary").ok_or("missing pool")?.clone();

    // Each call writes the request and reads the echo; an I/O error marks the
    // connection broken so the pool closes it.
    let svc = PoolLayer::new(llm.clone())
        .classify(|e: &backstop::core::Error<std::io::Error>| e.inner().is_some())
        .layer(
            service_fn(|mut leased: Leased<TcpManager, String>| async move {
                leased.conn.write_all(leased.request.as_bytes()).await?;
                let mut reply = vec![0u8; leased.request.len()];
                leased.conn.read_exact(&mut reply).await?;
                Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).into_owned())
            })
            .lift(),
        );
    let svc = std::sync::Arc::new(svc);

    let callers: Vec<_> = (0..32)
        .map(|caller| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..200 / 32 {
                    let request = format!("caller {caller} request {i}");
                    let reply = svc.call(request.clone()).await.expect("echo");
                    assert_eq!(reply, request);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await?;
    }
    println!("after load: {:?}", llm.stats());

    server.abort();
    let _ = server.await;
    // Aborted sessions close their sockets when the runtime drops them; give it a moment.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match svc.call("during outage".to_string()).await {
        Ok(reply) => println!("during outage: unexpected reply {reply:?}"),
        Err(error) => println!("during outage: {error}"),
    }

    let server = tokio::spawn(echo_server(TcpListener::bind(addr).await?));
    println!("after restart: {:?}", svc.call("back".to_string()).await?);
    for (name, stats) in set.stats() {
        println!(
            "{name}: size={} in_use={} created={} closed={:?} wait_p95={:?} usage_p95={:?}",
            stats.size, stats.in_use, stats.created, stats.closed, stats.wait.p95, stats.usage.p95
        );
    }
    server.abort();
    Ok(())
}
