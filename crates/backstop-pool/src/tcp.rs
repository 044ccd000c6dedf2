//! A ready [`Manager`] for plain TCP connections.

use std::io;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use futures::FutureExt;
use tokio::net::TcpStream;

/// Opens TCP connections to one endpoint; the health check detects a peer that closed
/// or reset the connection without blocking.
#[derive(Debug, Clone)]
pub struct TcpManager {
    addr: String,
}

impl TcpManager {
    /// A manager for `addr` (`"host:port"`, resolved at each connect).
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

impl Manager for TcpManager {
    type Type = TcpStream;
    type Error = io::Error;

    async fn create(&self) -> Result<TcpStream, io::Error> {
        let stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn recycle(&self, stream: &mut TcpStream, _: &Metrics) -> RecycleResult<io::Error> {
        let mut byte = [0u8; 1];
        // A pending peek means nothing arrived and the socket is open.
        match stream.peek(&mut byte).now_or_never() {
            None => Ok(()),
            Some(Ok(0)) => Err(RecycleError::message("peer closed the connection")),
            Some(Ok(_)) => Err(RecycleError::message(
                "unexpected unread data on an idle connection",
            )),
            Some(Err(error)) => Err(RecycleError::Backend(error)),
        }
    }
}
