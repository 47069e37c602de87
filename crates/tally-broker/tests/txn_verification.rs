//! KIP-890 part 1 on the wire: a transactional batch opens a transaction on a partition only
//! if the coordinator has that partition in the producer's ongoing transaction. A batch sent
//! before AddPartitionsToTxn, or late after the transaction ended (the retry that made
//! Kafka's "hanging transactions"), is INVALID_TXN_STATE and nothing is stored.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest, InitProducerIdRequest,
    ProduceRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tally_testkit::requests::topic_name;
use tally_testkit::{BatchSpec, WireClient};

mod common;

const INVALID_TXN_STATE: i16 = 48;
const ID: &str = "verified";

fn tid() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(ID))
}

fn produce(c: &mut WireClient, partition: i32, pid: i64, epoch: i16, seq: i32) -> (i16, i64) {
    let mut spec = BatchSpec::new(pid, epoch, seq, 1);
    spec.transactional = true;
    let request = ProduceRequest::default()
        .with_transactional_id(Some(tid()))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("v"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(spec.encode()))])]);
    let r = c.send(&request, 9).unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn add(c: &mut WireClient, pid: i64, epoch: i16, partition: i32) {
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = tid();
    request.v3_and_below_producer_id = ProducerId(pid);
    request.v3_and_below_producer_epoch = epoch;
    request.v3_and_below_topics = vec![AddPartitionsToTxnTopic::default()
        .with_name(topic_name("v"))
        .with_partitions(vec![partition])];
    let r = c.send(&request, 3).unwrap();
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
}

#[test]
fn only_partitions_in_the_ongoing_transaction_accept_transactional_batches() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[]);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    c.create_topic("v", 2).unwrap();
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
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);

    // Not added yet: refused, nothing stored.
    assert_eq!(produce(&mut c, 0, pid, epoch, 0).0, INVALID_TXN_STATE);
    add(&mut c, pid, epoch, 0);
    assert_eq!(produce(&mut c, 0, pid, epoch, 0), (0, 0));
    // Partition 1 was never added.
    assert_eq!(produce(&mut c, 1, pid, epoch, 0).0, INVALID_TXN_STATE);
    let end = c
        .send(
            &EndTxnRequest::default()
                .with_transactional_id(tid())
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(false),
            3,
        )
        .unwrap();
    assert_eq!(end.error_code, 0);
    // A late batch after the abort (once its markers are in): it would open a transaction
    // nobody ends. Refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = c
            .send(
                &DescribeTransactionsRequest::default().with_transactional_ids(vec![tid()]),
                0,
            )
            .unwrap();
        if &*d.transaction_states[0].transaction_state == "CompleteAbort" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the abort never completed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(produce(&mut c, 0, pid, epoch, 1).0, INVALID_TXN_STATE);
    assert_eq!(
        c.list_offset("v", 1, -1).unwrap(),
        0,
        "nothing stored on partition 1"
    );
    drop(running);
}

/// The batched form (v4+), as brokers send it to the coordinator: a verify-only entry says
/// which partitions are in the transaction without adding any; another entry adds.
#[test]
fn the_batched_form_verifies_and_adds() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[]);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    c.create_topic("v", 2).unwrap();
    let init = |c: &mut WireClient, id: &'static str| {
        let r = c
            .send(
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(id))))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .unwrap();
        (r.producer_id, r.producer_epoch)
    };
    let (pid, epoch) = init(&mut c, ID);
    add(&mut c, pid.0, epoch, 0);
    let (other_pid, other_epoch) = init(&mut c, "other");
    let entry = |id: &'static str, pid, epoch, verify_only, parts: Vec<i32>| {
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str(id)))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_verify_only(verify_only)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name("v"))
                .with_partitions(parts)])
    };
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        entry(ID, pid, epoch, true, vec![0, 1]),
        entry("other", other_pid, other_epoch, false, vec![1]),
        entry(ID, pid, epoch + 1, true, vec![0]),
    ]);
    let r = c.send(&request, 4).unwrap();
    let codes: Vec<Vec<i16>> = r
        .results_by_transaction
        .iter()
        .map(|t| {
            t.topic_results[0]
                .results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
                .collect()
        })
        .collect();
    const PRODUCER_FENCED: i16 = 90;
    assert_eq!(
        codes,
        vec![vec![0, INVALID_TXN_STATE], vec![0], vec![PRODUCER_FENCED]],
        "verified: partition 0 in, 1 not; added; wrong epoch fenced"
    );
    // Verifying added nothing: partition 1 still refuses the first transaction's batches.
    assert_eq!(produce(&mut c, 1, pid.0, epoch, 0).0, INVALID_TXN_STATE);
    drop(running);
}
