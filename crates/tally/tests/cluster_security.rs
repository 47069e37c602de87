//! Credentials and ACLs in a three-node cluster are the controller's, so they hold on every
//! node: a user created through one node logs in on the others; an ACL added through one node
//! is enforced by the others (Write allowed where granted, TOPIC_AUTHORIZATION_FAILED and
//! nothing stored elsewhere); a node SIGKILLed and restarted still knows both; a user deleted
//! through one node is refused everywhere. Each node's only local credential is the admin of
//! `sasl.bootstrap.users`, which every node proposes at start.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tally_testkit::{free_fixed_port, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MECHANISM: &str = "SCRAM-SHA-512";

/// `tally` as `user` through `node`, with `stdin`.
fn tally_as(
    node: &BrokerProcess,
    user: &str,
    password: &str,
    args: &[&str],
    stdin: &str,
) -> Output {
    let mut command = Command::new(TALLY);
    command
        .args(["--bootstrap", &node.bootstrap()])
        .args([
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            MECHANISM,
        ])
        .args(["--sasl-username", user])
        .env("TALLY_SASL_PASSWORD", password)
        .args(args);
    tally_testkit::run_with_stdin(&mut command, stdin)
}

fn admin(node: &BrokerProcess, args: &[&str], stdin: &str) -> Output {
    tally_as(node, "admin", "admin-secret", args, stdin)
}

/// Whether `user` logs in on `node` with `password`.
fn logs_in(node: &BrokerProcess, user: &str, password: &str) -> bool {
    WireClient::connect(node.addr)
        .ok()
        .and_then(|mut c| c.authenticate(MECHANISM, user, password).ok())
        .is_some_and(|answer| answer.is_ok())
}

/// Waits (at most 30 s) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn succeeded(out: &Output) -> bool {
    out.status.success()
}

#[test]
fn credentials_and_acls_hold_on_every_node() {
    let raft_ports: Vec<u16> = (0..3).map(|_| free_fixed_port()).collect();
    let voters = raft_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<BrokerProcess> = (1..=3)
        .map(|id: u32| {
            let id = id.to_string();
            BrokerProcess::start_with_scheme(
                Path::new(TALLY),
                "SASL_PLAINTEXT://",
                &[
                    "--node-id",
                    &id,
                    "--voters",
                    &voters,
                    "--set",
                    "authorizer.class.name=tally",
                    "--set",
                    "super.users=User:admin",
                ],
                &[("TALLY_SASL_BOOTSTRAP_USERS", "admin:admin-secret")],
            )
        })
        .collect();
    for node in &nodes {
        eventually("the bootstrap admin logs in on every node", || {
            logs_in(node, "admin", "admin-secret")
        });
    }

    // A user created through node 1 logs in on nodes 2 and 3.
    let out = admin(&nodes[0], &["user", "create", "alice"], "alice-secret\n");
    assert!(succeeded(&out), "{out:?}");
    for node in &nodes[1..] {
        eventually("alice logs in on another node", || {
            logs_in(node, "alice", "alice-secret")
        });
    }
    assert!(!logs_in(&nodes[2], "alice", "wrong"));

    // An ACL added through node 2 is enforced by node 3.
    for topic in ["granted", "refused"] {
        let out = admin(
            &nodes[0],
            &[
                "topic",
                "create",
                topic,
                "--partitions",
                "1",
                "--replication-factor",
                "3",
            ],
            "",
        );
        assert!(succeeded(&out), "{out:?}");
    }
    let out = admin(
        &nodes[1],
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--operation",
            "Read",
            "--topic",
            "granted",
        ],
        "",
    );
    assert!(succeeded(&out), "{out:?}");
    eventually("node 3 lists the ACL", || {
        let listed = admin(&nodes[2], &["acl", "list"], "");
        String::from_utf8_lossy(&listed.stdout).contains("User:alice")
    });
    let alice = |node: &BrokerProcess, args: &[&str], stdin: &str| {
        tally_as(node, "alice", "alice-secret", args, stdin)
    };
    let out = alice(&nodes[2], &["produce", "granted"], "a1\na2\n");
    assert!(succeeded(&out), "{out:?}");
    let out = alice(&nodes[2], &["produce", "refused"], "r1\n");
    assert!(!succeeded(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TopicAuthorizationFailed"), "{err}");
    let end_offset = |node: &BrokerProcess, topic: &str| {
        let out = admin(
            node,
            &[
                "consume",
                topic,
                "--from-beginning",
                "--idle-timeout-ms",
                "2000",
            ],
            "",
        );
        assert!(succeeded(&out), "{out:?}");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(
        end_offset(&nodes[0], "refused"),
        0,
        "nothing refused is stored"
    );
    assert_eq!(end_offset(&nodes[0], "granted"), 2);

    // SIGKILLed and restarted, node 2 still knows alice and her ACL.
    nodes[1].kill9();
    nodes[1].restart();
    eventually("alice logs in on the restarted node", || {
        logs_in(&nodes[1], "alice", "alice-secret")
    });
    let out = alice(&nodes[1], &["produce", "granted"], "a3\n");
    assert!(succeeded(&out), "{out:?}\n{}", nodes[1].logs());

    // Deleted through node 3: refused everywhere.
    let out = admin(&nodes[2], &["user", "delete", "alice"], "");
    assert!(succeeded(&out), "{out:?}");
    for node in &nodes {
        eventually("alice is refused on every node", || {
            !logs_in(node, "alice", "alice-secret")
        });
    }
    // Still in: the admin.
    assert!(logs_in(&nodes[1], "admin", "admin-secret"));
}
