//! A three-node cluster on the wire, across a leader change: a produce sent to a follower gets
//! NOT_LEADER_OR_FOLLOWER with the new leader's id, epoch and address (KIP-951); the new
//! leader's epoch (the Raft term) is higher; OffsetForLeaderEpoch names where the old epoch
//! ended and fences a stale epoch; Fetch never returns Raft's own entries, and returns every
//! produced batch once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{MetadataRequest, OffsetForLeaderEpochRequest};
use tally_protocol::BatchHeader;
use tally_testkit::requests::topic_name;
use tally_testkit::{free_fixed_port, BatchSpec, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const TOPIC: &str = "epochs";
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const FENCED_LEADER_EPOCH: i16 = 74;

/// (leader, leader epoch) of partition 0 as `node` sees it, once it names one.
fn leader_of(node: &BrokerProcess) -> (i32, i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = WireClient::connect(node.addr) {
            let request = MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC))),
            ]));
            if let Ok(m) = c.send(&request, 12) {
                if let Some(p) = m.topics.first().and_then(|t| t.partitions.first()) {
                    if p.error_code == 0 && p.leader_id.0 > 0 {
                        return (p.leader_id.0, p.leader_epoch);
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader for {TOPIC}-0");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn offset_for_epoch(node: &BrokerProcess, current: i32, epoch: i32) -> (i16, i32, i64) {
    let mut c = WireClient::connect(node.addr).unwrap();
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name(TOPIC))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)])]);
    let r = c.send(&request, 4).unwrap();
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// Every batch of partition 0 below the high watermark, through Fetch from `node`.
fn fetch_all(node: &BrokerProcess) -> Vec<BatchHeader> {
    let mut c = WireClient::connect(node.addr).unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (code, hw, records) = c.fetch_once(TOPIC, 0, offset, 1 << 20).unwrap();
        assert_eq!(code, 0);
        let mut rest = &records[..];
        if rest.is_empty() {
            // Only Raft's entries (never returned) remain below the high watermark.
            return out;
        }
        while !rest.is_empty() {
            let h = BatchHeader::parse_whole(rest).unwrap();
            rest = &rest[h.size_in_bytes()..];
            offset = h.last_offset() + 1;
            out.push(h);
        }
        if offset >= hw {
            return out;
        }
    }
}

#[test]
fn a_leader_change_moves_the_epoch_and_every_answer_follows_it() {
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
    // An earlier try that timed out under load may have created it.
    let created = |out: std::process::Output| {
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists")
    };
    while !created(
        Command::new(TALLY)
            .args(["--bootstrap", &nodes[1].bootstrap()])
            .args([
                "topic",
                "create",
                TOPIC,
                "--partitions",
                "1",
                "--replication-factor",
                "3",
            ])
            .output()
            .unwrap(),
    ) {
        assert!(Instant::now() < deadline, "topic create");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (leader, epoch) = leader_of(&nodes[0]);
    let leader_node = &nodes[leader as usize - 1];
    let mut c = WireClient::connect(leader_node.addr).unwrap();
    for seq in 0..3 {
        let answer = c
            .produce(9, TOPIC, 0, BatchSpec::new(-1, -1, -1, 2).encode())
            .unwrap();
        assert_eq!(answer.error_code, 0, "batch {seq}");
    }
    let end_of_first_epoch = c.list_offset(TOPIC, 0, -1).unwrap();
    let (code, e, end) = offset_for_epoch(leader_node, epoch, epoch);
    assert_eq!((code, e, end), (0, epoch, end_of_first_epoch));

    nodes[leader as usize - 1].kill9();
    let other = (leader as usize) % 3;
    let (new_leader, new_epoch) = loop {
        let (l, e) = leader_of(&nodes[other]);
        if l != leader {
            break (l, e);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(new_epoch > epoch, "epoch {new_epoch} after {epoch}");
    let new_node = &nodes[new_leader as usize - 1];

    // The old epoch ended where the new leader's term began; a stale epoch is fenced.
    let (code, e, end) = offset_for_epoch(new_node, new_epoch, epoch);
    assert_eq!((code, e, end), (0, epoch, end_of_first_epoch));
    assert_eq!(
        offset_for_epoch(new_node, epoch, epoch).0,
        FENCED_LEADER_EPOCH
    );

    // A produce to the remaining follower names the new leader (KIP-951).
    let follower = (1..=3).find(|n| *n != leader && *n != new_leader).unwrap();
    let mut f = WireClient::connect(nodes[follower as usize - 1].addr).unwrap();
    // The follower learns of the new leader from the next heartbeat: until then it has no
    // hint to give (-1). Ask again for a few seconds; the hint it then gives must be exact.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let answer = loop {
        let answer = f
            .produce(10, TOPIC, 0, BatchSpec::new(-1, -1, -1, 1).encode())
            .unwrap();
        if answer.current_leader.leader_id.0 != -1 || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(answer.error_code, NOT_LEADER_OR_FOLLOWER);
    assert_eq!(answer.current_leader.leader_id.0, new_leader);
    assert_eq!(answer.current_leader.leader_epoch, new_epoch);

    let mut n = WireClient::connect(new_node.addr).unwrap();
    let answer = n
        .produce(9, TOPIC, 0, BatchSpec::new(-1, -1, -1, 2).encode())
        .unwrap();
    assert_eq!(answer.error_code, 0);
    assert!(
        answer.base_offset > end_of_first_epoch,
        "the new term's blank entry comes first"
    );

    let batches = fetch_all(new_node);
    assert_eq!(batches.len(), 4, "{batches:?}");
    assert!(
        batches.iter().all(|b| !b.is_control()),
        "Raft's entries are never fetched"
    );
    assert_eq!(batches[3].base_offset, answer.base_offset);
    assert_eq!(batches[3].partition_leader_epoch, new_epoch);
    assert_eq!(batches[0].partition_leader_epoch, epoch);
}
