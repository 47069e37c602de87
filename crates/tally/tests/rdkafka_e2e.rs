//! An unchanged librdkafka client (the `rdkafka` crate) against a real `tally serve` process:
//! an idempotent producer (acks=all, five requests in flight) writes 100,000 messages to three
//! partitions, and a consumer reads every one back exactly once, in per-partition order.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tally_testkit::{BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 100_000;
const PARTITIONS: i32 = 3;

#[test]
fn idempotent_rdkafka_producer_and_consumer_round_trip_100k() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    WireClient::connect(broker.addr)
        .unwrap()
        .create_topic("e2e", PARTITIONS)
        .unwrap();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..MESSAGES {
        let partition = (i % PARTITIONS as usize) as i32;
        let key = format!("k{i}");
        let value = format!("p{partition}-{i}");
        let mut record = BaseRecord::to("e2e")
            .partition(partition)
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(Instant::now() < deadline, "producer stuck: {e}");
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush: every message acknowledged");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset("e2e", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut last_counter: HashMap<i32, i64> = HashMap::new();
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "read only {} of {MESSAGES} messages",
            seen.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.expect("consume");
        let partition = message.partition();
        let value = std::str::from_utf8(message.payload().unwrap())
            .unwrap()
            .to_string();
        let (tag, counter) = value.split_once('-').unwrap();
        assert_eq!(
            tag,
            format!("p{partition}"),
            "message in the wrong partition"
        );
        let counter: i64 = counter.parse().unwrap();
        // Per-partition order: counters only grow, offsets are contiguous.
        let last = last_counter.insert(partition, counter).unwrap_or(-1);
        assert!(
            counter > last,
            "partition {partition}: {counter} after {last}"
        );
        let expected = next_offset
            .insert(partition, message.offset() + 1)
            .unwrap_or(0);
        assert_eq!(
            message.offset(),
            expected,
            "partition {partition}: offset gap or repeat"
        );
        *seen.entry(value).or_default() += 1;
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "a message was delivered twice"
    );
    assert_eq!(seen.len(), MESSAGES);
    let total: i64 = next_offset.values().sum();
    assert_eq!(
        total, MESSAGES as i64,
        "the log holds exactly the messages sent"
    );
}
