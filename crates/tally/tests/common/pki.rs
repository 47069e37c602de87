#![allow(dead_code)]
//! Certificates for TLS tests, made with rcgen: an authority, a broker certificate for
//! 127.0.0.1 and localhost signed by it, client certificates, and the same from another
//! authority (to be refused).

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub keystore: PathBuf,
    /// A broker certificate the other authority signed.
    pub other_keystore: PathBuf,
    /// Client certificates and keys: one the authority signed, one the other authority signed.
    pub client: (PathBuf, PathBuf),
    /// Another client the authority signed (CN=bob).
    pub client_bob: (PathBuf, PathBuf),
    pub other_client: (PathBuf, PathBuf),
}

fn authority(name: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = authority("Tally test authority");
    let (other, other_key) = authority("Someone else");
    let broker_cert = |issuer: &Certificate, issuer_key: &KeyPair| {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "tally broker");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    };
    let client_cert = |issuer: &Certificate, issuer_key: &KeyPair, name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (client, client_key) = client_cert(&ca, &ca_key, "alice");
    let (bob, bob_key) = client_cert(&ca, &ca_key, "bob");
    let (other_client, other_client_key) = client_cert(&other, &other_key, "alice");
    Pki {
        ca: write("ca.pem", ca.pem()),
        other_ca: write("other-ca.pem", other.pem()),
        keystore: write("broker.pem", broker_cert(&ca, &ca_key)),
        other_keystore: write("other-broker.pem", broker_cert(&other, &other_key)),
        client: (write("client.pem", client), write("client.key", client_key)),
        client_bob: (write("bob.pem", bob), write("bob.key", bob_key)),
        other_client: (
            write("other-client.pem", other_client),
            write("other-client.key", other_client_key),
        ),
        _dir: dir,
    }
}
