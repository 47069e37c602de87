//! A group deleted while a transaction holds offsets of it pending: the transaction's later
//! COMMIT does not bring the offsets back. The log says they are deleted (the tombstones come
//! after the transactional records), so memory must say so too, before and after a restart.

use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, DeleteGroupsRequest, DescribeTransactionsRequest, EndTxnRequest,
    GroupId, InitProducerIdRequest, OffsetCommitRequest, OffsetFetchRequest, ProducerId,
    TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use tally_testkit::requests::topic_name;
use tally_testkit::WireClient;

mod common;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn fetch(c: &mut WireClient, partition: i32) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partition_indexes(vec![partition])]));
    c.send(&request, 7).unwrap().topics[0].partitions[0].committed_offset
}

#[test]
fn a_commit_after_the_group_was_deleted_brings_nothing_back() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[]);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    c.create_topic("t", 2).unwrap();
    // An empty group with a committed offset on partition 0.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)])]);
    assert_eq!(
        c.send(&commit, 8).unwrap().topics[0].partitions[0].error_code,
        0
    );

    let tid = TransactionalId(s("deleter"));
    let init = c
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(tid.clone()))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .unwrap();
    let (pid, epoch) = (init.producer_id, init.producer_epoch);
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tid.clone())
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(s("g")));
    assert_eq!(c.send(&add, 3).unwrap().error_code, 0);
    // Pending offsets for partition 0 (committed before) and 1 (never committed).
    let txn_commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(tid.clone())
        .with_group_id(GroupId(s("g")))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(
                [0, 1]
                    .map(|p| {
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(9)
                            .with_committed_leader_epoch(-1)
                    })
                    .to_vec(),
            )]);
    let r = c.send(&txn_commit, 3).unwrap();
    assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));

    let deleted = c
        .send(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            2,
        )
        .unwrap();
    assert_eq!(deleted.results[0].error_code, 0);
    let end = EndTxnRequest::default()
        .with_transactional_id(tid.clone())
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_committed(true);
    assert_eq!(c.send(&end, 3).unwrap().error_code, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = c
            .send(
                &DescribeTransactionsRequest::default().with_transactional_ids(vec![tid.clone()]),
                0,
            )
            .unwrap();
        if &*d.transaction_states[0].transaction_state == "CompleteCommit" {
            break;
        }
        assert!(Instant::now() < deadline, "the commit never completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!((fetch(&mut c, 0), fetch(&mut c, 1)), (-1, -1), "live");

    runtime.block_on(running.shutdown());
    let running = common::start(&runtime, dir.path(), &[]);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    assert_eq!(
        (fetch(&mut c, 0), fetch(&mut c, 1)),
        (-1, -1),
        "after a restart"
    );
    runtime.block_on(running.shutdown());
}
