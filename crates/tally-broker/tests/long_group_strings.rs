//! Strings the wire allows are stored intact or refused, never truncated: a group id, member
//! metadata or a static member's instance id longer than an i16 length (legal in the
//! flexible request versions) survives a restart exactly, at 32,767, 32,768, 65,536 bytes and
//! 1 MiB. (Only the request size limit, `socket.request.max.bytes`, bounds them.)

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
use tally_testkit::requests::topic_name;
use tally_testkit::WireClient;

mod common;

const LENGTHS: [usize; 4] = [32_767, 32_768, 65_536, 1 << 20];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A group id of `len` bytes that differs from its neighbours only in its last byte, so a
/// truncated id would be another group's.
fn group_id(len: usize, last: char) -> String {
    let mut g = "g".repeat(len - 1);
    g.push(last);
    g
}

/// OffsetCommit v8 (flexible: compact strings) without a member.
fn commit(c: &mut WireClient, group: &str, offset: i64, metadata: &str) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(s(metadata)))])]);
    c.send(&request, 8).unwrap().topics[0].partitions[0].error_code
}

/// (offset, metadata) committed for `group`, by OffsetFetch v7.
fn fetch(c: &mut WireClient, group: &str) -> (i64, String) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partition_indexes(vec![0])]));
    let r = c.send(&request, 7).unwrap();
    let p = &r.topics[0].partitions[0];
    let metadata = p
        .metadata
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    (p.committed_offset, metadata)
}

/// A static member with a long instance id joins group `group` and syncs: generation 1,
/// stable, stored.
fn join_and_sync(c: &mut WireClient, group: &str, instance: &str) {
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_group_instance_id(Some(s(instance)))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(vec![7u8; 70_000]))]);
    let joined = c.send(&join, 7).unwrap();
    assert_eq!(joined.error_code, 0);
    let member = joined.member_id.clone();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(member.clone())
        .with_group_instance_id(Some(s(instance)))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(member)
            .with_assignment(Bytes::from_static(b"assigned"))]);
    assert_eq!(c.send(&sync, 5).unwrap().error_code, 0);
}

#[test]
fn long_strings_survive_a_restart_intact() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    // No initial rebalance delay: the join completes at once; metadata up to 1 MiB.
    let settings = [
        ("group.initial.rebalance.delay.ms", "0"),
        ("offset.metadata.max.bytes", "1048576"),
    ];
    let running = common::start(&runtime, dir.path(), &settings);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    c.create_topic("t", 1).unwrap();
    for (i, len) in LENGTHS.into_iter().enumerate() {
        let metadata = "m".repeat(len);
        for (j, last) in ['a', 'b'].into_iter().enumerate() {
            let offset = (10 * i + j) as i64;
            assert_eq!(commit(&mut c, &group_id(len, last), offset, &metadata), 0);
        }
    }
    let instance = "i".repeat(40_000);
    join_and_sync(&mut c, &group_id(65_536, 'z'), &instance);

    runtime.block_on(running.shutdown());
    let running = common::start(&runtime, dir.path(), &settings);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    for (i, len) in LENGTHS.into_iter().enumerate() {
        for (j, last) in ['a', 'b'].into_iter().enumerate() {
            let (offset, metadata) = fetch(&mut c, &group_id(len, last));
            assert_eq!(offset, (10 * i + j) as i64, "group id of {len} bytes");
            assert_eq!(metadata.len(), len, "metadata of {len} bytes");
        }
    }
    assert_eq!(
        fetch(&mut c, &group_id(65_536, 'c')).0,
        -1,
        "never committed"
    );
    let described = c
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group_id(65_536, 'z')))]),
            5,
        )
        .unwrap();
    let group = &described.groups[0];
    assert_eq!(&*group.group_state, "Stable", "the stored group is back");
    let member = &group.members[0];
    assert_eq!(
        member.group_instance_id.as_deref().map(str::len),
        Some(40_000)
    );
    assert_eq!(member.member_metadata.len(), 70_000);
    assert_eq!(&member.member_assignment[..], b"assigned");
    runtime.block_on(running.shutdown());
}
