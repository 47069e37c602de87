//! Produce a few keyed records idempotently, then read them back.
//!
//!     tally serve &                                   # or any Kafka broker
//!     cargo run -p tally-client --example produce_consume -- 127.0.0.1:9092

use std::time::Duration;

use tally_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = "tally-client-example";
    let admin = Admin::new(ClientConfig::new(bootstrap.clone())).await?;
    if admin.describe_topic(topic).await.is_err() {
        admin.create_topic(NewTopic::new(topic, 3)).await?;
    }
    let start: Vec<i64> = {
        let mut v = Vec::new();
        for p in 0..3 {
            v.push(admin.list_offset(topic, p, -1).await?);
        }
        v
    };

    // Idempotent by default: retries after lost acknowledgements are stored once.
    let producer = Producer::new(ProducerConfig::new(bootstrap.clone())).await?;
    for i in 0..5 {
        let record = ProducerRecord::new(topic, format!("hello {i}"))
            .with_key(format!("user-{i}"))
            .with_header("source", "example");
        let meta = producer.send(record).await?.await?;
        println!(
            "sent 'hello {i}' to partition {} at offset {}",
            meta.partition, meta.offset
        );
    }
    producer.close().await;

    let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap)).await?;
    consumer
        .assign(
            &(0..3)
                .map(|p| (topic.to_string(), p, Offset::At(start[p as usize])))
                .collect::<Vec<_>>(),
        )
        .await?;
    let mut read = 0;
    while read < 5 {
        for r in consumer.poll(Duration::from_secs(1)).await? {
            println!(
                "read partition {} offset {}: {}",
                r.partition,
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
            );
            read += 1;
        }
    }
    Ok(())
}
