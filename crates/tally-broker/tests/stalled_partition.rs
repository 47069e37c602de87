//! A stalled partition stalls only itself. Two partitions' writers are held through a test
//! hook (as a disk stuck in the kernel would hold them) on a broker whose runtime has two
//! async workers: if any part of the produce path blocked a worker while a writer is busy (a
//! lock held across the write, a write done on the worker), the two held partitions would take
//! both workers and nothing else would be answered. A behaviour check, not a timing one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{MetadataRequest, ProduceRequest};
use tally_broker::{PartitionHandle, RunningBroker};
use tally_testkit::requests::topic_name;
use tally_testkit::{batch, WireClient};

mod common;

const TOPIC: &str = "stall";

fn produce_request(parts: &[(i32, bytes::Bytes)]) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(TOPIC))
            .with_partition_data(
                parts
                    .iter()
                    .map(|(p, records)| {
                        PartitionProduceData::default()
                            .with_index(*p)
                            .with_records(Some(records.clone()))
                    })
                    .collect(),
            )])
}

/// The base offsets of a produce answer, with every error code checked.
fn offsets(response: &kafka_protocol::messages::ProduceResponse) -> Vec<(i32, i64)> {
    response.responses[0]
        .partition_responses
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "partition {} failed", p.index);
            (p.index, p.base_offset)
        })
        .collect()
}

fn handle(running: &RunningBroker, partition: i32) -> Arc<PartitionHandle> {
    running.broker.topics.partition(TOPIC, partition).unwrap()
}

#[test]
fn a_held_writer_stalls_only_its_own_partition() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[]);
    let addr: SocketAddr = running.local_addr;
    let connect = || WireClient::connect(addr).unwrap();
    let mut admin = connect();
    admin.create_topic(TOPIC, 3).unwrap();

    // Hold partitions 0 and 2: as many stuck writers as the runtime has workers.
    let hold_0 = runtime.block_on(handle(&running, 0).hold_writer());
    let hold_2 = runtime.block_on(handle(&running, 2).hold_writer());

    // Produce requests to the held partitions, from as many connections as there are workers.
    let mut stuck_a = connect();
    let stuck_a_id = stuck_a
        .send_only(&produce_request(&[(0, batch(-1, -1, -1, 1))]), 9)
        .unwrap();
    let mut stuck_b = connect();
    let stuck_b_id = stuck_b
        .send_only(&produce_request(&[(2, batch(-1, -1, -1, 1))]), 9)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // Another connection: partition 1 is answered, and so are other requests.
    let mut other = connect();
    let answer = other
        .send(&produce_request(&[(1, batch(-1, -1, -1, 2))]), 9)
        .unwrap();
    assert_eq!(offsets(&answer), vec![(1, 0)]);
    let metadata = other
        .send(&MetadataRequest::default().with_topics(None), 9)
        .unwrap();
    assert!(metadata
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC)));

    // The same connection pipelines: partition 1, then the held partition 0, then partition 1
    // again. The first is answered; the third is written by partition 1's writer (a reader on
    // another connection sees it) although its answer must wait for the one before it.
    let mut same = connect();
    let first = same
        .send_only(&produce_request(&[(1, batch(-1, -1, -1, 3))]), 9)
        .unwrap();
    let second = same
        .send_only(&produce_request(&[(0, batch(-1, -1, -1, 1))]), 9)
        .unwrap();
    let third = same
        .send_only(&produce_request(&[(1, batch(-1, -1, -1, 4))]), 9)
        .unwrap();
    let answer = same.receive::<ProduceRequest>(9, first).unwrap();
    assert_eq!(offsets(&answer), vec![(1, 2)]);
    let mut reader = connect();
    let mut end = 0;
    for _ in 0..100 {
        let (code, hw, _) = reader.fetch_once(TOPIC, 1, 0, 1 << 20).unwrap();
        assert_eq!(code, 0);
        end = hw;
        if end == 9 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        end, 9,
        "partition 1 applied the third request while partition 0 was held"
    );

    // Nothing has been answered for the held partitions yet.
    assert_eq!(handle(&running, 0).reader().high_watermark(), 0);
    assert_eq!(handle(&running, 2).reader().high_watermark(), 0);

    // Release: the held requests are answered, and the pipelined ones in request order.
    drop(hold_0);
    drop(hold_2);
    let a = stuck_a.receive::<ProduceRequest>(9, stuck_a_id).unwrap();
    let b = stuck_b.receive::<ProduceRequest>(9, stuck_b_id).unwrap();
    assert_eq!(offsets(&b), vec![(2, 0)]);
    let second = same.receive::<ProduceRequest>(9, second).unwrap();
    let third = same.receive::<ProduceRequest>(9, third).unwrap();
    let mut zero: Vec<i64> = [offsets(&a)[0].1, offsets(&second)[0].1].to_vec();
    zero.sort_unstable();
    assert_eq!(
        zero,
        vec![0, 1],
        "both batches for partition 0 were stored once each"
    );
    assert_eq!(offsets(&third), vec![(1, 5)]);

    runtime.block_on(running.shutdown());
}
