//! Adding a node to a running three-node cluster: a fourth `tally serve` with the cluster's
//! voters and a Raft address of its own joins as a broker (the controller's leader makes it a
//! learner of the metadata group), every node's Metadata lists it, a partition's replica is
//! moved onto it with `tally partition reassign`, and it then holds and serves the partition's
//! records. `tally cluster add-node` without a Raft address says what is missing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tally_testkit::{free_fixed_port, BrokerProcess};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const TOPIC: &str = "grown";

fn tally(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(TALLY)
        .args(["--bootstrap", bootstrap])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls until `f` holds, or fails naming `what`.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_fourth_node_joins_as_a_broker_and_takes_a_replica() {
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", free_fixed_port()))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<BrokerProcess> = (1..=3)
        .map(|i: u32| {
            let id = i.to_string();
            BrokerProcess::start(Path::new(TALLY), &["--node-id", &id, "--voters", &voters])
        })
        .collect();
    let raft4 = format!("127.0.0.1:{}", free_fixed_port());
    let node4 = BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--node-id",
            "4",
            "--voters",
            &voters,
            "--raft-listen",
            &raft4,
        ],
    );
    // Every node, the new one included, lists four brokers.
    for node in nodes.iter().chain([&node4]) {
        wait_for("four brokers in Metadata", || {
            let out = tally(&node.bootstrap(), &["cluster", "status"], None);
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| {
                        l.split_whitespace()
                            .next()
                            .is_some_and(|c| c.parse::<u32>().is_ok())
                    })
                    .count()
                    == 4
        });
    }

    let create = [
        "topic",
        "create",
        TOPIC,
        "--partitions",
        "1",
        "--replication-factor",
        "3",
    ];
    wait_for("topic created", || {
        let out = tally(&nodes[0].bootstrap(), &create, None);
        // An earlier try that timed out under load may have created it.
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists")
    });
    let lines: String = (0..50).map(|i| format!("before-{i}\n")).collect();
    stdout(&tally(
        &nodes[0].bootstrap(),
        &["produce", TOPIC],
        Some(&lines),
    ));

    // Node 4 replaces node 1 among the three replicas.
    let replicas = ["2", "3", "4"];
    let out = tally(
        &node4.bootstrap(),
        &[
            "partition",
            "reassign",
            TOPIC,
            "0",
            "--replicas",
            &replicas.join(","),
        ],
        None,
    );
    eprint!("{}", stdout(&out));
    let lines: String = (0..50).map(|i| format!("after-{i}\n")).collect();
    stdout(&tally(
        &node4.bootstrap(),
        &["produce", TOPIC],
        Some(&lines),
    ));

    // Node 4 holds the partition's replica, caught up.
    let dir = node4.data_dir().join("cluster").join(format!("{TOPIC}-0"));
    assert!(dir.exists(), "node 4 has no replica");
    wait_for("node 4 caught up", || {
        let out = tally(&node4.bootstrap(), &["cluster", "status"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with(TOPIC))
            .is_some_and(|l| l.split_whitespace().any(|c| c == "4:0"))
    });
    let read = stdout(&tally(
        &node4.bootstrap(),
        &["consume", TOPIC, "--from-beginning", "-n", "100"],
        None,
    ));
    let values: Vec<&str> = read.lines().collect();
    assert_eq!(values.len(), 100, "{read}");
    assert_eq!(values[0], "before-0");
    assert_eq!(values[99], "after-49");
}

#[test]
fn add_node_without_a_raft_address_says_what_is_missing() {
    let out = Command::new(TALLY)
        .args([
            "cluster",
            "add-node",
            "--node-id",
            "4",
            "--voters",
            "1@127.0.0.1:9192",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--raft-listen"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
