//! `__transaction_state` is compacted: after many transactions of two transactional ids the
//! log's start moves past the old records, and after a restart the coordinator knows both ids
//! exactly as before (state, producer id, epoch).

use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest, InitProducerIdRequest,
    ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tally_testkit::requests::topic_name;
use tally_testkit::WireClient;

mod common;

const SETTINGS: &[(&str, &str)] = &[
    ("transaction.state.log.compaction.min.records", "50"),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "100",
    ),
];

fn tid(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

fn init(c: &mut WireClient, id: &str) -> (i64, i16) {
    let r = c
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(tid(id)))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .unwrap();
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

/// One empty transaction (one partition added, then committed): three records in the log.
fn transaction(c: &mut WireClient, id: &str, (pid, epoch): (i64, i16)) {
    let mut add = AddPartitionsToTxnRequest::default();
    add.v3_and_below_transactional_id = tid(id);
    add.v3_and_below_producer_id = ProducerId(pid);
    add.v3_and_below_producer_epoch = epoch;
    add.v3_and_below_topics = vec![AddPartitionsToTxnTopic::default()
        .with_name(topic_name("c"))
        .with_partitions(vec![0])];
    let r = c.send(&add, 3).unwrap();
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let end = EndTxnRequest::default()
        .with_transactional_id(tid(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(true);
    assert_eq!(c.send(&end, 3).unwrap().error_code, 0);
}

fn describe(c: &mut WireClient, id: &str) -> (String, i64, i16) {
    let r = c
        .send(
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(id)]),
            0,
        )
        .unwrap();
    let t = &r.transaction_states[0];
    assert_eq!(t.error_code, 0);
    (
        t.transaction_state.to_string(),
        t.producer_id.0,
        t.producer_epoch,
    )
}

/// Until both ids show CompleteCommit (the last commit's markers are written after EndTxn).
fn settled(c: &mut WireClient, ids: &[&str]) -> Vec<(String, i64, i16)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states: Vec<_> = ids.iter().map(|id| describe(c, id)).collect();
        if states.iter().all(|s| s.0 == "CompleteCommit") {
            return states;
        }
        assert!(Instant::now() < deadline, "not settled: {states:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_transaction_log_is_compacted_and_keeps_every_id() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), SETTINGS);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    c.create_topic("c", 1).unwrap();
    let ids = ["compact-a", "compact-b"];
    let producers: Vec<(i64, i16)> = ids.iter().map(|id| init(&mut c, id)).collect();
    for _ in 0..40 {
        for (id, p) in ids.iter().zip(&producers) {
            transaction(&mut c, id, *p);
        }
    }
    let before = settled(&mut c, &ids);
    // Compaction runs on the coordinator's tick: the log start moves past the old records.
    // One may run while the transactions are still being written, and the records written
    // after it wait for the next one (due past `compaction.min.records`).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (start, end) = (
            c.list_offset("__transaction_state", 0, -2).unwrap(),
            c.list_offset("__transaction_state", 0, -1).unwrap(),
        );
        if start > 0 && end - start < 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction log was never compacted to its live records: {start}..{end}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    runtime.block_on(running.shutdown());

    let running = common::start(&runtime, dir.path(), SETTINGS);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    assert_eq!(
        settled(&mut c, &ids),
        before,
        "the same state after a restart"
    );
    // And the ids work on: one more transaction each.
    for (id, p) in ids.iter().zip(&producers) {
        transaction(&mut c, id, *p);
    }
    settled(&mut c, &ids);
    drop(c);
    runtime.block_on(running.shutdown());
}
