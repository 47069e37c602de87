//! `tally demo idempotence`: the story of the seed texts, run for real. A producer sends
//! `message1`; a proxy between it and the broker lets the broker store the message, then drops
//! the acknowledgement and closes the connection; the producer retries. The table shows what
//! happened at each step, with the sequence numbers and offsets the proxy saw on the wire, then
//! what the partition holds: one copy with idempotence, two without.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use tally_broker::{Broker, BrokerConfig};
use tally_chaos::{DropPolicy, FaultProxy, ProduceOutcome, ProxyConfig};
use tally_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};

use crate::table::Table;

#[derive(Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    which: DemoKind,
}

#[derive(Subcommand)]
enum DemoKind {
    /// Lose an acknowledgement, let the producer retry, and show what the broker stores.
    #[command(after_help = "Examples:
  tally demo idempotence                     (starts its own broker in a temporary directory)
  tally demo idempotence --no-idempotence    (the same without idempotence: two copies)
  tally --bootstrap 127.0.0.1:9092 demo idempotence   (against a running broker)")]
    Idempotence {
        /// Run the producer without idempotence.
        #[arg(long)]
        no_idempotence: bool,
    },
    /// A transfer (debit, credit) whose writer is killed between the two writes: without a
    /// transaction a read_committed reader sees half of it, with one all or nothing.
    #[command(after_help = "Examples:
  tally demo transactions                    (starts its own broker in a temporary directory)
  tally --bootstrap 127.0.0.1:9092 demo transactions")]
    Transactions,
    /// An order writer is killed before it hears its acknowledgements and a new process sends
    /// every order again: two copies with Kafka's idempotence, one with idempotency keys.
    #[command(after_help = "Examples:
  tally demo idempotency-keys                (starts its own broker in a temporary directory)
  tally --bootstrap 127.0.0.1:9092 demo idempotency-keys")]
    IdempotencyKeys,
    /// The order writer of `demo idempotency-keys` (started by it).
    #[command(hide = true)]
    OrderWriter {
        #[arg(long)]
        topic: String,
    },
    /// The writer process of `demo transactions` (started by it).
    #[command(hide = true)]
    TransferWriter {
        #[arg(long)]
        transactional_id: Option<String>,
    },
}

const MESSAGE: &str = "message1";

pub async fn run(args: DemoArgs, bootstrap: Option<String>) -> Result<()> {
    let no_idempotence = match args.which {
        DemoKind::Idempotence { no_idempotence } => no_idempotence,
        DemoKind::TransferWriter { transactional_id } => {
            let bootstrap = bootstrap.ok_or_else(|| anyhow!("the writer needs --bootstrap"))?;
            return crate::demo_transactions::writer(bootstrap, transactional_id).await;
        }
        DemoKind::Transactions => return on_broker(bootstrap, Demo::Transactions).await,
        DemoKind::IdempotencyKeys => return on_broker(bootstrap, Demo::Keys).await,
        DemoKind::OrderWriter { topic } => {
            let bootstrap = bootstrap.ok_or_else(|| anyhow!("the writer needs --bootstrap"))?;
            return crate::demo_keys::writer(bootstrap, topic).await;
        }
    };
    let idempotent = !no_idempotence;
    // The broker: the one given, or our own on a temporary directory.
    let mut own = None;
    let _data;
    let upstream: SocketAddr = match &bootstrap {
        Some(addr) => addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {addr}"))?
            .next()
            .ok_or_else(|| anyhow!("cannot resolve {addr}"))?,
        None => {
            let dir = tempfile::Builder::new().prefix("tally-demo-").tempdir()?;
            let mut config = BrokerConfig::new();
            config.set("log.dirs", &dir.path().to_string_lossy())?;
            config.set("listeners", "127.0.0.1:0")?;
            config.set("http.listeners", "")?;
            let running = Broker::start(config).await?;
            let addr = running.local_addr;
            own = Some(running);
            _data = dir;
            addr
        }
    };
    let mut proxy_config = ProxyConfig::new(upstream);
    proxy_config.drop_produce_responses = DropPolicy::FirstN(1);
    proxy_config.record_events = true;
    proxy_config.rewrite_metadata = true;
    let proxy = FaultProxy::start(proxy_config).await?;

    let topic = format!("tally-demo-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let admin = Admin::new(ClientConfig::new(upstream.to_string())).await?;
    admin.create_topic(NewTopic::new(topic.clone(), 1)).await?;

    let mut config = ProducerConfig::new(proxy.local_addr().to_string());
    config.enable_idempotence = idempotent;
    config.linger_ms = 0;
    config.retry_backoff_ms = 100;
    config.delivery_timeout_ms = 30_000;
    let producer = Producer::new(config).await?;
    let (producer_id, epoch) = producer.producer_id_and_epoch();
    let delivery = producer
        .send(ProducerRecord::new(topic.clone(), MESSAGE))
        .await?;
    producer.flush().await;
    let result = delivery.await;
    producer.close().await;

    // What the partition holds now.
    let end = admin.list_offset(&topic, 0, -1).await?;
    let mut consumer = Consumer::new(ConsumerConfig::new(upstream.to_string())).await?;
    consumer
        .assign(&[(topic.clone(), 0, Offset::Earliest)])
        .await?;
    let mut stored = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (stored.len() as i64) < end && tokio::time::Instant::now() < deadline {
        stored.extend(consumer.poll(Duration::from_millis(200)).await?);
    }

    println!(
        "Idempotent producer demo: idempotence {}, topic {topic}, producer id {producer_id}, epoch {epoch}",
        if idempotent { "ON" } else { "OFF" }
    );
    println!("A proxy between producer and broker drops the broker's first acknowledgement.\n");
    let mut table = Table::new([
        "STEP",
        "ACTION",
        "SEQUENCE",
        "BROKER CHECK",
        "BROKER ACTION",
        "PRODUCER OUTPUT",
    ]);
    let mut first_offset: Option<i64> = None;
    let mut step = 0;
    for event in proxy.events() {
        let Some(p) = event.partitions.iter().find(|p| p.topic == topic) else {
            continue;
        };
        step += 1;
        let sequence = if p.producer_id >= 0 {
            p.base_sequence.to_string()
        } else {
            "none".into()
        };
        let check = if p.producer_id >= 0 {
            format!("Is sequence {} a duplicate?", p.base_sequence)
        } else {
            "No producer id: nothing to check".into()
        };
        let action = match (p.error_code, p.base_offset, first_offset) {
            (Some(0), Some(offset), Some(first)) if offset == first => {
                format!("Yes: duplicate ignored, answers offset {offset}")
            }
            (Some(0), Some(offset), _) => {
                first_offset.get_or_insert(offset);
                if p.producer_id >= 0 {
                    format!("No: stored at offset {offset}")
                } else {
                    format!("Stored at offset {offset}")
                }
            }
            (Some(code), _, _) => format!("Rejected (error {code})"),
            _ => "No answer".into(),
        };
        let output = match event.outcome {
            ProduceOutcome::AnswerDropped => "Ack lost on the way back: will retry".to_string(),
            ProduceOutcome::Delivered => match (p.producer_id >= 0, p.base_offset) {
                (true, Some(o)) => format!("Ack for sequence {} (offset {o})", p.base_sequence),
                (false, Some(o)) => format!("Ack (offset {o})"),
                _ => "Ack".into(),
            },
            ProduceOutcome::NotForwarded => "Connection reset: will retry".into(),
            ProduceOutcome::Pending => "No answer".into(),
        };
        let what = if step == 1 {
            format!("Send {MESSAGE}")
        } else {
            format!("Retry {MESSAGE}")
        };
        table.row([step.to_string(), what, sequence, check, action, output]);
    }
    step += 1;
    table.row([
        step.to_string(),
        "Flush producer".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        match &result {
            Ok(meta) => format!(
                "All messages confirmed ({MESSAGE} at offset {})",
                meta.offset
            ),
            Err(e) => format!("Failed: {e}"),
        },
    ]);
    println!("{}\n", table.render());
    println!("Partition 0 of {topic} stores:");
    for r in &stored {
        println!(
            "  offset {}: {}",
            r.offset,
            r.value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        );
    }
    let copies = stored
        .iter()
        .filter(|r| r.value.as_deref() == Some(MESSAGE.as_bytes()))
        .count();
    match copies {
        1 => println!("\n{MESSAGE} is stored once (1 copy): the retry was recognised as a duplicate and ignored."),
        n => println!(
            "\n{MESSAGE} is stored {n} times ({n} copies){}",
            if idempotent { "." } else { ": without idempotence the broker cannot tell a retry from a new message." }
        ),
    }
    if let Some(running) = own {
        running.shutdown().await;
    }
    result
        .map(|_| ())
        .map_err(|e| anyhow!("the demo's message was not delivered: {e}"))
}

enum Demo {
    Transactions,
    Keys,
}

async fn run_demo(which: &Demo, bootstrap: &str) -> Result<()> {
    match which {
        Demo::Transactions => crate::demo_transactions::run(bootstrap).await,
        Demo::Keys => crate::demo_keys::run(bootstrap).await,
    }
}

/// A demo on the given broker, or on one of its own in a temporary directory.
async fn on_broker(bootstrap: Option<String>, which: Demo) -> Result<()> {
    if let Some(addr) = bootstrap {
        return run_demo(&which, &addr).await;
    }
    let dir = tempfile::Builder::new().prefix("tally-demo-").tempdir()?;
    let mut config = BrokerConfig::new();
    config.set("log.dirs", &dir.path().to_string_lossy())?;
    config.set("listeners", "127.0.0.1:0")?;
    config.set("http.listeners", "")?;
    let running = Broker::start(config).await?;
    let result = run_demo(&which, &running.local_addr.to_string()).await;
    running.shutdown().await;
    result
}
