use super::*;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};

fn upsert(user: &str, mechanism: i8, iterations: i32, key_len: usize) -> ScramCredentialUpsertion {
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(bytes::Bytes::from_static(b"salt"))
        .with_salted_password(bytes::Bytes::from(vec![7u8; key_len]))
}

fn delete(user: &str, mechanism: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(mechanism)
}

fn codes(outcomes: &BTreeMap<String, Option<Refusal>>) -> Vec<(String, i16)> {
    outcomes
        .iter()
        .map(|(u, o)| (u.clone(), o.as_ref().map_or(0, |(e, _)| e.code())))
        .collect()
}

#[test]
fn each_user_is_accepted_or_refused_whole() {
    let mut users = Users::new();
    users.entry("old".into()).or_default().insert(
        ScramMechanism::Sha256,
        ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"s", 4096),
    );
    let request = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![
            upsert("alice", 2, 4096, 64),
            upsert("alice", 1, 8192, 32),
            upsert("bob", 1, 4096, 32),
            upsert("bob", 2, 1000, 64),
            upsert("carol", 1, 20000, 32),
            upsert("dave", 3, 4096, 32),
            upsert("erin", 1, 4096, 31),
            upsert("", 1, 4096, 32),
            upsert("old", 2, 4096, 64),
        ])
        .with_deletions(vec![
            delete("frank", 1),
            delete("old", 1),
            delete("gina", 2),
        ]);
    let mut request = request;
    request.upsertions.push(upsert("gina", 2, 4096, 64));
    let (outcomes, changes) = decide(&request, &users);
    let e = |e: ResponseError| e.code();
    assert_eq!(
        codes(&outcomes),
        vec![
            ("".into(), e(ResponseError::UnacceptableCredential)),
            ("alice".into(), 0),
            ("bob".into(), e(ResponseError::UnacceptableCredential)),
            ("carol".into(), e(ResponseError::UnacceptableCredential)),
            ("dave".into(), e(ResponseError::UnsupportedSaslMechanism)),
            ("erin".into(), e(ResponseError::UnacceptableCredential)),
            ("frank".into(), e(ResponseError::ResourceNotFound)),
            ("gina".into(), e(ResponseError::ResourceNotFound)),
            ("old".into(), 0),
        ]
    );
    // bob's good upsertion is dropped with his bad one.
    let users_changed: Vec<&str> = changes.iter().map(change_user).collect();
    assert_eq!(users_changed, vec!["alice", "alice", "old", "old"]);
    assert!(matches!(
        &changes[2],
        CredentialChange::Delete {
            mechanism: ScramMechanism::Sha256,
            ..
        }
    ));
}

#[test]
fn the_same_credential_twice_is_a_duplicate() {
    let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        upsert("alice", 2, 4096, 64),
        upsert("alice", 2, 5000, 64),
    ]);
    let (outcomes, changes) = decide(&request, &Users::new());
    assert_eq!(
        codes(&outcomes),
        vec![("alice".into(), ResponseError::DuplicateResource.code())]
    );
    assert!(changes.is_empty());
}

#[test]
fn an_upserted_credential_is_the_one_its_password_makes() {
    let salted = ScramMechanism::Sha512.salted_password(b"pw", b"salt", 4096);
    let mut u = upsert("alice", 2, 4096, 64);
    u.salted_password = bytes::Bytes::from(salted);
    let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![u]);
    let (_, changes) = decide(&request, &Users::new());
    let [CredentialChange::Upsert { credential, .. }] = changes.as_slice() else {
        panic!("{changes:?}")
    };
    assert!(credential.matches_password(ScramMechanism::Sha512, b"pw"));
    assert!(!credential.matches_password(ScramMechanism::Sha512, b"pW"));
}
