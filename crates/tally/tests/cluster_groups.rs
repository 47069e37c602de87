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
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(tally_testkit::requests::topic_name(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let r = wire(addr).send(&request, 7).unwrap();
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
    let r = fetch(addr);
    if r.error_code != 0 {
        return Err(r.error_code);
    }
    Ok(r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == 0)
        .map_or(-1, |p| p.committed_offset))
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
