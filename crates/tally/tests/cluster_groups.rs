//! Consumer groups in cluster mode, on the wire: a group's coordinator is the leader of its
//! `__consumer_offsets` partition, an offset it acknowledged is held by the node that takes
//! the partition over, and a coordinator cut off from its peers stops answering for the
//! group (NOT_COORDINATOR) once it cannot know it still leads, instead of serving what may
//! be stale.

use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use tally_testkit::WireClient;

#[allow(dead_code)]
mod cluster_harness;

use cluster_harness::*;

const GROUP: &str = "wire-group";
const NOT_COORDINATOR: i16 = 16;

fn wire(addr: &str) -> WireClient {
    WireClient::connect(addr.parse().unwrap()).unwrap()
}

/// FindCoordinator for `GROUP` through `addr`, until it names a node.
fn find_coordinator(addr: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = wire(addr)
            .send(
                &FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_static_str(GROUP))
                    .with_key_type(0),
                3,
            )
            .unwrap();
        if r.error_code == 0 {
            return r.node_id.0;
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator: error {}",
            r.error_code
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn commit(addr: &str, offset: i64) -> i16 {
    commit_on(&mut wire(addr), 0, offset)
}

/// Commits `offset` for `partition` of the topic, outside any generation.
fn commit_on(wire: &mut WireClient, partition: i32, offset: i64) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(tally_testkit::requests::topic_name(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)])]);
    let r = wire.send(&request, 7).unwrap();
    r.topics[0].partitions[0].error_code
}

fn fetch(addr: &str) -> OffsetFetchResponse {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_topics(None);
    wire(addr).send(&request, 7).unwrap()
}

/// The offset `addr` holds for partition 0, or its error.
fn held(addr: &str) -> Result<i64, i16> {
    held_for(addr, 0)
}

/// The offset `addr` holds for `partition`, or its error.
fn held_for(addr: &str, partition: i32) -> Result<i64, i16> {
    let r = fetch(addr);
    if r.error_code != 0 {
        return Err(r.error_code);
    }
    Ok(r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .map_or(-1, |p| p.committed_offset))
}

/// The lowest segment base offset of `__consumer_offsets-0` in a node's data directory.
fn offsets_log_start(data_dir: &std::path::Path) -> i64 {
    std::fs::read_dir(data_dir.join("cluster").join("__consumer_offsets-0"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".log")
                        .and_then(|b| b.parse::<i64>().ok())
                })
                .min()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn a_cut_off_coordinator_stops_answering_and_its_successor_holds_the_commit() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = start_cluster(&runtime, 8);
    create_topic(&cluster.bootstrap);
    let addr = |node: i32| cluster.proxies[node as usize - 1].local_addr().to_string();
    let coordinator = find_coordinator(&addr(1));
    assert_eq!(
        commit(&addr(coordinator), 42),
        0,
        "the coordinator takes a commit"
    );
    assert_eq!(held(&addr(coordinator)), Ok(42));
    let other = if coordinator == 1 { 2 } else { 1 };
    assert_eq!(
        held(&addr(other)),
        Err(NOT_COORDINATOR),
        "a node that does not lead the group's partition answers for it"
    );

    eprintln!("cut node {coordinator}, the group's coordinator, off from the other nodes");
    isolate(&cluster, coordinator, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let successor = loop {
        let found = find_coordinator(&addr(other));
        if found != coordinator {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no new coordinator behind the cut"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The successor loads the group from its replica (COORDINATOR_LOAD_IN_PROGRESS, 14,
    // meanwhile).
    let deadline = Instant::now() + Duration::from_secs(30);
    let moved = loop {
        match held(&addr(successor)) {
            Err(14) | Err(NOT_COORDINATOR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => break other,
        }
    };
    // A cut-off coordinator stops answering within 100 ms of losing its majority's pings.
    std::thread::sleep(Duration::from_millis(300));
    let stale = held(&addr(coordinator));
    let stale_commit = commit(&addr(coordinator), 7);
    isolate(&cluster, coordinator, false);
    assert_eq!(
        moved,
        Ok(42),
        "node {successor} took over without the acknowledged commit"
    );
    assert_eq!(
        stale,
        Err(NOT_COORDINATOR),
        "node {coordinator}, cut off, still answers OffsetFetch for the group"
    );
    assert_eq!(
        stale_commit, NOT_COORDINATOR,
        "node {coordinator}, cut off, took a commit"
    );
}

/// The replicated group log is compacted: past `offsets.topic.compaction.min.records` the
/// coordinator writes the live offsets again and proposes a log-start entry, and every
/// replica deletes its segments below it. A commit made once, long before (partition 2's),
/// survives only through those rewrites: the node that takes over after the coordinator's
/// SIGKILL loads it from its own compacted replica.
#[test]
fn the_replicated_group_log_is_compacted_on_every_replica_and_keeps_every_live_commit() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = start_cluster_with(
        &runtime,
        9,
        &[
            "--set",
            "offsets.topic.num.partitions=1",
            "--set",
            "offsets.topic.compaction.min.records=100",
            "--set",
            "log.retention.check.interval.ms=300",
            "--set",
            "log.segment.bytes=2048",
        ],
    );
    create_topic(&cluster.bootstrap);
    let addr = |node: i32| cluster.proxies[node as usize - 1].local_addr().to_string();
    let coordinator = find_coordinator(&addr(1));
    let mut client = wire(&addr(coordinator));
    assert_eq!(commit_on(&mut client, 2, 7), 0);
    for i in 0..600 {
        assert_eq!(commit_on(&mut client, i % 2, i64::from(i)), 0, "commit {i}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let starts: Vec<i64> = cluster
            .nodes
            .iter()
            .map(|n| offsets_log_start(n.data_dir()))
            .collect();
        if starts.iter().all(|s| *s > 0) {
            eprintln!("__consumer_offsets-0 starts at {starts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group log was not compacted on every replica: starts {starts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("SIGKILL the coordinator, node {coordinator}");
    cluster.nodes[coordinator as usize - 1].kill9();
    let other = if coordinator == 1 { 2 } else { 1 };
    let deadline = Instant::now() + Duration::from_secs(30);
    let successor = loop {
        let found = find_coordinator(&addr(other));
        if found != coordinator {
            break found;
        }
        assert!(Instant::now() < deadline, "no new coordinator");
        std::thread::sleep(Duration::from_millis(200));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let held_now = |p| loop {
        match held_for(&addr(successor), p) {
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => break other,
        }
    };
    assert_eq!(
        held_now(2),
        Ok(7),
        "the early commit was lost to compaction"
    );
    assert_eq!(held_now(0), Ok(598));
    assert_eq!(held_now(1), Ok(599));
}
