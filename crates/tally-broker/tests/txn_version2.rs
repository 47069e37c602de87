//! Transaction version 2 (KIP-890 part 2) on the wire: the broker advertises it; Produce v12
//! and TxnOffsetCommit v5 add their partition to the transaction themselves; every EndTxn v5
//! bumps the producer's epoch and answers with it, the markers carry the bumped epoch, so a
//! batch of the ended transaction that arrives late is fenced (INVALID_PRODUCER_EPOCH) instead
//! of starting a transaction nobody ends. A retried EndTxn is recognised by its old epoch.

use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeTransactionsRequest, EndTxnRequest, GroupId, InitProducerIdRequest,
    ProduceRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use tally_testkit::requests::topic_name;
use tally_testkit::{BatchSpec, WireClient};

mod common;

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const ID: &str = "tv2";

fn tid() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(ID))
}

/// One transactional batch of one record; (error code, base offset).
fn produce(c: &mut WireClient, version: i16, partition: i32, epoch: i16, seq: i32) -> (i16, i64) {
    let mut spec = BatchSpec::new(PID.with(|p| p.get()), epoch, seq, 1);
    spec.transactional = true;
    let request = ProduceRequest::default()
        .with_transactional_id(Some(tid()))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("t2"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(spec.encode()))])]);
    let r = c.send(&request, version).unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

thread_local! {
    static PID: std::cell::Cell<i64> = const { std::cell::Cell::new(-1) };
}

/// EndTxn v5: (error code, producer id, epoch).
fn end(c: &mut WireClient, epoch: i16, commit: bool) -> (i16, i64, i16) {
    let r = c
        .send(
            &EndTxnRequest::default()
                .with_transactional_id(tid())
                .with_producer_id(ProducerId(PID.with(|p| p.get())))
                .with_producer_epoch(epoch)
                .with_committed(commit),
            5,
        )
        .unwrap();
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

fn state(c: &mut WireClient) -> (String, Vec<(String, i32)>) {
    let d = c
        .send(
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![tid()]),
            0,
        )
        .unwrap();
    let s = &d.transaction_states[0];
    let partitions = s
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
        .collect();
    (s.transaction_state.to_string(), partitions)
}

fn wait_for(c: &mut WireClient, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(c).0 != wanted {
        assert!(Instant::now() < deadline, "never reached {wanted}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_end_bumps_the_epoch_and_fences_late_batches() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[]);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    c.create_topic("t2", 2).unwrap();

    let versions = c.send(&ApiVersionsRequest::default(), 3).unwrap();
    let feature = versions
        .finalized_features
        .iter()
        .find(|f| &*f.name == "transaction.version")
        .expect("transaction.version is finalized");
    assert_eq!(feature.max_version_level, 2);
    assert!(versions.finalized_features_epoch >= 0);

    let init = c
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(tid()))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .unwrap();
    assert_eq!((init.error_code, init.producer_epoch), (0, 0));
    let pid = init.producer_id.0;
    PID.with(|p| p.set(pid));

    // Produce v12 adds the partition itself; v11 still only verifies (KIP-890 part 1).
    assert_eq!(produce(&mut c, 12, 0, 0, 0), (0, 0));
    assert_eq!(state(&mut c), ("Ongoing".into(), vec![("t2".into(), 0)]));
    assert_eq!(produce(&mut c, 11, 1, 0, 0).0, INVALID_TXN_STATE);
    assert_eq!(produce(&mut c, 12, 0, 0, 1), (0, 1));

    // Commit: the answer carries the bumped epoch; a retry (old epoch) gets the same answer;
    // an abort at the old epoch is not a retry of this commit.
    assert_eq!(end(&mut c, 0, true), (0, pid, 1));
    assert_eq!(end(&mut c, 0, true), (0, pid, 1));
    wait_for(&mut c, "CompleteCommit");
    assert_eq!(end(&mut c, 0, false).0, INVALID_TXN_STATE);
    let marker = c.read_batches("t2", 0).unwrap()[2];
    assert!(marker.is_control());
    assert_eq!(
        marker.producer_epoch, 1,
        "the marker carries the bumped epoch"
    );

    // The last batch of the committed transaction, retried late: fenced, nothing stored, no
    // transaction opened.
    assert_eq!(produce(&mut c, 12, 0, 0, 1).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(state(&mut c), ("CompleteCommit".into(), vec![]));
    assert_eq!(c.list_offset("t2", 0, -1).unwrap(), 3);

    // The next transaction runs at the new epoch from sequence 0, and aborts.
    assert_eq!(produce(&mut c, 12, 1, 1, 0), (0, 0));
    assert_eq!(end(&mut c, 1, false), (0, pid, 2));
    wait_for(&mut c, "CompleteAbort");
    assert_eq!(produce(&mut c, 12, 1, 1, 1).0, INVALID_PRODUCER_EPOCH);
    // An abort with nothing open still bumps (no markers are written).
    assert_eq!(end(&mut c, 2, false), (0, pid, 3));
    wait_for(&mut c, "CompleteAbort");
    assert_eq!(
        c.list_offset("t2", 1, -1).unwrap(),
        2,
        "one record, one marker"
    );

    // TxnOffsetCommit v5 adds the offsets partition without AddOffsetsToTxn.
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(tid())
        .with_group_id(GroupId(StrBytes::from_static_str("g2")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(3)
        .with_generation_id(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name("t2"))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(3)
                .with_committed_leader_epoch(-1)])]);
    let r = c.send(&commit, 5).unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        state(&mut c),
        ("Ongoing".into(), vec![("__consumer_offsets".into(), 0)])
    );
    // v4 at a stale epoch is refused as before.
    let r = c.send(&commit.clone().with_producer_epoch(2), 4).unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(end(&mut c, 3, true), (0, pid, 4));
    drop(running);
}
