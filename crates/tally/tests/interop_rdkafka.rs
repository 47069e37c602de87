//! Tally's client and librdkafka on the same topics: what one writes, the other reads, with
//! keys, headers and every compression codec.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header as RdHeader, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Message, Offset as RdOffset, TopicPartitionList};
use tally_client::{
    Admin, ClientConfig, Compression, Consumer, ConsumerConfig, NewTopic, Offset, Producer,
    ProducerConfig, ProducerRecord,
};
use tally_testkit::BrokerProcess;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const N: usize = 1000;

/// Key, value and headers of a message read by librdkafka.
type RdMessage = (Option<String>, String, Vec<(String, String)>);

fn rd_read(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<RdMessage> {
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "interop")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, RdOffset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        assert!(
            Instant::now() < deadline,
            "librdkafka read {} of {expected}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap_or_else(|e| panic!("{topic}: {e}"));
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                headers,
            ));
        }
    }
    out
}

/// Kafka's codec id of a `compression.codec` name.
fn codec_id(name: &str) -> i16 {
    ["none", "gzip", "snappy", "lz4", "zstd"]
        .iter()
        .position(|n| *n == name)
        .expect("a codec") as i16
}

/// The batches are stored with the codec they were sent with (the broker never recompresses).
fn assert_stored_codec(bootstrap: &str, topic: &str, name: &str) {
    let mut c = tally_testkit::WireClient::connect(bootstrap.parse().unwrap()).unwrap();
    let mut batches = 0;
    for p in 0..2 {
        for h in c.read_batches(topic, p).unwrap() {
            assert_eq!(
                h.compression(),
                codec_id(name),
                "{topic}: a batch's codec bits"
            );
            batches += 1;
        }
    }
    assert!(batches > 0, "{topic}: no batch stored");
}

#[test]
fn tally_client_and_librdkafka_read_each_other() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let bootstrap = broker.bootstrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Tally writes, librdkafka reads: every codec.
    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    for (name, codec) in codecs {
        let topic = format!("from-tally-{name}");
        runtime.block_on(async {
            let admin = Admin::new(ClientConfig::new(bootstrap.clone()))
                .await
                .unwrap();
            admin
                .create_topic(NewTopic::new(topic.clone(), 2))
                .await
                .unwrap();
            let mut config = ProducerConfig::new(bootstrap.clone());
            config.compression = codec;
            let producer = Producer::new(config).await.unwrap();
            let mut deliveries = Vec::new();
            for i in 0..N {
                let record = ProducerRecord::new(topic.clone(), format!("tally-{i}"))
                    .with_key(format!("k{i}"))
                    .with_header("codec", name);
                deliveries.push(producer.send(record).await.unwrap());
            }
            for d in deliveries {
                d.await.unwrap();
            }
            producer.close().await;
        });
        assert_stored_codec(&bootstrap, &topic, name);
        let read = rd_read(&bootstrap, &topic, 2, N);
        let values: BTreeSet<String> = read.iter().map(|(_, v, _)| v.clone()).collect();
        assert_eq!(values.len(), N, "{name}: each message once");
        for (key, value, headers) in &read {
            assert_eq!(
                key.as_deref().unwrap()[1..],
                value["tally-".len()..],
                "{name}"
            );
            assert_eq!(
                headers,
                &vec![("codec".to_string(), name.to_string())],
                "{name}"
            );
        }
    }

    // librdkafka writes (idempotent), Tally reads: every codec.
    for name in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("from-rdkafka-{name}");
        runtime.block_on(async {
            let admin = Admin::new(ClientConfig::new(bootstrap.clone()))
                .await
                .unwrap();
            admin
                .create_topic(NewTopic::new(topic.clone(), 2))
                .await
                .unwrap();
        });
        let producer: BaseProducer = RdConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("compression.codec", name)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for i in 0..N {
            let key = format!("k{i}");
            let value = format!("rd-{i}");
            let headers = OwnedHeaders::new().insert(RdHeader {
                key: "codec",
                value: Some(name),
            });
            let mut record = BaseRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        assert_stored_codec(&bootstrap, &topic, name);
        let records = runtime.block_on(async {
            let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap.clone()))
                .await
                .unwrap();
            consumer
                .assign_topic(&topic, Offset::Earliest)
                .await
                .unwrap();
            let mut out = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while out.len() < N {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "tally read {} of {N} ({name})",
                    out.len()
                );
                out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
            }
            out
        });
        let values: BTreeSet<String> = records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(values.len(), N, "{name}: each message once");
        for r in &records {
            let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
            let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
            assert_eq!(key[1..], value["rd-".len()..], "{name}");
            assert_eq!(r.headers.len(), 1);
            assert_eq!(
                r.headers[0].value.as_deref(),
                Some(name.as_bytes()),
                "{name}"
            );
            assert!(r.producer_id >= 0, "librdkafka produced idempotently");
        }
    }
}
