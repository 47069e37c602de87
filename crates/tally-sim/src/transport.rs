use std::io;
use std::net::SocketAddr;

use tally_client::transport::{ConnectFuture, ReadHalf, Transport, WriteHalf};
use tally_raft::{NetFuture, RaftListener, RaftStream, RaftTransport};

/// The client's network inside a simulation: turmoil's simulated TCP.
pub struct TurmoilTransport;

impl Transport for TurmoilTransport {
    fn connect<'a>(&'a self, addr: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            let (read, write) = stream.into_split();
            Ok((Box::new(read) as ReadHalf, Box::new(write) as WriteHalf))
        })
    }
}

/// Raft's traffic between the simulated brokers, on turmoil's simulated TCP: the driver's
/// partitions, holds and one-way losses between broker hosts apply to it.
pub struct TurmoilRaftTransport;

impl RaftTransport for TurmoilRaftTransport {
    fn connect<'a>(&'a self, addr: &'a str) -> NetFuture<'a, RaftStream> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(stream) as RaftStream)
        })
    }

    /// A voter's address names its host (`broker2:9193`); a simulated host listens on all
    /// of its addresses at that port.
    fn bind<'a>(&'a self, addr: &'a str) -> NetFuture<'a, Box<dyn RaftListener>> {
        Box::pin(async move {
            let port = addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("no port in {addr}"))
                })?;
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
            Ok(Box::new(TurmoilListener(listener)) as Box<dyn RaftListener>)
        })
    }
}

struct TurmoilListener(turmoil::net::TcpListener);

impl RaftListener for TurmoilListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> NetFuture<'_, (RaftStream, String)> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as RaftStream, peer.to_string()))
        })
    }
}
