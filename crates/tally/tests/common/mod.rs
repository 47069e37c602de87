//! Helpers shared by the broker's end-to-end tests.
#![allow(dead_code)]

use tally_client::{Producer, ProducerConfig, ProducerRecord};

/// Writes `count` messages (`m0`, `m1`, ...) to `topic` (to `partition` when given) with the
/// Tally producer, one request in flight at a time, so that each answer the fault proxy loses
/// is followed by exactly one retry, which the broker answers from its memory.
pub async fn produce_one_request_at_a_time(
    bootstrap: String,
    topic: &str,
    count: usize,
    partition: Option<i32>,
) {
    let mut config = ProducerConfig::new(bootstrap);
    config.max_in_flight_requests_per_connection = 1;
    config.linger_ms = 2;
    config.retry_backoff_ms = 20;
    config.client.request_timeout_ms = 1_000;
    let producer = Producer::new(config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..count {
        let mut record = ProducerRecord::new(topic, format!("m{i}"));
        if let Some(p) = partition {
            record = record.with_partition(p);
        }
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;
}
