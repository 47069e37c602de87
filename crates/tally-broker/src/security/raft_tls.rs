//! Raft's traffic between nodes over mutual TLS, when `inter.broker.listener.name` names an
//! SSL listener. Raft has its own port (a voter's address, or `raft.listener`), and whoever
//! reaches it could append to a partition's log or forward a command to the controller; so
//! both ends present a certificate an authority of `ssl.truststore.location` signed, and the
//! accepting node lets in only a principal with ClusterAction on the cluster (a super user,
//! or an ACL) when the authorizer is on, as Kafka asks of an inter-broker principal.
//!
//! It wraps another transport (TCP, or the simulation's network), so the links, framing and
//! server above it are the same code with and without TLS.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tally_raft::{NetFuture, RaftListener, RaftStream, RaftTransport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, warn};

use super::acl::{Operation, ResourceType, CLUSTER_NAME};
use super::cert_principal::principal_of;
use super::AclStore;

/// A peer that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the Raft server to take them.
const ACCEPTED_QUEUE: usize = 16;

pub struct RaftTls {
    inner: Arc<dyn RaftTransport>,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    acls: Arc<AclStore>,
}

impl RaftTls {
    pub fn wrap(
        inner: Arc<dyn RaftTransport>,
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        acls: Arc<AclStore>,
    ) -> Arc<dyn RaftTransport> {
        Arc::new(RaftTls {
            inner,
            acceptor: TlsAcceptor::from(server),
            connector: TlsConnector::from(client),
            acls,
        })
    }
}

/// The host part of `HOST:PORT` (brackets of an IPv6 address removed): the name the peer's
/// certificate must carry.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
}

impl RaftTransport for RaftTls {
    fn connect<'a>(&'a self, addr: &'a str) -> NetFuture<'a, RaftStream> {
        Box::pin(async move {
            let name = ServerName::try_from(host_of(addr).to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
            let stream = self.inner.connect(addr).await?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connector.connect(name, stream))
                .await
                .map_err(|_| timed_out())??;
            Ok(Box::new(tls) as RaftStream)
        })
    }

    fn bind<'a>(&'a self, addr: &'a str) -> NetFuture<'a, Box<dyn RaftListener>> {
        Box::pin(async move {
            let inner = self.inner.bind(addr).await?;
            let local_addr = inner.local_addr()?;
            let (accepted, queue) = mpsc::channel(ACCEPTED_QUEUE);
            // Handshakes run on their own tasks, so one slow or silent peer holds up no other.
            let task = tokio::spawn(handshake_each(
                inner,
                self.acceptor.clone(),
                Arc::clone(&self.acls),
                accepted,
            ));
            Ok(Box::new(TlsListener {
                local_addr,
                queue,
                task,
            }) as Box<dyn RaftListener>)
        })
    }
}

async fn handshake_each(
    mut inner: Box<dyn RaftListener>,
    acceptor: TlsAcceptor,
    acls: Arc<AclStore>,
    accepted: mpsc::Sender<(RaftStream, String)>,
) {
    loop {
        let (stream, peer) = match inner.accept().await {
            Ok(incoming) => incoming,
            Err(e) => {
                // Out of descriptors, say: try again shortly rather than spin.
                debug!(error = %e, "raft accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let acls = Arc::clone(&acls);
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return warn!(%peer, error = %e, "raft TLS handshake failed"),
                Err(_) => return warn!(%peer, "raft TLS handshake timed out"),
            };
            let principal = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| principal_of(cert));
            let Some(principal) = principal else {
                return warn!(%peer, "raft peer's certificate has no subject Tally can read");
            };
            let host = peer
                .parse::<SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let allowed = acls.allows(
                &principal,
                &host,
                Operation::ClusterAction,
                ResourceType::Cluster,
                CLUSTER_NAME,
            );
            if !allowed {
                return warn!(%peer, %principal, "raft peer refused: no ClusterAction on the cluster");
            }
            let _ = accepted.send((Box::new(tls) as RaftStream, peer)).await;
        });
    }
}

struct TlsListener {
    local_addr: SocketAddr,
    queue: mpsc::Receiver<(RaftStream, String)>,
    task: JoinHandle<()>,
}

impl RaftListener for TlsListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    fn accept(&mut self) -> NetFuture<'_, (RaftStream, String)> {
        Box::pin(async move {
            match self.queue.recv().await {
                Some(incoming) => Ok(incoming),
                // The handshaking task holds a sender until it is aborted on drop: not reached
                // while the listener lives, and never answered at once (no busy loop).
                None => std::future::pending().await,
            }
        })
    }
}

impl Drop for TlsListener {
    /// Stops accepting: the port is released, so a restarted node can bind it again.
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_is_what_the_certificate_must_name() {
        assert_eq!(host_of("127.0.0.1:9193"), "127.0.0.1");
        assert_eq!(host_of("node-2.example:9193"), "node-2.example");
        assert_eq!(host_of("[::1]:9193"), "::1");
    }
}
