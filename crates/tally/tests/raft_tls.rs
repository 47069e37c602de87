//! Raft between nodes over mutual TLS (`inter.broker.listener.name` naming an SSL listener).
//! Three `tally serve` processes form a cluster whose Raft traffic is TLS: a replicated topic
//! is created, written and read. Then the Raft ports are attacked with a forwarded
//! CreateTopic (what a node sends the controller's leader): in plaintext, with a certificate
//! of another authority, and with a certificate of the right authority whose principal has
//! no ClusterAction. Each is refused and creates nothing, while the same command sent with a
//! node's own certificate is taken: so the refusals are the security's, not a bad command's.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tally_broker::broker_config::BrokerConfig;
use tally_broker::security::{AclStore, RaftTls};
use tally_raft::{RaftTransport, TokioTcp};
use tally_testkit::{free_fixed_port, BrokerProcess};

#[path = "common/pki.rs"]
mod pki;
use pki::{pki, Pki};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const CONTROLLER_GROUP: &str = "__cluster_metadata";
const MESSAGES: usize = 50;

/// `tally` over SSL (no client certificate: the Kafka listener does not ask for one).
fn tally(broker: &BrokerProcess, ca: &Path, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(TALLY);
    command
        .args(["--bootstrap", &broker.bootstrap()])
        .args(["--security-protocol", "SSL", "--ssl-ca-location"])
        .arg(ca)
        .args(args);
    tally_testkit::run_with_stdin(&mut command, stdin)
}

fn topics(broker: &BrokerProcess, ca: &Path) -> String {
    let out = tally(broker, ca, &["topic", "list"], "");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Raft transport presenting `keystore` (certificate and key in one PEM file) and
/// trusting the test authority, as a node would.
fn tls_transport(pki: &Pki, keystore: &Path) -> Arc<dyn RaftTransport> {
    let mut config = BrokerConfig::new();
    config
        .set("ssl.keystore.location", &keystore.to_string_lossy())
        .unwrap();
    config
        .set("ssl.truststore.location", &pki.ca.to_string_lossy())
        .unwrap();
    let (server, client) = tally_broker::tls::raft_configs(&config, None).unwrap();
    let acls_dir = tempfile::tempdir().unwrap();
    let acls = AclStore::open(acls_dir.path(), false, Default::default()).unwrap();
    RaftTls::wrap(TokioTcp::shared(), server, client, Arc::new(acls))
}

/// A forwarded CreateTopic for `name`, as a node sends the controller's leader.
fn forward_create(
    runtime: &tokio::runtime::Runtime,
    transport: &dyn RaftTransport,
    raft_addr: &str,
    name: &str,
) -> std::io::Result<String> {
    let command = format!(
        r#"{{"CreateTopic":{{"name":"{name}","topic_id":"{}","partitions":1,"replication_factor":1,"configs":{{}}}}}}"#,
        uuid::Uuid::new_v4()
    );
    runtime
        .block_on(tally_raft::forward(
            transport,
            raft_addr,
            CONTROLLER_GROUP,
            Bytes::from(command),
            Duration::from_secs(5),
        ))
        .map(|answer| String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn raft_between_nodes_is_mutual_tls_and_refuses_strangers() {
    let pki = pki();
    let raft_ports: Vec<u16> = (0..3).map(|_| free_fixed_port()).collect();
    let raft_addrs: Vec<String> = raft_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let voters = raft_addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}@{a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let keystore = format!("ssl.keystore.location={}", pki.keystore.display());
    let truststore = format!("ssl.truststore.location={}", pki.ca.display());
    let nodes: Vec<BrokerProcess> = (1..=3)
        .map(|id: u32| {
            let id = id.to_string();
            BrokerProcess::start_with_scheme(
                Path::new(TALLY),
                "SSL://",
                &[
                    "--node-id",
                    &id,
                    "--voters",
                    &voters,
                    "--set",
                    &keystore,
                    "--set",
                    &truststore,
                    "--set",
                    "inter.broker.listener.name=SSL",
                    "--set",
                    "authorizer.class.name=tally",
                    // The nodes' certificate is a super user, and so is the test's command
                    // line (it presents no certificate: User:ANONYMOUS). No one else may do
                    // anything: allow.everyone.if.no.acl.found would let any certificate of
                    // the authority in, as it would in Kafka.
                    "--set",
                    "super.users=User:CN=tally broker;User:ANONYMOUS",
                ],
                &[],
            )
        })
        .collect();

    // The cluster forms over TLS: a topic on all three nodes takes acks=all writes (a quorum
    // commit) and reads back whole.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tally(
            &nodes[0],
            &pki.ca,
            &[
                "topic",
                "create",
                "replicated",
                "--partitions",
                "1",
                "--replication-factor",
                "3",
            ],
            "",
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no replicated topic: {out:?}\n{}",
            nodes[0].logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let lines: String = (0..MESSAGES).map(|i| format!("m{i}\n")).collect();
    let out = tally(&nodes[1], &pki.ca, &["produce", "replicated"], &lines);
    assert!(out.status.success(), "{out:?}");
    let read = tally(
        &nodes[2],
        &pki.ca,
        &[
            "consume",
            "replicated",
            "--from-beginning",
            "--max-messages",
            &MESSAGES.to_string(),
        ],
        "",
    );
    assert!(read.status.success(), "{read:?}");
    assert_eq!(String::from_utf8_lossy(&read.stdout), lines);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A node's own certificate is let in: every node answers (the leader creates the topic,
    // the others say who leads).
    let node = tls_transport(&pki, &pki.keystore);
    let answers: Vec<String> = raft_addrs
        .iter()
        .map(|a| forward_create(&runtime, &*node, a, "from-a-node").expect("a node is let in"))
        .collect();
    assert!(
        answers.iter().any(|a| a.contains("TopicCreated")),
        "{answers:?}"
    );

    // Strangers are not: plaintext, another authority, and the right authority without
    // ClusterAction (alice, a client's certificate).
    let other = tls_transport(&pki, &pki.other_keystore);
    let alice_keystore = pki.ca.with_file_name("alice-keystore.pem");
    std::fs::write(
        &alice_keystore,
        format!(
            "{}{}",
            std::fs::read_to_string(&pki.client.0).unwrap(),
            std::fs::read_to_string(&pki.client.1).unwrap()
        ),
    )
    .unwrap();
    let alice = tls_transport(&pki, &alice_keystore);
    let strangers: [(&str, &dyn RaftTransport); 3] = [
        ("plaintext", &TokioTcp),
        ("other-authority", &*other),
        ("alice", &*alice),
    ];
    for (who, transport) in strangers {
        for addr in &raft_addrs {
            let answer = forward_create(&runtime, transport, addr, &format!("intruder-{who}"));
            assert!(answer.is_err(), "{who} at {addr} was answered: {answer:?}");
        }
    }
    let listed = topics(&nodes[0], &pki.ca);
    assert!(listed.contains("from-a-node"), "{listed}");
    assert!(!listed.contains("intruder"), "{listed}");
    let logs = nodes.iter().map(|n| n.logs()).collect::<String>();
    assert!(
        logs.contains("raft peer refused: no ClusterAction"),
        "alice's refusal is logged"
    );
}

/// SASL is not how nodes authenticate to each other: naming a SASL listener for inter-broker
/// traffic in cluster mode stops the start with the reason.
#[test]
fn a_sasl_inter_broker_listener_is_refused_in_cluster_mode() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_fixed_port();
    let out = Command::new(TALLY)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http", "off", "--listen", "SASL_PLAINTEXT://127.0.0.1:0"])
        .args(["--node-id", "1", "--voters", &format!("1@127.0.0.1:{port}")])
        .args(["--set", "inter.broker.listener.name=SASL_PLAINTEXT"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authenticated by certificates"), "{err}");
}
