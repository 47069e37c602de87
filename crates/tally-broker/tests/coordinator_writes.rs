//! Coordinator writes before answers: when the write of `__consumer_offsets` fails, neither an
//! offset commit nor a SyncGroup is acknowledged, and the coordinator's memory stays what the
//! log says (no offset to fetch, no stable group). Once writes succeed again, the same
//! requests are acknowledged, so the test sees both outcomes.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, JoinGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tally_broker::RunningBroker;
use tally_protocol::ResponseError;
use tally_testkit::requests::topic_name;
use tally_testkit::WireClient;

mod common;

const TOPIC: &str = "orders";

fn fail_offsets_writes(runtime: &tokio::runtime::Runtime, running: &RunningBroker, on: bool) {
    let handle = running
        .broker
        .topics
        .partition("__consumer_offsets", 0)
        .unwrap();
    runtime
        .block_on(handle.run(move |p| p.inject_write_failures(on)))
        .unwrap();
}

fn commit(client: &mut WireClient, group: &str, offset: i64) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let response = client.send(&request, 8).unwrap();
    response.topics[0].partitions[0].error_code
}

fn fetch_committed(client: &mut WireClient, group: &str) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partition_indexes(vec![0])]));
    let response = client.send(&request, 7).unwrap();
    response.topics[0].partitions[0].committed_offset
}

/// Joins `group` as its only member (leader), as `member` when it has an id already, and
/// returns (member id, generation).
fn join(client: &mut WireClient, group: &str, member: Option<StrBytes>) -> (StrBytes, i32) {
    let mut request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]);
    request.member_id = match member {
        Some(id) => id,
        None => {
            let first = client.send(&request, 5).unwrap();
            assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
            first.member_id
        }
    };
    let joined = client.send(&request, 5).unwrap();
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    (joined.member_id, joined.generation_id)
}

fn sync(client: &mut WireClient, group: &str, member: &StrBytes, generation: i32) -> i16 {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id(generation)
        .with_member_id(member.clone())
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(member.clone())
            .with_assignment(Bytes::from_static(b"assignment"))]);
    client.send(&request, 5).unwrap().error_code
}

fn group_state(client: &mut WireClient, group: &str) -> String {
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.into()))]);
    client.send(&request, 5).unwrap().groups[0]
        .group_state
        .to_string()
}

#[test]
fn a_failed_offsets_write_acknowledges_neither_commit_nor_sync() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(
        &runtime,
        dir.path(),
        &[("group.initial.rebalance.delay.ms", "0")],
    );
    let addr: SocketAddr = running.local_addr;
    let mut client = WireClient::connect(addr).unwrap();
    client.create_topic(TOPIC, 1).unwrap();

    fail_offsets_writes(&runtime, &running, true);
    // The commit is refused with the error that sends a client to find its coordinator again,
    // and nothing was taken into memory.
    assert_eq!(
        commit(&mut client, "g1", 42),
        ResponseError::NotCoordinator.code()
    );
    assert_eq!(fetch_committed(&mut client, "g1"), -1);
    // The leader's assignment cannot be stored: no member gets it, the group is not stable.
    let (member, generation) = join(&mut client, "g2", None);
    assert_eq!(
        sync(&mut client, "g2", &member, generation),
        ResponseError::NotCoordinator.code()
    );
    assert_ne!(group_state(&mut client, "g2"), "Stable");

    // Writes work again: the same requests are acknowledged, and only now remembered.
    fail_offsets_writes(&runtime, &running, false);
    assert_eq!(commit(&mut client, "g1", 42), 0);
    assert_eq!(fetch_committed(&mut client, "g1"), 42);
    let (member, generation) = join(&mut client, "g2", Some(member));
    assert_eq!(sync(&mut client, "g2", &member, generation), 0);
    assert_eq!(group_state(&mut client, "g2"), "Stable");

    runtime.block_on(running.shutdown());
}
