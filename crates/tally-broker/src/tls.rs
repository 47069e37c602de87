//! TLS for an SSL listener, with rustls (the `ring` provider): the broker's certificate chain
//! and private key from one PEM file (`ssl.keystore.location`, as Kafka's
//! `ssl.keystore.type=PEM`), and, with `ssl.client.auth` `requested` or `required`, client
//! certificates checked against the authorities in `ssl.truststore.location`. The keystore is
//! read again when its file changes (checked every `ssl.keystore.check.interval.ms` off the
//! async workers): new connections get the new certificate, without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tracing::{info, warn};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
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
    #[error("inter-broker TLS (inter.broker.listener.name names an SSL listener) needs ssl.truststore.location: the authority of the nodes' certificates")]
    NoRaftTruststore,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The keystore in use, swapped when its file changes.
pub struct ReloadingKeystore {
    path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl fmt::Debug for ReloadingKeystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingKeystore")
            .field("path", &self.path)
            .finish()
    }
}

impl ResolvesServerCert for ReloadingKeystore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().1))
    }
}

/// The same certificate, presented as a client's: a node's Raft connections to its peers.
impl ResolvesClientCert for ReloadingKeystore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().1))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ReloadingKeystore {
    fn load(path: &Path, provider: Arc<CryptoProvider>) -> Result<ReloadingKeystore, TlsError> {
        let modified = modified(path);
        let key = certified_key(path, &provider)?;
        Ok(ReloadingKeystore {
            path: path.to_path_buf(),
            provider,
            current: RwLock::new((modified, key)),
        })
    }

    /// Reads the keystore again if its file changed; a file that does not load keeps the
    /// certificate in use (and says why). Blocking file I/O: run it off the async workers.
    pub fn reload_if_changed(&self) {
        let modified = modified(&self.path);
        if modified.is_none() || modified == self.current.read().0 {
            return;
        }
        match certified_key(&self.path, &self.provider) {
            Ok(key) => {
                *self.current.write() = (modified, key);
                info!(path = %self.path.display(), "reloaded the TLS keystore");
            }
            Err(e) => {
                // Remember the time, so a bad file is reported once, not at every check.
                self.current.write().0 = modified;
                warn!(error = %e, "the changed TLS keystore does not load; keeping the one in use");
            }
        }
    }

    /// Checks the file every `interval` until shutdown, on the blocking pool.
    pub fn watch(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
                let keystore = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || keystore.reload_if_changed()).await;
            }
        });
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn certified_key(path: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let (certs, key) = read_keystore(path)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Keystore {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing);
    // The certificate must be the key's: a mismatch would fail every handshake later.
    certified.keys_match().map_err(|e| TlsError::Keystore {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

/// The server configuration of an SSL listener, read and checked at start-up, and its
/// keystore (to watch for changes).
pub fn server_config(
    config: &BrokerConfig,
) -> Result<(Arc<ServerConfig>, Arc<ReloadingKeystore>), TlsError> {
    let (keystore, _) = config.get("ssl.keystore.location");
    if keystore.is_empty() {
        return Err(TlsError::NoKeystore);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let keystore = Arc::new(ReloadingKeystore::load(
        Path::new(&keystore),
        Arc::clone(&provider),
    )?);
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
    let resolver: Arc<dyn ResolvesServerCert> = keystore.clone();
    Ok((Arc::new(builder.with_cert_resolver(resolver)), keystore))
}

/// Both ends of Raft's connections between nodes: each node presents its keystore's
/// certificate, as a server and as a client, and accepts only a peer whose certificate an
/// authority in `ssl.truststore.location` signed (client authentication is always required,
/// whatever `ssl.client.auth` says for clients). `keystore` is the SSL listener's, when it has
/// one: a reloaded certificate then serves both. Blocking file I/O.
pub fn raft_configs(
    config: &BrokerConfig,
    keystore: Option<Arc<ReloadingKeystore>>,
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let keystore = match keystore {
        Some(k) => k,
        None => {
            let (path, _) = config.get("ssl.keystore.location");
            if path.is_empty() {
                return Err(TlsError::NoKeystore);
            }
            Arc::new(ReloadingKeystore::load(
                Path::new(&path),
                Arc::clone(&provider),
            )?)
        }
    };
    let (truststore, _) = config.get("ssl.truststore.location");
    if truststore.is_empty() {
        return Err(TlsError::NoRaftTruststore);
    }
    let roots = Arc::new(read_truststore(Path::new(&truststore))?);
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|e| TlsError::Truststore {
                path: truststore.clone(),
                reason: e.to_string(),
            })?;
    let server: Arc<dyn ResolvesServerCert> = keystore.clone();
    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(server);
    let client: Arc<dyn ResolvesClientCert> = keystore;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_cert_resolver(client);
    Ok((Arc::new(server), Arc::new(client)))
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
