//! TLS for an SSL listener, with rustls (the `ring` provider): the broker's certificate chain
//! and private key from one PEM file (`ssl.keystore.location`, as Kafka's
//! `ssl.keystore.type=PEM`), and, with `ssl.client.auth` `requested` or `required`, client
//! certificates checked against the authorities in `ssl.truststore.location`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;

use crate::broker_config::BrokerConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("an SSL listener needs ssl.keystore.location: a PEM file with the certificate chain and the private key")]
    NoKeystore,
    #[error("ssl.keystore.location {path}: {reason}")]
    Keystore { path: String, reason: String },
    #[error("ssl.truststore.location {path}: {reason}")]
    Truststore { path: String, reason: String },
    #[error("ssl.client.auth={0} needs ssl.truststore.location: the authorities of the client certificates")]
    NoTruststore(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server configuration of an SSL listener, read and checked at start-up.
pub fn server_config(config: &BrokerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let (keystore, _) = config.get("ssl.keystore.location");
    if keystore.is_empty() {
        return Err(TlsError::NoKeystore);
    }
    let (certs, key) = read_keystore(Path::new(&keystore))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let (client_auth, _) = config.get("ssl.client.auth");
    let builder = if client_auth == "none" {
        builder.with_no_client_auth()
    } else {
        let (truststore, _) = config.get("ssl.truststore.location");
        if truststore.is_empty() {
            return Err(TlsError::NoTruststore(client_auth));
        }
        let roots = read_truststore(Path::new(&truststore))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if client_auth == "required" {
            verifier.build()
        } else {
            verifier.allow_unauthenticated().build()
        }
        .map_err(|e| TlsError::Truststore {
            path: truststore.clone(),
            reason: e.to_string(),
        })?;
        builder.with_client_cert_verifier(verifier)
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

fn read_keystore(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let err = |reason: String| TlsError::Keystore {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(path).map_err(|e| err(format!("no private key: {e}")))?;
    Ok((certs, key))
}

fn read_truststore(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |reason: String| TlsError::Truststore {
        path: path.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no CERTIFICATE in the file".into()));
    }
    Ok(roots)
}
