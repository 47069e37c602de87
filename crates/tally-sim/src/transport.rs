use tally_client::transport::{ConnectFuture, ReadHalf, Transport, WriteHalf};

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
