//! `tally demo transactions`: the limit the seed texts name, made visible. A transfer is a
//! debit on one partition and a credit on another. A writer process (this binary, started
//! again) writes the debit and is SIGKILLed before the credit. A read_committed reader then
//! sees half a transfer when the writes were plain, and nothing when they were one
//! transaction; a new writer with the same transactional id fences the dead one (its open
//! transaction is aborted) and writes the whole transfer, which the reader sees whole.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tally_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};

use crate::table::Table;

const TOPIC: &str = "transfers";
const DEBIT: &str = "alice -100";
const CREDIT: &str = "bob +100";

/// The writer, run as a child process: debit, say so, wait (to be killed), credit, commit.
pub async fn writer(bootstrap: String, transactional_id: Option<String>) -> Result<()> {
    let mut config = ProducerConfig::new(bootstrap);
    config.transactional_id = transactional_id.clone();
    config.linger_ms = 0;
    let producer = Producer::new(config).await?;
    if transactional_id.is_some() {
        producer.begin_transaction()?;
    }
    producer
        .send_and_wait(ProducerRecord::new(TOPIC, DEBIT).with_partition(0))
        .await?;
    println!("debited");
    // The parent kills the process here.
    tokio::time::sleep(Duration::from_secs(60)).await;
    producer
        .send_and_wait(ProducerRecord::new(TOPIC, CREDIT).with_partition(1))
        .await?;
    if transactional_id.is_some() {
        producer.commit_transaction().await?;
    }
    Ok(())
}

/// Starts the writer and SIGKILLs it right after its debit was acknowledged.
fn write_and_kill(bootstrap: &str, transactional_id: Option<&str>) -> Result<()> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--bootstrap", bootstrap, "demo", "transfer-writer"]);
    if let Some(id) = transactional_id {
        cmd.args(["--transactional-id", id]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("start the writer")?;
    let stdout = child.stdout.take().expect("piped");
    let debited = BufReader::new(stdout)
        .lines()
        .any(|l| l.is_ok_and(|l| l == "debited"));
    child.kill()?; // SIGKILL
    child.wait()?;
    if !debited {
        bail!("the writer stopped before its debit");
    }
    Ok(())
}

/// What a read_committed reader sees of the topic within `wait`.
async fn read_committed(bootstrap: &str, wait: Duration) -> Result<Vec<String>> {
    let mut config = ConsumerConfig::new(bootstrap.to_string());
    config.isolation_level = 1;
    let mut consumer = Consumer::new(config).await?;
    consumer
        .assign(&[
            (TOPIC.to_string(), 0, Offset::Earliest),
            (TOPIC.to_string(), 1, Offset::Earliest),
        ])
        .await?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(200)).await? {
            seen.push(String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned());
        }
    }
    Ok(seen)
}

fn show(seen: &[String]) -> String {
    let has = |v: &str| seen.iter().any(|s| s == v);
    let what = if seen.is_empty() {
        "nothing"
    } else if has(DEBIT) && has(CREDIT) {
        "the whole transfer"
    } else {
        "HALF a transfer: money vanished"
    };
    format!("{what} {seen:?}")
}

pub async fn run(bootstrap: &str) -> Result<()> {
    let admin = Admin::new(ClientConfig::new(bootstrap.to_string())).await?;
    let _ = admin.delete_topic(TOPIC).await;
    admin.create_topic(NewTopic::new(TOPIC, 2)).await?;
    let settle = Duration::from_secs(2);
    let mut table = Table::new(["STEP", "WHAT A READ_COMMITTED READER SEES"]);

    write_and_kill(bootstrap, None)?;
    table.row([
        "plain writes: debit, then the writer is killed".to_string(),
        show(&read_committed(bootstrap, settle).await?),
    ]);

    admin.delete_topic(TOPIC).await?;
    admin.create_topic(NewTopic::new(TOPIC, 2)).await?;
    write_and_kill(bootstrap, Some("transfer-writer"))?;
    table.row([
        "one transaction: debit, then the writer is killed".to_string(),
        show(&read_committed(bootstrap, settle).await?),
    ]);

    // A new writer with the same transactional id fences the dead one and writes it all.
    let mut config = ProducerConfig::new(bootstrap.to_string());
    config.transactional_id = Some("transfer-writer".into());
    let producer = Producer::new(config).await?;
    producer.begin_transaction()?;
    producer
        .send(ProducerRecord::new(TOPIC, DEBIT).with_partition(0))
        .await?;
    producer
        .send(ProducerRecord::new(TOPIC, CREDIT).with_partition(1))
        .await?;
    producer.commit_transaction().await?;
    producer.close().await;
    table.row([
        "a new writer (same id) aborts the old one, then commits both".to_string(),
        show(&read_committed(bootstrap, settle).await?),
    ]);
    println!("{}", table.render());
    Ok(())
}
