//! How the client proves who it is and keeps the traffic private, with librdkafka's names:
//! `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), `sasl.mechanism` (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512), `sasl.username`, `sasl.password` and `ssl.ca.location`.
//! TLS is rustls; the SASL exchange runs on each new connection, after ApiVersions.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig as TlsConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::error::ClientError;
use crate::transport::{ConnectFuture, ReadHalf, Transport, WriteHalf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Result<SecurityProtocol, ClientError> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(ClientError::Config(format!(
                "security.protocol {name}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ))),
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A SASL login. The password is never printed (not even by `Debug`).
#[derive(Clone)]
pub struct SaslConfig {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SaslConfig {
    pub fn new(mechanism: &str, username: &str, password: &str) -> Result<Self, ClientError> {
        let mechanism = mechanism.to_ascii_uppercase();
        if !matches!(
            mechanism.as_str(),
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
        ) {
            return Err(ClientError::Config(format!(
                "sasl.mechanism {mechanism}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )));
        }
        if username.is_empty() {
            return Err(ClientError::Config(
                "SASL needs sasl.username (and sasl.password)".into(),
            ));
        }
        Ok(SaslConfig {
            mechanism,
            username: username.to_string(),
            password: password.to_string(),
        })
    }
}

/// TLS over TCP, trusting the authorities in one PEM file.
pub struct TlsTransport {
    connector: TlsConnector,
}

impl TlsTransport {
    /// Reads `ssl.ca.location`, and with `client` (`ssl.certificate.location`,
    /// `ssl.key.location`: PEM files) the certificate this client presents to brokers that
    /// ask for one. Blocking file I/O: call it before the runtime is busy.
    pub fn new(
        ca_location: &Path,
        client: Option<(&Path, &Path)>,
    ) -> Result<TlsTransport, ClientError> {
        let err = |reason: String| {
            ClientError::Config(format!(
                "ssl.ca.location {}: {reason}",
                ca_location.display()
            ))
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_location).map_err(|e| err(e.to_string()))? {
            roots
                .add(cert.map_err(|e| err(e.to_string()))?)
                .map_err(|e| err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(err("no CERTIFICATE in the file".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = TlsConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let bad = |what: &str, path: &Path, e: String| {
                    ClientError::Config(format!("{what} {}: {e}", path.display()))
                };
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| bad("ssl.certificate.location", cert, e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("ssl.certificate.location", cert, e.to_string()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad("ssl.key.location", key, e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ClientError::Config(format!("the client certificate: {e}")))?
            }
        };
        Ok(TlsTransport {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
}

impl Transport for TlsTransport {
    fn connect<'a>(&'a self, addr: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let host = addr
                .rsplit_once(':')
                .map_or(addr, |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            let stream = self.connector.connect(name, stream).await?;
            let (read, write) = tokio::io::split(stream);
            Ok((Box::new(read) as ReadHalf, Box::new(write) as WriteHalf))
        })
    }
}
