//! `tally demo idempotency-keys`: the limit of Kafka's idempotence that the seed texts name,
//! and what idempotency keys do about it. An order writer process (this binary, started again)
//! sends orders 1-10 and is SIGKILLed once the broker has stored them, before it has heard its
//! acknowledgements; a new producer process cannot know what was stored and sends orders 1-10
//! again. Its new producer id makes every resend look new to Kafka's idempotence: each order
//! is stored twice. With the topic config `idempotency.key=key` each order is stored once.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tally_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};

use crate::table::Table;

const ORDERS: usize = 10;

fn order(i: usize) -> ProducerRecord {
    ProducerRecord::new("", format!("order {i}: 1 book")).with_key(format!("order-{i}"))
}

/// The writer, run as a child process: sends the orders and never waits for their answers
/// (the parent kills it once the broker has stored them).
pub async fn writer(bootstrap: String, topic: String) -> Result<()> {
    let mut config = ProducerConfig::new(bootstrap);
    config.linger_ms = 0;
    let producer = Producer::new(config).await?;
    let mut pending = Vec::new();
    for i in 1..=ORDERS {
        let mut record = order(i);
        record.topic = topic.clone();
        pending.push(producer.send(record).await?);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(pending);
    Ok(())
}

/// Starts the writer and SIGKILLs it as soon as all its orders are in the log.
async fn write_and_kill(bootstrap: &str, admin: &Admin, topic: &str) -> Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--bootstrap",
            bootstrap,
            "demo",
            "order-writer",
            "--topic",
            topic,
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("start the order writer")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let end = admin.list_offset(topic, 0, -1).await.unwrap_or(0);
        if end >= ORDERS as i64 || tokio::time::Instant::now() > deadline {
            break end;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill()?; // SIGKILL
    child.wait()?;
    if stored < ORDERS as i64 {
        bail!("the order writer stored {stored} of {ORDERS} orders before it was killed");
    }
    Ok(())
}

/// A new producer process would do this: send every order again.
async fn resend(bootstrap: &str, topic: &str) -> Result<()> {
    let producer = Producer::new(ProducerConfig::new(bootstrap.to_string())).await?;
    for i in 1..=ORDERS {
        let mut record = order(i);
        record.topic = topic.to_string();
        producer
            .send_and_wait(record)
            .await
            .map_err(|e| anyhow::anyhow!("resending order {i}: {e}"))?;
    }
    producer.close().await;
    Ok(())
}

/// How many times each order is stored in `topic`.
async fn copies(bootstrap: &str, topic: &str) -> Result<BTreeMap<String, usize>> {
    let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap.to_string())).await?;
    consumer
        .assign(&[(topic.to_string(), 0, Offset::Earliest)])
        .await?;
    let mut out = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(200)).await? {
            let key = String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned();
            *out.entry(key).or_insert(0) += 1;
        }
    }
    Ok(out)
}

fn describe(copies: &BTreeMap<String, usize>) -> (String, String) {
    let records: usize = copies.values().sum();
    let per_order = match (copies.values().min(), copies.values().max()) {
        (Some(1), Some(1)) => "1: each order once".to_string(),
        (Some(a), Some(b)) if a == b => format!("{a}: every order {a} times"),
        (Some(a), Some(b)) => format!("{a} to {b}"),
        _ => "-".to_string(),
    };
    (records.to_string(), per_order)
}

pub async fn run(bootstrap: &str) -> Result<()> {
    let admin = Admin::new(ClientConfig::new(bootstrap.to_string())).await?;
    let mut table = Table::new([
        "TOPIC",
        "PROTECTION",
        "RECORDS STORED",
        "COPIES PER ORDER",
        "RESENDS DROPPED",
    ]);
    for (topic, config, protection) in [
        ("orders-idempotence", None, "Kafka's idempotent producer"),
        (
            "orders-keys",
            Some("key"),
            "idempotent producer + idempotency.key=key",
        ),
    ] {
        let _ = admin.delete_topic(topic).await;
        let mut new = NewTopic::new(topic, 1);
        if let Some(source) = config {
            new.configs
                .push(("idempotency.key".into(), source.to_string()));
        }
        admin.create_topic(new).await?;
        write_and_kill(bootstrap, &admin, topic).await?;
        resend(bootstrap, topic).await?;
        let (records, per_order) = describe(&copies(bootstrap, topic).await?);
        let dropped = admin
            .describe_idempotency_keys(topic)
            .await?
            .first()
            .map_or("-".to_string(), |k| k.dropped_records.to_string());
        table.row([
            topic.to_string(),
            protection.to_string(),
            records,
            per_order,
            dropped,
        ]);
    }
    println!("A writer sends orders 1-10 and is killed before it hears its acknowledgements;");
    println!("a new producer process sends orders 1-10 again.\n");
    println!("{}", table.render());
    Ok(())
}
