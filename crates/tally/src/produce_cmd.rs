use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tally_client::{ClientConfig, Compression, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

#[derive(Args)]
#[command(after_help = "Examples:
  echo hello | tally produce orders
  tally produce orders --file events.txt --key-separator :
  printf 'user-1:signed up\\n' | tally produce orders --key-separator : --header source=cli
  printf 'order-17:paid\\n' | tally produce payments --key-separator : --idempotency-key-header order-id
  seq 10 | tally produce orders --transactional-id loader-1
  seq 10 | tally produce orders --transactional-id loader-1 --abort")]
pub struct ProduceArgs {
    topic: String,
    /// Read messages from this file (one per line) instead of standard input.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Split each line at the first occurrence into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Send the part of each line before --key-separator as header NAME instead of as the
    /// record key: the idempotency key of a topic with idempotency.key=header:NAME. (For a
    /// topic with idempotency.key=key, --key-separator alone does it.)
    #[arg(long, value_name = "NAME", requires = "key_separator")]
    idempotency_key_header: Option<String>,
    /// Header added to every message (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Send every message to this partition.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Turn idempotence off (retries may then store duplicates).
    #[arg(long, conflicts_with = "transactional_id")]
    no_idempotence: bool,
    /// Write all lines of this run in one transaction with this id: read_committed consumers
    /// see all of them or none.
    #[arg(long)]
    transactional_id: Option<String>,
    /// With --transactional-id: abort the transaction at the end instead of committing it
    /// (the records stay in the log, invisible to read_committed consumers).
    #[arg(long, requires = "transactional_id")]
    abort: bool,
}

pub fn parse_compression(name: &str) -> Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("unknown compression '{other}' (none, gzip, snappy, lz4, zstd)"),
    })
}

pub async fn run(args: ProduceArgs, client: ClientConfig) -> Result<()> {
    let headers: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--header takes KEY=VALUE, not '{h}'"))
        })
        .collect::<Result<_>>()?;
    let mut config = ProducerConfig::new(String::new());
    config.client = client;
    config.enable_idempotence = !args.no_idempotence;
    config.compression = parse_compression(&args.compression)?;
    config.transactional_id = args.transactional_id.clone();
    let (reader, progress): (Box<dyn AsyncRead + Unpin + Send>, Option<ProgressBar>) =
        match &args.file {
            Some(path) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                let bar = ProgressBar::new(size);
                bar.set_style(
                    ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
                        .expect("template"),
                );
                (Box::new(file), Some(bar))
            }
            None => (Box::new(tokio::io::stdin()), None),
        };
    let producer = Producer::new(config).await?;
    if args.transactional_id.is_some() {
        producer.begin_transaction()?;
    }
    let mut lines = BufReader::new(reader).lines();
    let mut deliveries = Vec::new();
    while let Some(line) = lines.next_line().await.context("cannot read input")? {
        if let Some(bar) = &progress {
            bar.inc(line.len() as u64 + 1);
        }
        let line = line.strip_suffix('\r').unwrap_or(&line).to_string();
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let mut record = ProducerRecord::new(args.topic.clone(), value);
        match (key, &args.idempotency_key_header) {
            (Some(k), Some(name)) => record = record.with_header(name.clone(), k),
            (Some(k), None) => record = record.with_key(k),
            (None, _) => {}
        }
        if let Some(p) = args.partition {
            record = record.with_partition(p);
        }
        for (k, v) in &headers {
            record = record.with_header(k.clone(), v.clone());
        }
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await;
    let ended = match (&args.transactional_id, args.abort) {
        (None, _) => None,
        (Some(_), false) => Some(producer.commit_transaction().await.map(|_| "committed")),
        (Some(_), true) => Some(producer.abort_transaction().await.map(|_| "aborted")),
    };
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let mut by_partition: BTreeMap<i32, (i64, i64, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let total = deliveries.len();
    for d in deliveries {
        match d.await {
            Ok(meta) => {
                let e = by_partition
                    .entry(meta.partition)
                    .or_insert((i64::MAX, i64::MIN, 0));
                e.0 = e.0.min(meta.offset);
                e.1 = e.1.max(meta.offset);
                e.2 += 1;
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    producer.close().await;
    println!(
        "Produced {} of {total} messages to {}",
        total - failures.len(),
        args.topic
    );
    match ended {
        Some(Ok(how)) => println!("Transaction {how}"),
        Some(Err(e)) => bail!("the transaction was not committed: {e}"),
        None => {}
    }
    for (partition, (low, high, n)) in by_partition {
        if low == high {
            println!("  partition {partition}: offset {low}");
        } else {
            println!("  partition {partition}: offsets {low}-{high} ({n} messages)");
        }
    }
    if let Some(first) = failures.first() {
        bail!(
            "{} messages were not delivered; first error: {first}",
            failures.len()
        );
    }
    Ok(())
}
