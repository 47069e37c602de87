//! A broker on a TCP listener: start-up with the listener bound, the accept loop (one task per
//! connection, at most `max.connections` at once), and clean shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use tracing::{debug, info, warn};

use crate::broker::{Broker, BrokerOptions, StartError};
use crate::broker_config::BrokerConfig;
use crate::connection::run_connection;
use crate::endpoint::Endpoint;
use crate::http::HttpServer;
use crate::security::{Mechanism, SaslSession, ANONYMOUS};

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Broker {
    /// Starts a broker: everything that can fail at start-up fails here, with one message.
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
        config.validate()?;
        // Bound first, so that /readyz can say "recovering" while the data is recovered.
        let http = match config.http_listener()? {
            Some(addr) => {
                Some(
                    HttpServer::bind(addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: addr.to_string(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        if let Some(http) = &http {
            // Debug: a start that fails after this must still print one error line.
            debug!(http = %http.local_addr, "http listener bound, recovering");
        }
        let listens = config.listeners()?;
        let tls = match listens.iter().any(|l| l.protocol.uses_tls()) {
            true => {
                // Reads the keystore and truststore files: off the async workers.
                let c = config.clone();
                Some(
                    tokio::task::spawn_blocking(move || crate::tls::server_config(&c))
                        .await
                        .expect("reading the TLS files panicked")?,
                )
            }
            false => None,
        };
        let mut bound = Vec::new();
        for listen in listens {
            let addr = listen.socket_addr()?;
            let bind_error = |source| StartError::Bind {
                addr: addr.to_string(),
                source,
            };
            let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
            let local = listener.local_addr().map_err(bind_error)?;
            bound.push((listen, listener, local));
        }
        let local_addr = bound[0].2;
        let options = BrokerOptions {
            tls_keystore: tls.as_ref().map(|(_, keystore)| Arc::clone(keystore)),
            listener_ports: bound
                .iter()
                .map(|(l, _, a)| (l.name.clone(), a.port()))
                .collect(),
            ..BrokerOptions::default()
        };
        let names: Vec<String> = bound
            .iter()
            .map(|(l, _, a)| format!("{}://{a}", l.name))
            .collect();
        let broker = Broker::open_with(config, local_addr.port(), options).await?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let maintenance = broker.spawn_maintenance(shutdown_rx.clone());
        let acceptor = tls.map(|(server_config, keystore)| {
            let interval = Duration::from_millis(broker.config.ssl_keystore_check_interval_ms());
            keystore.watch(interval, shutdown_rx.clone());
            TlsAcceptor::from(server_config)
        });
        // One limit for all listeners: max.connections counts the broker's connections.
        let limit = Arc::new(Semaphore::new(broker.config.max_connections()));
        let mut servers = Vec::new();
        let first_protocol = bound[0].0.protocol;
        for (listen, listener, _) in bound {
            let security = ListenerSecurity::new(&listen, &broker.config);
            let acceptor = acceptor.clone().filter(|_| listen.protocol.uses_tls());
            servers.push(tokio::spawn(serve(
                Arc::clone(&broker),
                listener,
                acceptor,
                security,
                Arc::clone(&limit),
                shutdown_rx.clone(),
            )));
        }
        let server = tokio::spawn(async move {
            for s in servers {
                let _ = s.await;
            }
        });
        if let Some(http) = &http {
            http.state.set_ready(Arc::clone(&broker));
        }
        let http_addr = http.as_ref().map(|h| h.local_addr);
        info!(
            listen = %local_addr,
            security_protocol = first_protocol.name(),
            listeners = %names.join(","),
            http = %http_addr.map_or("none".to_string(), |a| a.to_string()),
            advertised = %format!("{}:{}", broker.advertised.host, broker.advertised.port),
            data_dir = %broker.config.log_dir().display(),
            topics = broker.topics.list().len(),
            cluster_id = %broker.cluster_id,
            "tally broker ready"
        );
        Ok(RunningBroker {
            broker,
            local_addr,
            http_addr,
            http,
            shutdown_tx,
            server,
            maintenance,
        })
    }
}

/// A started broker; [`RunningBroker::shutdown`] stops it cleanly.
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    pub local_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub http_addr: Option<SocketAddr>,
    http: Option<HttpServer>,
    shutdown_tx: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    maintenance: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    /// Stops accepting, lets requests in progress finish, then flushes every partition and
    /// writes its producer snapshot, so the next start replays nothing.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.broker.begin_shutdown();
        let _ = self.shutdown_tx.send(true);
        self.broker.notify_append();
        let _ = self.server.await;
        let _ = self.maintenance.await;
        self.broker.topics.close_all().await;
        if let Some(http) = &self.http {
            http.stop();
        }
        info!("shutdown complete");
    }
}

/// A listener's name, and how its connections say who they are.
#[derive(Clone)]
pub struct ListenerSecurity {
    name: Arc<str>,
    /// The SASL mechanisms offered, on a SASL_PLAINTEXT or SASL_SSL listener.
    sasl: Option<Arc<[Mechanism]>>,
}

impl ListenerSecurity {
    pub fn new(listener: &Endpoint, config: &BrokerConfig) -> ListenerSecurity {
        ListenerSecurity {
            name: Arc::from(listener.name.as_str()),
            sasl: listener
                .protocol
                .uses_sasl()
                .then(|| Arc::from(config.sasl_mechanisms())),
        }
    }

    fn session(&self) -> SaslSession {
        match &self.sasl {
            Some(mechanisms) => SaslSession::sasl(Arc::clone(mechanisms)),
            None => SaslSession::not_sasl(ANONYMOUS.to_string()),
        }
    }
}

pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    security: ListenerSecurity,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    broker.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                    warn!(%peer, limit = broker.config.max_connections(), "connection refused: max.connections reached");
                    drop(stream);
                    continue;
                };
                debug!(%peer, "connection accepted");
                let broker = Arc::clone(&broker);
                let shutdown = shutdown.clone();
                let _ = stream.set_nodelay(true);
                broker.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
                broker.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
                let tls = tls.clone();
                let session = security.session();
                let name = Arc::clone(&security.name);
                connections.spawn(async move {
                    let metrics = Arc::clone(&broker.metrics);
                    let peer = peer.to_string();
                    match tls {
                        None => {
                            let (read_half, write_half) = stream.into_split();
                            run_connection(broker, read_half, write_half, peer, shutdown, session, name).await;
                        }
                        Some(tls) => serve_tls(broker, tls, stream, peer, shutdown, session, name).await,
                    }
                    metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
                // Reap finished connection tasks so the set does not grow without bound.
                while connections.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    // Let requests in progress finish; idle connections notice the shutdown and close.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// A connection on an SSL listener: the handshake (bounded in time; a failure only closes this
/// connection), then the same serving as in plaintext.
async fn serve_tls(
    broker: Arc<Broker>,
    tls: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: String,
    shutdown: watch::Receiver<bool>,
    session: SaslSession,
    listener: Arc<str>,
) {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            // ssl.client.auth: the certificate's subject is the principal (Kafka's default).
            let principal = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| crate::security::cert_principal::principal_of(cert));
            let session = match principal {
                Some(p) => session.with_transport_principal(p),
                None => session,
            };
            let (read_half, write_half) = tokio::io::split(stream);
            run_connection(
                broker, read_half, write_half, peer, shutdown, session, listener,
            )
            .await;
        }
        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => debug!(%peer, "TLS handshake timed out"),
    }
}
