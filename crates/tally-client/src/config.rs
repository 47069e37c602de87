use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientError;
use crate::security::{SaslConfig, SecurityProtocol, TlsTransport};
use crate::transport::{TcpTransport, Transport};

/// How to reach the cluster; shared by the producer, consumer and admin.
#[derive(Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to start from; any one reachable broker is enough.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Wait before reconnecting to a broker that failed, doubled per failure up to the max.
    pub reconnect_backoff_ms: u64,
    pub reconnect_backoff_max_ms: u64,
    /// The network: TCP unless a simulation provides another (TLS: see `set_security`).
    pub transport: Arc<dyn Transport>,
    /// The SASL login each new connection makes, on SASL_PLAINTEXT and SASL_SSL.
    pub sasl: Option<SaslConfig>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("bootstrap", &self.bootstrap)
            .field("client_id", &self.client_id)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ClientConfig {
            bootstrap: bootstrap
                .into()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: "tally-client".into(),
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            reconnect_backoff_ms: 50,
            reconnect_backoff_max_ms: 1_000,
            transport: Arc::new(TcpTransport),
            sasl: None,
        }
    }

    /// `security.protocol` with what it needs: `sasl` for SASL_*, `ssl_ca_location` (the
    /// authorities to trust, PEM) for SSL and SASL_SSL, and optionally the client's own
    /// certificate and key (PEM). Reads the files.
    pub fn set_security(
        &mut self,
        protocol: SecurityProtocol,
        sasl: Option<SaslConfig>,
        ssl_ca_location: Option<&std::path::Path>,
        ssl_certificate: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<(), ClientError> {
        if protocol.uses_tls() {
            let ca = ssl_ca_location.ok_or_else(|| {
                ClientError::Config(
                    "SSL and SASL_SSL need ssl.ca.location: the authorities to trust (PEM)".into(),
                )
            })?;
            self.transport = Arc::new(TlsTransport::new(ca, ssl_certificate)?);
        } else {
            self.transport = Arc::new(TcpTransport);
        }
        match (protocol.uses_sasl(), sasl) {
            (true, None) => {
                return Err(ClientError::Config(
                    "SASL_PLAINTEXT and SASL_SSL need sasl.username and sasl.password".into(),
                ))
            }
            (true, Some(sasl)) => self.sasl = Some(sasl),
            (false, _) => self.sasl = None,
        }
        Ok(())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}
