//! What librdkafka's consumer sees of transactions, before the transaction coordinator exists:
//! transactional batches are placed on the partitions' writers as verified (what the
//! coordinator's verification will allow), and markers are written with WriteTxnMarkers over
//! the wire. Across 3 partitions of 2 topics, read_committed must see exactly the committed
//! records in order, read_uncommitted all of them, and no control record reaches either; an
//! open transaction holds read_committed consumers at the last stable offset, including
//! non-transactional records written after it started, until its marker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{DescribeProducersRequest, ProducerId, WriteTxnMarkersRequest};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Message, Offset, TopicPartitionList};
use tally_broker::partition_handle::AppendRequest;
use tally_broker::RunningBroker;
use tally_partition::{validate_client_batch, EntryOrigin};
use tally_testkit::requests::topic_name;
use tally_testkit::{BatchSpec, WireClient};

mod common;

const PARTITIONS: [(&str, i32); 3] = [("txn-a", 0), ("txn-a", 1), ("txn-b", 0)];

/// Appends one batch of `values` from producer `pid` to a partition, as a verified
/// transactional batch (or a plain one when `pid` is -1), and returns its base offset.
fn append(
    runtime: &tokio::runtime::Runtime,
    running: &RunningBroker,
    (topic, partition): (&str, i32),
    pid: i64,
    seq: i32,
    values: &[String],
) -> i64 {
    let mut spec = BatchSpec::new(pid, if pid < 0 { -1 } else { 0 }, seq, values.len());
    spec.values = values.iter().map(|v| v.clone().into_bytes()).collect();
    spec.transactional = pid >= 0;
    let bytes = spec.encode();
    let header = validate_client_batch(&bytes, usize::MAX).unwrap();
    let handle = running.broker.topics.partition(topic, partition).unwrap();
    let request = AppendRequest {
        origin: EntryOrigin::Client,
        header,
        batch: bytes,
        append_time_ms: 1_700_000_000_000,
        txn_verified: true,
    };
    let answer = runtime.block_on(async { handle.submit(request).await.unwrap().await });
    answer.unwrap().unwrap().base_offset
}

/// Ends producer `pid`'s transaction on every partition, over the wire.
fn end_txn(client: &mut WireClient, pid: i64, commit: bool) {
    let mut topics: HashMap<&str, Vec<i32>> = HashMap::new();
    for (t, p) in PARTITIONS {
        topics.entry(t).or_default().push(p);
    }
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_transaction_result(commit)
        .with_coordinator_epoch(0)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps)
                })
                .collect(),
        );
    let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let response = client.send(&request, 1).unwrap();
    for t in &response.markers[0].topics {
        for p in &t.partitions {
            assert_eq!(
                p.error_code, 0,
                "marker on {:?}/{}",
                t.name, p.partition_index
            );
        }
    }
}

fn consumer(addr: SocketAddr, isolation: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("group.id", "read-committed-test")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (t, p) in PARTITIONS {
        tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Polls until `want` values arrived per partition in total or `wait` passed; returns the
/// values per partition in the order received.
fn read(
    consumer: &BaseConsumer,
    want: usize,
    wait: Duration,
) -> HashMap<(String, i32), Vec<String>> {
    let mut got: HashMap<(String, i32), Vec<String>> = HashMap::new();
    let deadline = Instant::now() + wait;
    while got.values().map(Vec::len).sum::<usize>() < want && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
            got.entry((m.topic().to_string(), m.partition()))
                .or_default()
                .push(value);
        }
    }
    got
}

fn values(prefix: &str, partition: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}-{partition}-{i}"))
        .collect()
}

#[test]
fn read_committed_sees_exactly_the_committed_records() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[]);
    let mut client = WireClient::connect(running.local_addr).unwrap();
    client.create_topic("txn-a", 2).unwrap();
    client.create_topic("txn-b", 1).unwrap();

    // Producer 100 commits, producer 200 aborts (with plain records written while it was
    // open), producer 100 commits again.
    let mut expected: HashMap<(String, i32), Vec<String>> = HashMap::new();
    let mut everything: HashMap<(String, i32), Vec<String>> = HashMap::new();
    let mut seq = [0i32; 2];
    for (round, (pid, commit)) in [(100i64, true), (200, false), (100, true)]
        .into_iter()
        .enumerate()
    {
        let s = &mut seq[usize::from(pid == 200)];
        for (i, tp) in PARTITIONS.into_iter().enumerate() {
            let key = (tp.0.to_string(), tp.1);
            let txn = values(&format!("r{round}-p{pid}"), i, 3);
            append(&runtime, &running, tp, pid, *s, &txn);
            everything
                .entry(key.clone())
                .or_default()
                .extend(txn.clone());
            if commit {
                expected.entry(key.clone()).or_default().extend(txn);
            }
            if !commit {
                let plain = values(&format!("plain{round}"), i, 1);
                append(&runtime, &running, tp, -1, -1, &plain);
                everything
                    .entry(key.clone())
                    .or_default()
                    .extend(plain.clone());
                expected.entry(key).or_default().extend(plain);
            }
        }
        *s += 3;
        end_txn(&mut client, pid, commit);
    }

    let total = |m: &HashMap<(String, i32), Vec<String>>| m.values().map(Vec::len).sum::<usize>();
    let committed = read(
        &consumer(running.local_addr, "read_committed"),
        total(&expected),
        Duration::from_secs(20),
    );
    assert_eq!(
        committed, expected,
        "read_committed sees the committed records, in order"
    );
    let all = read(
        &consumer(running.local_addr, "read_uncommitted"),
        total(&everything),
        Duration::from_secs(20),
    );
    assert_eq!(
        all, everything,
        "read_uncommitted sees every data record and no marker"
    );

    // An open transaction on every partition, then plain records after it.
    for (i, tp) in PARTITIONS.into_iter().enumerate() {
        append(&runtime, &running, tp, 300, 0, &values("open", i, 2));
        append(&runtime, &running, tp, -1, -1, &values("after-open", i, 1));
    }
    let open_total = total(&everything) + 3 * 3;
    let uncommitted = consumer(running.local_addr, "read_uncommitted");
    assert_eq!(
        total(&read(&uncommitted, open_total, Duration::from_secs(20))),
        open_total
    );
    let held = consumer(running.local_addr, "read_committed");
    // Everything up to the LSO arrives; then nothing more while the transaction is open (the
    // read_uncommitted consumer above already got those records in the same kind of wait).
    let before = read(&held, total(&expected) + 1, Duration::from_secs(3));
    assert_eq!(
        before, expected,
        "held at the LSO: nothing of or after the open transaction"
    );
    let producers = client
        .send(
            &DescribeProducersRequest::default().with_topics(vec![
                kafka_protocol::messages::describe_producers_request::TopicRequest::default()
                    .with_name(topic_name("txn-b"))
                    .with_partition_indexes(vec![0]),
            ]),
            0,
        )
        .unwrap();
    let states = &producers.topics[0].partitions[0].active_producers;
    let open = states.iter().find(|s| s.producer_id.0 == 300).unwrap();
    assert!(
        open.current_txn_start_offset >= 0,
        "DescribeProducers shows where it began"
    );

    end_txn(&mut client, 300, true);
    let after = read(&held, 3 * 3, Duration::from_secs(20));
    for (i, (t, p)) in PARTITIONS.into_iter().enumerate() {
        let mut want = values("open", i, 2);
        want.extend(values("after-open", i, 1));
        assert_eq!(after[&(t.to_string(), p)], want);
    }
    drop(running);
}
