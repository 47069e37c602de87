//! How the client reaches a broker: TCP by default. A simulation plugs in its own network
//! (turmoil's simulated TCP) without the client knowing.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = std::io::Result<(ReadHalf, WriteHalf)>> + Send + 'a>>;

pub trait Transport: Send + Sync {
    /// Opens a stream to `addr` (`host:port`) and splits it into its two directions.
    fn connect<'a>(&'a self, addr: &'a str) -> ConnectFuture<'a>;
}

/// Plain TCP (tokio), with Nagle off: requests are small and latency matters.
pub struct TcpTransport;

impl Transport for TcpTransport {
    fn connect<'a>(&'a self, addr: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            let (read, write) = stream.into_split();
            Ok((Box::new(read) as ReadHalf, Box::new(write) as WriteHalf))
        })
    }
}
