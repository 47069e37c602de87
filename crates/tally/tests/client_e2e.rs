//! Tally's own client against a real `tally serve`: a plain round trip with Kafka's key
//! placement, and the exactly-once proof under faults: 100,000 messages through a proxy that
//! loses 5 % of Produce answers after the broker wrote them and resets connections. With
//! idempotence every message is stored once, in order; the same run without idempotence
//! stores duplicates, which shows the test can fail.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};
use tally_client::partitioner::partition_for_key;
use tally_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};
use tally_testkit::BrokerProcess;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

async fn read_all(
    bootstrap: &str,
    topic: &str,
    expected: usize,
) -> Vec<tally_client::ConsumerRecord> {
    let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap)).await.unwrap();
    consumer
        .assign_topic(topic, Offset::Earliest)
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while out.len() < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} of {expected}",
            out.len()
        );
        out.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    }
    // Nothing beyond what was expected.
    out.extend(consumer.poll(Duration::from_millis(300)).await.unwrap());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_kafka_key_placement() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let admin = Admin::new(ClientConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    admin.create_topic(NewTopic::new("keys", 4)).await.unwrap();
    let producer = Producer::new(ProducerConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    let (pid, epoch) = producer.producer_id_and_epoch();
    assert!(pid >= 0 && epoch == 0, "idempotent by default");
    let mut deliveries = Vec::new();
    for i in 0..1000 {
        let key = format!("user-{}", i % 37);
        let record = ProducerRecord::new("keys", format!("v{i}"))
            .with_key(key.clone())
            .with_header("n", format!("{i}"));
        deliveries.push((key, producer.send(record).await.unwrap()));
    }
    for (key, delivery) in deliveries {
        let meta = delivery.await.unwrap();
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), 4),
            "murmur2 placement of {key}"
        );
        assert!(meta.offset >= 0);
    }
    producer.close().await;
    let records = read_all(&broker.bootstrap(), "keys", 1000).await;
    assert_eq!(records.len(), 1000);
    for r in &records {
        let key = std::str::from_utf8(r.key.as_ref().unwrap()).unwrap();
        assert_eq!(r.partition, partition_for_key(key.as_bytes(), 4));
        assert_eq!(r.headers[0].key, "n");
        assert_eq!(r.producer_id, pid);
    }
    let producers = admin.describe_producers("keys", None).await.unwrap();
    assert!(producers.iter().all(|p| p.producer_id == pid));
    assert_eq!(producers.len(), 4, "one producer entry per partition");
}

const MESSAGES: usize = 100_000;
const PARTITIONS: i32 = 3;

/// Produces MESSAGES values "p{partition}-{counter}" through a faulty proxy; returns what the
/// topic holds afterwards (read with faults off) and the proxy's counts.
async fn produce_through_faults(
    idempotent: bool,
    topic: &str,
) -> (
    Vec<tally_client::ConsumerRecord>,
    tally_chaos::FaultCountsSnapshot,
) {
    let mut proxy_config = ProxyConfig::new("127.0.0.1:9".parse().unwrap());
    proxy_config.seed = 42;
    proxy_config.drop_produce_responses = DropPolicy::Probability(0.05);
    proxy_config.reset_probability = 0.005;
    let proxy = FaultProxy::start(proxy_config).await.unwrap();
    let advertise = proxy.local_addr().to_string();
    let broker = BrokerProcess::start(Path::new(TALLY), &["--advertise", &advertise]);
    proxy.set_upstream(broker.addr);
    proxy.set_faults_enabled(false);
    let admin = Admin::new(ClientConfig::new(advertise.clone()))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new(topic, PARTITIONS))
        .await
        .unwrap();
    proxy.set_faults_enabled(true);

    let mut config = ProducerConfig::new(advertise.clone());
    config.enable_idempotence = idempotent;
    config.batch_size = 512;
    config.linger_ms = 2;
    config.retry_backoff_ms = 10;
    config.client.reconnect_backoff_ms = 5;
    config.client.request_timeout_ms = 10_000;
    let producer = Producer::new(config).await.unwrap();
    let mut deliveries = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let partition = (i % PARTITIONS as usize) as i32;
        let record =
            ProducerRecord::new(topic, format!("p{partition}-{i}")).with_partition(partition);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.expect(
            "every message acknowledged: retries never give up within the delivery timeout",
        );
    }
    producer.close().await;
    let counts = proxy.counters();
    proxy.set_faults_enabled(false);
    let records = read_all(&advertise, topic, MESSAGES).await;
    drop(broker);
    (records, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_through_lost_acks_and_resets_and_duplicates_without_idempotence() {
    let (records, counts) = produce_through_faults(true, "faults").await;
    eprintln!("idempotent run: {counts:?}");
    assert!(
        counts.produce_responses_dropped >= 50,
        "too few lost acknowledgements to mean anything: {counts:?}"
    );
    assert!(counts.connections_reset > 0, "{counts:?}");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut last: HashMap<i32, i64> = HashMap::new();
    for r in &records {
        let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
        let (tag, counter) = value.split_once('-').unwrap();
        assert_eq!(tag, format!("p{}", r.partition));
        let counter: i64 = counter.parse().unwrap();
        let previous = last.insert(r.partition, counter).unwrap_or(-1);
        assert!(
            counter > previous,
            "partition {}: {counter} after {previous}",
            r.partition
        );
        *seen.entry(value).or_default() += 1;
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0, "duplicates with idempotence on");
    assert_eq!(seen.len(), MESSAGES, "every message stored");
    assert_eq!(records.len(), MESSAGES);

    // The control: the same faults without idempotence store some messages twice.
    let (records, counts) = produce_through_faults(false, "faults-control").await;
    eprintln!("control run: {counts:?}");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *seen
            .entry(String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .or_default() += 1;
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("duplicates without idempotence: {duplicates}");
    assert!(
        duplicates > 0,
        "the control run must show duplicates, or this test proves nothing"
    );
    assert_eq!(
        seen.len(),
        MESSAGES,
        "no message lost in the control run either"
    );
}

/// A batch refused for good (MESSAGE_TOO_LARGE) leaves a hole in the sequence; the producer
/// closes it with an epoch bump, and everything else is still stored once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_reported_and_the_epoch_bump_keeps_the_rest_exactly_once() {
    let broker = BrokerProcess::start(Path::new(TALLY), &["--set", "message.max.bytes=3000"]);
    let admin = Admin::new(ClientConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    admin.create_topic(NewTopic::new("gap", 1)).await.unwrap();
    let mut config = ProducerConfig::new(broker.bootstrap());
    config.batch_size = 1000;
    config.linger_ms = 1;
    let producer = Producer::new(config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let value = if i == 150 {
            "x".repeat(5000)
        } else {
            format!("m{i}")
        };
        deliveries.push((
            i,
            producer
                .send(ProducerRecord::new("gap", value))
                .await
                .unwrap(),
        ));
    }
    let mut refused = Vec::new();
    for (i, d) in deliveries {
        match d.await {
            Ok(_) => {}
            Err(tally_client::ProduceError::Rejected(e)) => {
                assert!(e.to_string().contains("MessageTooLarge"), "{e}");
                refused.push(i);
            }
            Err(e) => panic!("message {i}: {e}"),
        }
    }
    assert_eq!(refused, vec![150]);
    assert!(
        producer.producer_id_and_epoch().1 >= 1,
        "the gap was closed by an epoch bump"
    );
    // The producer goes on working after the bump.
    producer
        .send_and_wait(ProducerRecord::new("gap", "after"))
        .await
        .unwrap();
    producer.close().await;
    let records = read_all(&broker.bootstrap(), "gap", 300).await;
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    let mut expected: Vec<String> = (0..300)
        .filter(|i| *i != 150)
        .map(|i| format!("m{i}"))
        .collect();
    expected.push("after".into());
    assert_eq!(values, expected);
}

/// Every answer is lost for a while: batches time out with an unknown fate ("possibly
/// persisted"), the partition is unresolved, the producer bumps its epoch, and once the
/// network heals it goes on. Nothing is ever stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_unknown_fate_time_out_and_the_producer_recovers_without_duplicates() {
    let mut proxy_config = ProxyConfig::new("127.0.0.1:9".parse().unwrap());
    proxy_config.drop_produce_responses = DropPolicy::Probability(1.0);
    let proxy = FaultProxy::start(proxy_config).await.unwrap();
    let advertise = proxy.local_addr().to_string();
    let broker = BrokerProcess::start(Path::new(TALLY), &["--advertise", &advertise]);
    proxy.set_upstream(broker.addr);
    proxy.set_faults_enabled(false);
    let admin = Admin::new(ClientConfig::new(advertise.clone()))
        .await
        .unwrap();
    admin.create_topic(NewTopic::new("dark", 1)).await.unwrap();
    let mut config = ProducerConfig::new(advertise.clone());
    config.delivery_timeout_ms = 1500;
    config.retry_backoff_ms = 50;
    config.linger_ms = 1;
    let producer = Producer::new(config).await.unwrap();
    producer
        .send_and_wait(ProducerRecord::new("dark", "before"))
        .await
        .unwrap();

    proxy.set_faults_enabled(true);
    let mut lost = Vec::new();
    for i in 0..20 {
        lost.push(
            producer
                .send(ProducerRecord::new("dark", format!("dark-{i}")))
                .await
                .unwrap(),
        );
    }
    for d in lost {
        match d.await {
            Err(tally_client::ProduceError::TimedOut {
                possibly_persisted: true,
                ..
            }) => {}
            other => panic!("expected a timeout of unknown fate, got {other:?}"),
        }
    }
    proxy.set_faults_enabled(false);
    let mut after = Vec::new();
    for i in 0..20 {
        after.push(
            producer
                .send(ProducerRecord::new("dark", format!("after-{i}")))
                .await
                .unwrap(),
        );
    }
    for d in after {
        d.await
            .expect("the producer recovers once answers come back");
    }
    assert!(
        producer.producer_id_and_epoch().1 >= 1,
        "unresolved sequences were closed by a bump"
    );
    producer.close().await;

    let end = admin.list_offset("dark", 0, -1).await.unwrap() as usize;
    let records = read_all(&advertise, "dark", end).await;
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    let mut unique = values.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        values.len(),
        "a message was stored twice: {values:?}"
    );
    assert_eq!(values[0], "before");
    for i in 0..20 {
        assert!(values.contains(&format!("after-{i}")), "after-{i} missing");
    }
    eprintln!(
        "stored {} of the 20 messages whose answers were lost",
        values.iter().filter(|v| v.starts_with("dark-")).count()
    );
}
