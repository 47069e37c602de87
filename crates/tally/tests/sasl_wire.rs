//! A SASL_PLAINTEXT listener, spoken to frame by frame: before authentication a connection
//! gets ApiVersions and the SASL exchange and nothing else (a Produce closes it and stores
//! nothing); a wrong password, an unknown user and an unsupported mechanism are refused with
//! Kafka's codes and the connection closes; SCRAM credentials changed with
//! AlterUserScramCredentials are on disk before the answer and survive SIGKILL.

use std::path::Path;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tally_protocol::scram::ScramMechanism;
use tally_testkit::{batch, http_get, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const ADMIN: (&str, &str) = ("admin", "admin-secret");
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

fn sasl_broker() -> BrokerProcess {
    let users = format!("sasl.bootstrap.users={}:{}", ADMIN.0, ADMIN.1);
    BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SASL_PLAINTEXT://",
        &["--set", &users],
        &[],
    )
}

fn connect(broker: &BrokerProcess) -> WireClient {
    WireClient::connect(broker.bootstrap().parse().unwrap()).unwrap()
}

fn admin(broker: &BrokerProcess) -> WireClient {
    let mut c = connect(broker);
    c.authenticate("SCRAM-SHA-512", ADMIN.0, ADMIN.1)
        .unwrap()
        .expect("the bootstrap user authenticates");
    c
}

fn metadata() -> MetadataRequest {
    MetadataRequest::default().with_topics(None)
}

#[test]
fn before_authentication_only_api_versions_and_sasl_are_answered() {
    let broker = sasl_broker();
    let mut admin = admin(&broker);
    admin.create_topic("guarded", 1).unwrap();

    let mut c = connect(&broker);
    let versions = c.send(&ApiVersionsRequest::default(), 3).unwrap();
    let advertised = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(advertised(ApiKey::SaslHandshake), Some((1, 1)));
    assert_eq!(advertised(ApiKey::SaslAuthenticate), Some((0, 2)));
    // Metadata before authenticating: the connection closes without an answer.
    assert!(c.send(&metadata(), 12).is_err());

    // A Produce before authenticating: closed, and nothing stored.
    let mut c = connect(&broker);
    let (pid, epoch) = admin.init_producer_id().unwrap();
    let records = batch(pid, epoch, 0, 3);
    assert!(c.produce(9, "guarded", 0, records.clone()).is_err());
    assert_eq!(admin.list_offset("guarded", 0, -1).unwrap(), 0);

    // The same Produce after authenticating is stored.
    let mut c = connect(&broker);
    c.authenticate("PLAIN", ADMIN.0, ADMIN.1).unwrap().unwrap();
    let answer = c.produce(9, "guarded", 0, records).unwrap();
    assert_eq!(answer.error_code, 0);
    assert_eq!(admin.list_offset("guarded", 0, -1).unwrap(), 3);
    // One SaslHandshake per connection: a second is refused.
    let again = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    assert_eq!(c.send(&again, 1).unwrap().error_code, 34);
}

/// Every refusal: the code, then the connection is closed; the next connection with the
/// right password gets in. The broker counts the failures.
#[test]
fn wrong_credentials_are_refused_and_end_the_connection() {
    let broker = sasl_broker();
    let attempts = [
        ("SCRAM-SHA-512", ADMIN.0, "wrong"),
        ("SCRAM-SHA-256", ADMIN.0, "wrong"),
        ("SCRAM-SHA-512", "nobody", ADMIN.1),
        ("PLAIN", ADMIN.0, "wrong"),
        ("PLAIN", "nobody", ADMIN.1),
    ];
    for (mechanism, user, password) in attempts {
        let mut c = connect(&broker);
        let (code, message) = c
            .authenticate(mechanism, user, password)
            .unwrap()
            .expect_err("refused");
        assert_eq!(
            code, SASL_AUTHENTICATION_FAILED,
            "{mechanism} {user}: {message}"
        );
        assert!(
            !message.contains(password),
            "the message repeats no password"
        );
        assert!(c.is_closed_by_peer(), "{mechanism} {user}: still open");
    }
    let mut c = connect(&broker);
    let (code, enabled) = c
        .authenticate("GSSAPI", ADMIN.0, ADMIN.1)
        .unwrap()
        .unwrap_err();
    assert_eq!(code, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(enabled, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512");
    assert!(c.is_closed_by_peer());

    let mut c = admin(&broker);
    assert!(c.send(&metadata(), 12).is_ok());
    let (_, text) = http_get(broker.http_addr().unwrap(), "/metrics").unwrap();
    let failures = text
        .lines()
        .find(|l| l.starts_with("tally_authentication_failures_total "))
        .unwrap_or_else(|| panic!("no failure counter in\n{text}"));
    assert!(failures.ends_with(" 5"), "{failures}");
}

fn upsert(
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> ScramCredentialUpsertion {
    let salt = format!("salt-of-{user}").into_bytes();
    let salted = m.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(m.kafka_type())
        .with_iterations(iterations)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))
}

fn alter(
    c: &mut WireClient,
    upsertions: Vec<ScramCredentialUpsertion>,
    deletions: Vec<ScramCredentialDeletion>,
) -> Vec<(String, i16)> {
    let request = AlterUserScramCredentialsRequest::default()
        .with_upsertions(upsertions)
        .with_deletions(deletions);
    let answer = c.send(&request, 0).unwrap();
    answer
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect()
}

/// A described user: name, error code, (mechanism, iterations) of each credential.
type Described = (String, i16, Vec<(i8, i32)>);

fn describe(c: &mut WireClient, users: &[&str]) -> Vec<Described> {
    let names = users
        .iter()
        .map(|u| UserName::default().with_name(StrBytes::from_string(u.to_string())))
        .collect();
    let answer = c
        .send(
            &DescribeUserScramCredentialsRequest::default().with_users(Some(names)),
            0,
        )
        .unwrap();
    answer
        .results
        .iter()
        .map(|r| {
            let infos = r
                .credential_infos
                .iter()
                .map(|i| (i.mechanism, i.iterations))
                .collect();
            (r.user.to_string(), r.error_code, infos)
        })
        .collect()
}

fn can_authenticate(broker: &BrokerProcess, mechanism: &str, user: &str, password: &str) -> bool {
    connect(broker)
        .authenticate(mechanism, user, password)
        .unwrap()
        .is_ok()
}

#[test]
fn altered_credentials_are_durable_and_survive_sigkill() {
    let mut broker = sasl_broker();
    let mut c = admin(&broker);
    let sha512 = ScramMechanism::Sha512;
    let results = alter(
        &mut c,
        vec![
            upsert("alice", sha512, "alice-secret", 8192),
            upsert("weak", sha512, "weak", 1000),
        ],
        vec![],
    );
    assert_eq!(results, vec![("alice".into(), 0), ("weak".into(), 93)]);
    let described = describe(&mut c, &["alice", "nobody"]);
    assert_eq!(
        described,
        vec![
            ("alice".into(), 0, vec![(2, 8192)]),
            ("nobody".into(), 91, vec![]),
        ]
    );
    assert!(can_authenticate(
        &broker,
        "SCRAM-SHA-512",
        "alice",
        "alice-secret"
    ));
    assert!(!can_authenticate(
        &broker,
        "SCRAM-SHA-256",
        "alice",
        "alice-secret"
    ));
    assert!(can_authenticate(&broker, "PLAIN", "alice", "alice-secret"));

    broker.kill9();
    broker.restart();
    assert!(can_authenticate(
        &broker,
        "SCRAM-SHA-512",
        "alice",
        "alice-secret"
    ));
    assert!(!can_authenticate(&broker, "SCRAM-SHA-512", "weak", "weak"));

    // A new password replaces the old one; a deletion takes the user out.
    let mut c = admin(&broker);
    let results = alter(
        &mut c,
        vec![upsert("alice", sha512, "changed", 4096)],
        vec![],
    );
    assert_eq!(results, vec![("alice".into(), 0)]);
    assert!(!can_authenticate(
        &broker,
        "SCRAM-SHA-512",
        "alice",
        "alice-secret"
    ));
    assert!(can_authenticate(
        &broker,
        "SCRAM-SHA-512",
        "alice",
        "changed"
    ));
    let deletion = ScramCredentialDeletion::default()
        .with_name(StrBytes::from_static_str("alice"))
        .with_mechanism(sha512.kafka_type());
    assert_eq!(
        alter(&mut c, vec![], vec![deletion]),
        vec![("alice".into(), 0)]
    );
    broker.kill9();
    broker.restart();
    assert!(!can_authenticate(
        &broker,
        "SCRAM-SHA-512",
        "alice",
        "changed"
    ));
    let mut c = admin(&broker);
    assert_eq!(describe(&mut c, &["alice"])[0].1, 91);
    let file = std::fs::read_to_string(broker.data_dir().join("scram-credentials.json")).unwrap();
    assert!(!file.contains("admin-secret") && !file.contains("changed"));
}

fn start_error(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(TALLY)
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--listen", "SASL_PLAINTEXT://127.0.0.1:0", "--http", "off"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_sasl_settings_stop_the_start_with_a_clear_message() {
    let err = start_error(&["--set", "sasl.bootstrap.users.file=/nonexistent/users"]);
    assert!(err.contains("/nonexistent/users"), "{err}");
    let err = start_error(&["--set", "sasl.bootstrap.users=admin-and-no-colon"]);
    assert!(err.contains("NAME:PASSWORD"), "{err}");
    assert!(
        !err.contains("admin-and-no-colon"),
        "the entry is not echoed: {err}"
    );
    let err = start_error(&["--set", "sasl.enabled.mechanisms=GSSAPI"]);
    assert!(err.contains("GSSAPI"), "{err}");
}
