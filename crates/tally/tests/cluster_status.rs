//! `tally cluster status` and DescribeQuorum against three real `tally serve` processes: every
//! node listed, one controller leader, each replica's lag at 0 once it has caught up; a
//! follower SIGKILLed while records arrive shows at least that many records of lag, and 0
//! again after its restart. A follower asked DescribeQuorum names the leader; a broker that
//! runs alone answers that there is no quorum, and the command says so. `tally producers`
//! (DescribeProducers) reads the leader's producer table, and CreatePartitions adds a
//! partition that gets a leader.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{CreatePartitionsRequest, DescribeQuorumRequest};
use tally_testkit::requests::topic_name;
use tally_testkit::{free_fixed_port, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const TOPIC: &str = "status";
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const INVALID_REQUEST: i16 = 42;
const INVALID_PARTITIONS: i16 = 37;

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

/// The partition row of `tally cluster status`: leader and each voter's lag.
struct Row {
    leader: i32,
    lags: Vec<(i32, Option<i64>)>,
}

fn status(bootstrap: &str) -> Option<(String, Row)> {
    let out = tally(bootstrap, &["cluster", "status"], None);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with(TOPIC))?;
    let cells: Vec<&str> = line.split_whitespace().collect();
    let lags = cells[7..]
        .iter()
        .map(|cell| {
            let (node, lag) = cell.split_once(':').unwrap();
            (node.parse().unwrap(), lag.parse().ok())
        })
        .collect();
    Some((
        text.clone(),
        Row {
            leader: cells[2].parse().unwrap(),
            lags,
        },
    ))
}

/// Polls `tally cluster status` until `done` holds for the partition's row.
fn status_until(bootstrap: &str, what: &str, done: impl Fn(&Row) -> bool) -> (String, Row) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((text, row)) = status(bootstrap) {
            if done(&row) {
                return (text, row);
            }
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn lag_of(row: &Row, node: i32) -> Option<i64> {
    row.lags
        .iter()
        .find(|(n, _)| *n == node)
        .and_then(|(_, l)| *l)
}

fn describe_quorum(node: &BrokerProcess, topic: &str) -> (i16, i16, i32) {
    let mut c = WireClient::connect(node.addr).unwrap();
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name(topic))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let r = c.send(&request, 2).unwrap();
    let p = r.topics.first().and_then(|t| t.partitions.first());
    (
        r.error_code,
        p.map_or(-1, |p| p.error_code),
        p.map_or(-1, |p| p.leader_id.0),
    )
}

#[test]
fn cluster_status_shows_a_killed_follower_lagging_and_catching_up_after_its_restart() {
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", free_fixed_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<BrokerProcess> = (1..=3)
        .map(|i: u32| {
            let id = i.to_string();
            BrokerProcess::start(Path::new(TALLY), &["--node-id", &id, "--voters", &voters])
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let create = [
        "topic",
        "create",
        TOPIC,
        "--partitions",
        "1",
        "--replication-factor",
        "3",
    ];
    // An earlier try that timed out under load may have created it.
    let created = |out: Output| {
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists")
    };
    while !created(tally(&nodes[0].bootstrap(), &create, None)) {
        assert!(Instant::now() < deadline, "topic create");
        std::thread::sleep(Duration::from_millis(300));
    }
    let lines: String = (0..20).map(|i| format!("first-{i}\n")).collect();
    assert!(
        tally(&nodes[0].bootstrap(), &["produce", TOPIC], Some(&lines))
            .status
            .success()
    );

    let (text, row) = status_until(&nodes[0].bootstrap(), "every replica caught up", |r| {
        r.lags.len() == 3 && r.lags.iter().all(|(_, l)| *l == Some(0))
    });
    assert_eq!(
        text.lines().filter(|l| l.contains("leader (epoch")).count(),
        1,
        "one controller leader:\n{text}"
    );
    for id in 1..=3 {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{id} "))),
            "node {id} is not listed:\n{text}"
        );
    }
    let leader = row.leader;
    let follower = (1..=3).find(|n| *n != leader).unwrap();

    // A follower answers DescribeQuorum with the leader to ask instead.
    let (top, code, named) = describe_quorum(&nodes[follower as usize - 1], TOPIC);
    assert_eq!((top, code, named), (0, NOT_LEADER_OR_FOLLOWER, leader));

    nodes[follower as usize - 1].kill9();
    let bootstrap = nodes[leader as usize - 1].bootstrap();
    let lines: String = (0..30).map(|i| format!("second-{i}\n")).collect();
    assert!(tally(&bootstrap, &["produce", TOPIC], Some(&lines))
        .status
        .success());
    let (text, _) = status_until(&bootstrap, "the killed follower lagging", |r| {
        r.leader == leader && lag_of(r, follower).is_some_and(|l| l >= 30)
    });
    let others = (1..=3).filter(|n| *n != follower);
    for n in others {
        let (_, row) = status(&bootstrap).unwrap();
        assert_eq!(lag_of(&row, n), Some(0), "node {n} lags:\n{text}");
    }

    nodes[follower as usize - 1].restart();
    status_until(&bootstrap, "the restarted follower caught up", |r| {
        lag_of(r, follower) == Some(0)
    });

    // DescribeProducers reads the leader's table: the two producers of `tally produce`, the
    // second with its last sequence 29.
    let out = tally(&bootstrap, &["producers", TOPIC], None);
    let producers = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{producers}");
    let last_sequences: Vec<&str> = producers
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert!(
        last_sequences.contains(&"19") && last_sequences.contains(&"29"),
        "{producers}"
    );

    // CreatePartitions (`tally topic alter`): the new partition gets its replicas and a
    // leader; asking for the same count again is INVALID_PARTITIONS.
    let out = tally(
        &bootstrap,
        &["topic", "alter", TOPIC, "--partitions", "2"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = WireClient::connect(nodes[leader as usize - 1].addr).unwrap();
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(TOPIC))
            .with_count(2)]);
    let r = c.send(&request, 3).unwrap();
    assert_eq!(
        r.results[0].error_code, INVALID_PARTITIONS,
        "not fewer than 2"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tally(&bootstrap, &["cluster", "status"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let new = text
            .lines()
            .find(|l| l.split_whitespace().take(2).eq([TOPIC, "1"]));
        if new.is_some_and(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|leader| leader != "-1")
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "partition 1 never led:\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_broker_that_runs_alone_has_no_quorum_to_describe() {
    let node = BrokerProcess::start(Path::new(TALLY), &[]);
    let (top, _, _) = describe_quorum(&node, "__cluster_metadata");
    assert_eq!(top, INVALID_REQUEST);
    let out = tally(&node.bootstrap(), &["cluster", "status"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("runs alone"), "no clear message: {stderr}");
}
