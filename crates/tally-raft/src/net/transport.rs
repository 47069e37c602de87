//! The network Raft's traffic travels on: real TCP (`TokioTcp`) in the broker, or a simulated
//! one (turmoil, in tally-sim) where the simulation decides which links lose, hold or cut
//! traffic. Everything above this seam (framing, the server, the peers' links, forwarding) is
//! the same code in both.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream to or from a peer.
pub trait RaftStreamIo: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> RaftStreamIo for T {}

pub type RaftStream = Box<dyn RaftStreamIo>;
pub type NetFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// A bound listener: hands out each incoming connection with its peer's address.
pub trait RaftListener: Send {
    fn local_addr(&self) -> io::Result<SocketAddr>;
    fn accept(&mut self) -> NetFuture<'_, (RaftStream, String)>;
}

/// Opens connections to peers and listens for theirs.
pub trait RaftTransport: Send + Sync + 'static {
    fn connect<'a>(&'a self, addr: &'a str) -> NetFuture<'a, RaftStream>;
    fn bind<'a>(&'a self, addr: &'a str) -> NetFuture<'a, Box<dyn RaftListener>>;
}

impl std::fmt::Debug for dyn RaftTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftTransport")
    }
}

/// TCP through tokio, with Nagle off: Raft's requests are small and wait for their answers.
pub struct TokioTcp;

impl TokioTcp {
    pub fn shared() -> Arc<dyn RaftTransport> {
        Arc::new(TokioTcp)
    }
}

impl RaftTransport for TokioTcp {
    fn connect<'a>(&'a self, addr: &'a str) -> NetFuture<'a, RaftStream> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as RaftStream)
        })
    }

    fn bind<'a>(&'a self, addr: &'a str) -> NetFuture<'a, Box<dyn RaftListener>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TokioListener(listener)) as Box<dyn RaftListener>)
        })
    }
}

struct TokioListener(tokio::net::TcpListener);

impl RaftListener for TokioListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> NetFuture<'_, (RaftStream, String)> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as RaftStream, peer.to_string()))
        })
    }
}
