//! Tally's client sets a record's idempotency key where the topic's `idempotency.key` wants it:
//! the record key, or the named header. Two producers (two ids, as after a restart) send the
//! same orders; each is stored once. A topic without the config refuses such a record.

use std::path::Path;
use std::time::Duration;

use tally_client::{
    Admin, ClientConfig, ClientError, Consumer, ConsumerConfig, NewTopic, Offset, Producer,
    ProducerConfig, ProducerRecord,
};
use tally_testkit::BrokerProcess;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

async fn read(bootstrap: &str, topic: &str) -> Vec<tally_client::ConsumerRecord> {
    let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap)).await.unwrap();
    consumer
        .assign_topic(topic, Offset::Earliest)
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_follows_the_topic_config() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let b = broker.bootstrap();
    let admin = Admin::new(ClientConfig::new(b.clone())).await.unwrap();
    for (topic, source) in [
        ("by-header", Some("header:order-id")),
        ("by-key", Some("key")),
        ("plain", None),
    ] {
        let mut t = NewTopic::new(topic, 1);
        if let Some(s) = source {
            t.configs.push(("idempotency.key".into(), s.into()));
        }
        admin.create_topic(t).await.unwrap();
    }
    for run in 0..2 {
        // A new producer (a new producer id) each run, as after a restart.
        let producer = Producer::new(ProducerConfig::new(b.clone())).await.unwrap();
        for topic in ["by-header", "by-key"] {
            for order in ["o-1", "o-2"] {
                let record = ProducerRecord::new(topic, format!("{order} run {run}"))
                    .with_idempotency_key(order);
                producer.send_and_wait(record).await.unwrap();
            }
        }
        let refused = producer
            .send(ProducerRecord::new("plain", "x").with_idempotency_key("o-1"))
            .await;
        assert!(
            matches!(refused, Err(ClientError::Config(ref m)) if m.contains("idempotency.key=none")),
            "{:?}",
            refused.err()
        );
        producer.close().await;
    }
    let header = read(&b, "by-header").await;
    let got: Vec<(String, String)> = header
        .iter()
        .map(|r| {
            let h = r
                .headers
                .iter()
                .find(|h| h.key == "order-id")
                .expect("header set");
            (
                String::from_utf8_lossy(h.value.as_deref().unwrap()).into_owned(),
                String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("o-1".into(), "o-1 run 0".into()),
            ("o-2".into(), "o-2 run 0".into())
        ]
    );
    assert!(header.iter().all(|r| r.key.is_none()));
    let keyed = read(&b, "by-key").await;
    let keys: Vec<String> = keyed
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap()).into_owned())
        .collect();
    assert_eq!(keys, ["o-1", "o-2"]);
}
