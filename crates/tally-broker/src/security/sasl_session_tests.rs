use super::*;
use tally_protocol::scram::ScramClient;

fn store_with(user: &str, password: &str) -> (tempfile::TempDir, CredentialStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::open(dir.path()).unwrap();
    store
        .bootstrap(&[(user.to_string(), password.to_string())])
        .unwrap();
    (dir, store)
}

fn all() -> Arc<[Mechanism]> {
    Arc::from(parse_mechanisms("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512").unwrap())
}

fn token(step: Step) -> Bytes {
    match step {
        Step::Token(t) => t,
        Step::Refused { code, message } => panic!("refused {code}: {message}"),
    }
}

fn scram(m: ScramMechanism, store: &CredentialStore, user: &str, password: &str) -> SaslSession {
    let mut s = SaslSession::sasl(all());
    s.handshake(m.name()).unwrap();
    let mut client = ScramClient::new(m, user, password, "clientnonce");
    let first = token(s.authenticate(&client.first_message(), store, "servernonce"));
    assert!(!s.is_authenticated());
    let last = client.final_message(&first).unwrap();
    match s.authenticate(&last, store, "unused") {
        Step::Token(reply) => {
            client.verify_server_final(&reply).unwrap();
            assert!(s.is_authenticated());
        }
        Step::Refused { code, message } => {
            assert_eq!(code, SASL_AUTHENTICATION_FAILED);
            assert!(message.contains(m.name()), "{message}");
            assert!(!s.is_authenticated());
        }
    }
    s
}

#[test]
fn scram_authenticates_the_right_password_only() {
    let (_dir, store) = store_with("alice", "wonder");
    for m in ScramMechanism::ALL {
        let s = scram(m, &store, "alice", "wonder");
        assert!(s.is_authenticated());
        assert_eq!(s.principal(), "User:alice");
        let s = scram(m, &store, "alice", "wander");
        assert!(!s.is_authenticated());
        assert_eq!(s.principal(), ANONYMOUS);
        // An unknown user fails the same way, at the same step.
        let s = scram(m, &store, "mallory", "wonder");
        assert!(!s.is_authenticated());
    }
}

#[test]
fn plain_checks_the_password_against_the_scram_credential() {
    let (_dir, store) = store_with("alice", "wonder");
    let attempt = |bytes: &[u8]| {
        let mut s = SaslSession::sasl(all());
        s.handshake("PLAIN").unwrap();
        assert_eq!(s.pending_mechanism(), Some(Mechanism::Plain));
        let step = s.authenticate(bytes, &store, "n");
        (step, s.is_authenticated(), s.principal().to_string())
    };
    let (step, ok, principal) = attempt(b"\0alice\0wonder");
    assert_eq!(step, Step::Token(Bytes::new()));
    assert!(ok);
    assert_eq!(principal, "User:alice");
    assert!(attempt(b"alice\0alice\0wonder").1);
    for bad in [
        &b"\0alice\0wander"[..],
        b"\0bob\0wonder",
        b"bob\0alice\0wonder",
        b"\0alice",
        b"\0alice\0wonder\0x",
        b"",
    ] {
        let (step, ok, principal) = attempt(bad);
        assert!(!ok, "{bad:?}");
        assert_eq!(principal, ANONYMOUS);
        assert!(
            matches!(
                step,
                Step::Refused {
                    code: SASL_AUTHENTICATION_FAILED,
                    ..
                }
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn mechanisms_and_states_are_checked() {
    let (_dir, store) = store_with("alice", "wonder");
    let only_scram: Arc<[Mechanism]> = Arc::from(parse_mechanisms("SCRAM-SHA-512").unwrap());
    let mut s = SaslSession::sasl(only_scram);
    let (code, message) = s.handshake("PLAIN").unwrap_err();
    assert_eq!(code, UNSUPPORTED_SASL_MECHANISM);
    assert!(message.contains("SCRAM-SHA-512"), "{message}");
    assert_eq!(
        s.handshake("GSSAPI").unwrap_err().0,
        UNSUPPORTED_SASL_MECHANISM
    );

    let mut s = SaslSession::sasl(all());
    let step = s.authenticate(b"\0alice\0wonder", &store, "n");
    assert!(matches!(
        step,
        Step::Refused {
            code: ILLEGAL_SASL_STATE,
            ..
        }
    ));
    assert!(!s.is_authenticated());
    s.handshake("PLAIN").unwrap();
    assert_eq!(s.handshake("PLAIN").unwrap_err().0, ILLEGAL_SASL_STATE);

    let mut plain = SaslSession::not_sasl(ANONYMOUS.to_string());
    assert!(plain.is_authenticated());
    assert_eq!(plain.handshake("PLAIN").unwrap_err().0, ILLEGAL_SASL_STATE);
    assert!(matches!(
        plain.authenticate(b"\0alice\0wonder", &store, "n"),
        Step::Refused {
            code: ILLEGAL_SASL_STATE,
            ..
        }
    ));
    assert_eq!(plain.principal(), ANONYMOUS);
}

#[test]
fn the_enabled_list_is_checked() {
    assert_eq!(
        parse_mechanisms(" SCRAM-SHA-256 ,PLAIN,PLAIN").unwrap(),
        vec![Mechanism::Scram(ScramMechanism::Sha256), Mechanism::Plain]
    );
    assert!(parse_mechanisms("GSSAPI").unwrap_err().contains("GSSAPI"));
    assert!(parse_mechanisms("").is_err());
}
