//! ACLs with the authorizer on (`authorizer.class.name` set), on a SASL_PLAINTEXT listener:
//! set with `tally acl`, checked on the wire and in the data. Without Write a Produce gets
//! TOPIC_AUTHORIZATION_FAILED and nothing is stored; without Read a Fetch gets nothing; DENY
//! beats ALLOW; Metadata hides what a principal may not describe; an idempotent producer
//! needs Write on some topic (KIP-679); a group needs Read on it; ACLs survive SIGKILL.

use std::path::Path;
use std::process::{Command, Output};

use kafka_protocol::messages::MetadataRequest;
use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

fn broker() -> BrokerProcess {
    BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SASL_PLAINTEXT://",
        &[
            "--set",
            "authorizer.class.name=tally",
            "--set",
            "super.users=User:admin",
        ],
        &[(
            "TALLY_SASL_BOOTSTRAP_USERS",
            "admin:admin-pw,alice:alice-pw,bob:bob-pw",
        )],
    )
}

fn as_user(broker: &BrokerProcess, user: &str) -> WireClient {
    let mut c = WireClient::connect(broker.bootstrap().parse().unwrap()).unwrap();
    c.authenticate("SCRAM-SHA-512", user, &format!("{user}-pw"))
        .unwrap()
        .unwrap();
    c
}

fn tally(broker: &BrokerProcess, user: &str, args: &[&str]) -> Output {
    Command::new(TALLY)
        .args(args)
        .env("TALLY_BOOTSTRAP", broker.bootstrap())
        .env("TALLY_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("TALLY_SASL_USERNAME", user)
        .env("TALLY_SASL_PASSWORD", format!("{user}-pw"))
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn acl(broker: &BrokerProcess, args: &[&str]) {
    let mut all = vec!["acl", "add"];
    all.extend_from_slice(args);
    ok(tally(broker, "admin", &all));
}

fn produce_code(c: &mut WireClient, admin: &mut WireClient, topic: &str) -> i16 {
    let (pid, epoch) = admin.init_producer_id().unwrap();
    c.produce(9, topic, 0, batch(pid, epoch, 0, 2))
        .unwrap()
        .error_code
}

fn metadata_topics(c: &mut WireClient) -> Vec<(String, i16)> {
    let r = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .unwrap();
    let mut topics: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code))
        .collect();
    topics.sort();
    topics
}

#[test]
fn acls_decide_who_writes_reads_and_sees() {
    let mut broker = broker();
    let mut admin = as_user(&broker, "admin");
    for t in ["orders", "orders-secret", "payroll"] {
        admin.create_topic(t, 1).unwrap();
    }
    acl(
        &broker,
        &[
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--operation",
            "Read",
            "--topic",
            "orders",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    acl(
        &broker,
        &[
            "--deny-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "orders-secret",
        ],
    );
    acl(
        &broker,
        &[
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--group",
            "alice-readers",
        ],
    );
    let listed = ok(tally(&broker, "admin", &["acl", "list"]));
    assert_eq!(listed.lines().count(), 2 + 4, "{listed}");

    // Without Write: refused, and nothing stored.
    let mut bob = as_user(&broker, "bob");
    assert_eq!(
        produce_code(&mut bob, &mut admin, "orders"),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(admin.list_offset("orders", 0, -1).unwrap(), 0);
    // With Write (a prefixed ALLOW): stored.
    let mut alice = as_user(&broker, "alice");
    assert_eq!(produce_code(&mut alice, &mut admin, "orders"), 0);
    assert_eq!(admin.list_offset("orders", 0, -1).unwrap(), 2);
    // DENY beats ALLOW.
    assert_eq!(
        produce_code(&mut alice, &mut admin, "orders-secret"),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(admin.list_offset("orders-secret", 0, -1).unwrap(), 0);

    // Without Read: Fetch gives an error and no records.
    let (code, hw, records) = bob.fetch_once("orders", 0, 0, 1 << 20).unwrap();
    assert_eq!(
        (code, hw, records.len()),
        (TOPIC_AUTHORIZATION_FAILED, -1, 0)
    );
    let (code, _, records) = alice.fetch_once("orders", 0, 0, 1 << 20).unwrap();
    assert_eq!(code, 0);
    assert!(!records.is_empty());

    // Metadata shows each principal what it may describe.
    assert_eq!(metadata_topics(&mut bob), vec![]);
    assert_eq!(
        metadata_topics(&mut alice),
        vec![("orders".into(), 0), ("orders-secret".into(), 0)]
    );
    assert_eq!(
        metadata_topics(&mut admin).len(),
        5,
        "the super user sees every topic"
    );

    // KIP-679: an idempotent producer needs Write on some topic (or IdempotentWrite).
    let request = kafka_protocol::messages::InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    assert_eq!(
        bob.send(&request, 4).unwrap().error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    assert_eq!(alice.send(&request, 4).unwrap().error_code, 0);

    // The command line as alice: produce to her topics, read in her group, not in another.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf 'a\\nb\\n' | {TALLY} produce orders"))
        .env("TALLY_BOOTSTRAP", broker.bootstrap())
        .env("TALLY_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("TALLY_SASL_USERNAME", "alice")
        .env("TALLY_SASL_PASSWORD", "alice-pw")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let read = ok(tally(
        &broker,
        "alice",
        &[
            "consume",
            "orders",
            "-g",
            "alice-readers",
            "--from-beginning",
            "-n",
            "4",
        ],
    ));
    assert_eq!(read.lines().count(), 4, "{read}");
    let denied = tally(
        &broker,
        "alice",
        &[
            "consume",
            "orders",
            "-g",
            "other-group",
            "--from-beginning",
            "-n",
            "1",
        ],
    );
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("GroupAuthorizationFailed"), "{err}");

    // ACLs are on disk before the answer: they survive SIGKILL, and so do removals.
    broker.kill9();
    broker.restart();
    let mut admin = as_user(&broker, "admin");
    let mut alice = as_user(&broker, "alice");
    assert_eq!(
        produce_code(&mut alice, &mut admin, "orders-secret"),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(produce_code(&mut alice, &mut admin, "orders"), 0);
    ok(tally(
        &broker,
        "admin",
        &[
            "acl",
            "remove",
            "--deny-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "orders-secret",
        ],
    ));
    broker.kill9();
    broker.restart();
    let mut admin = as_user(&broker, "admin");
    let mut alice = as_user(&broker, "alice");
    assert_eq!(produce_code(&mut alice, &mut admin, "orders-secret"), 0);
    // Creating ACLs needs Alter on the cluster.
    let refused = tally(
        &broker,
        "alice",
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "All",
            "--topic",
            "payroll",
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ClusterAuthorizationFailed"));
}

/// The administrative and transactional APIs' rules: a transactional id needs Write on it,
/// lists show only what the principal may describe, and an API without a rule for ordinary
/// principals (DescribeQuorum) closes their connection.
#[test]
fn transactional_ids_lists_and_cluster_apis_are_guarded() {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let broker = broker();
    let mut admin = as_user(&broker, "admin");
    admin.create_topic("orders", 1).unwrap();
    let txn = |id: &str| {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.into()))))
            .with_transaction_timeout_ms(60_000)
    };
    let mut alice = as_user(&broker, "alice");
    assert_eq!(alice.send(&txn("alice-txn"), 4).unwrap().error_code, 53);
    acl(
        &broker,
        &[
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--transactional-id",
            "alice-txn",
        ],
    );
    let mut alice = as_user(&broker, "alice");
    let answer = alice.send(&txn("alice-txn"), 4).unwrap();
    assert_eq!(answer.error_code, 0);
    let end = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("alice-txn")))
        .with_producer_id(answer.producer_id)
        .with_producer_epoch(answer.producer_epoch)
        .with_committed(true);
    let mut bob = as_user(&broker, "bob");
    assert_eq!(
        bob.send(&end, 3).unwrap().error_code,
        53,
        "bob may not end alice's transaction"
    );

    // DescribeConfigs: refused per resource.
    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders")),
    ]);
    let answer = bob.send(&describe, 4).unwrap();
    assert_eq!(answer.results.len(), 1);
    assert_eq!(answer.results[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(admin.send(&describe, 4).unwrap().results[0].error_code, 0);

    // ListTransactions lists only the ids the principal may describe.
    let listed = |c: &mut WireClient| {
        c.send(&ListTransactionsRequest::default(), 1)
            .unwrap()
            .transaction_states
            .len()
    };
    assert_eq!(listed(&mut admin), 1);
    assert_eq!(listed(&mut alice), 1, "Write implies Describe");
    assert_eq!(listed(&mut bob), 0);

    // The cluster's APIs need Describe (or Alter) on the cluster.
    let quorum = DescribeQuorumRequest::default();
    assert_eq!(bob.send(&quorum, 2).unwrap().error_code, 31);
    assert_ne!(admin.send(&quorum, 2).unwrap().error_code, 31);
    acl(
        &broker,
        &[
            "--allow-principal",
            "User:bob",
            "--operation",
            "Describe",
            "--cluster",
        ],
    );
    assert_ne!(bob.send(&quorum, 2).unwrap().error_code, 31);
}
