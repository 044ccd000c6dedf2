//! The TCP manager against a real loopback server that the test starts, kills and restarts.

use std::time::Duration;

use backstop_pool::{Pool, PoolConfig, PoolError, TcpManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An echo server that keeps its accepted sockets until it is aborted.
fn serve(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sessions = tokio::task::JoinSet::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            sessions.spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    if socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// Sends `message` over `conn` and checks that the echo server sent it back.
async fn assert_echoes(conn: &mut TcpStream, message: &[u8; 4]) {
    conn.write_all(message).await.unwrap();
    let mut reply = [0u8; 4];
    conn.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, message);
}

#[tokio::test]
async fn broken_connections_are_discarded_and_the_pool_recovers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener);
    let config = PoolConfig::builder()
        .max_size(2)
        .health_check_bypass(Duration::ZERO)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let pool = Pool::new(TcpManager::new(addr.to_string()), config).unwrap();

    assert_echoes(&mut pool.get().await.unwrap(), b"ping").await;
    assert_eq!(pool.stats().idle, 1);

    // Kill the server: every accepted socket closes, and nothing listens any more.
    server.abort();
    let _ = server.await;
    tokio::task::yield_now().await;
    match pool.get().await {
        Err(PoolError::Create(error)) => {
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected a refused connect, got {other:?}"),
    }
    let stats = pool.stats();
    assert_eq!(
        stats.closed.health_check, 1,
        "the dead connection was discarded: {stats:?}"
    );
    assert_eq!(stats.size, 0);

    // Restart on the same port: the pool recovers with a fresh connection.
    let server = serve(TcpListener::bind(addr).await.unwrap());
    let mut conn = pool.get().await.unwrap();
    assert_echoes(&mut conn, b"back").await;
    assert_eq!(pool.stats().created, 2);
    drop(conn);
    server.abort();
}
