use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use tally_client::{ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Offset};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// The value only.
    Value,
    /// Key, the key separator, value.
    Kv,
    /// One JSON object per message: topic, partition, offset, timestamp, key, value, headers.
    Json,
}

#[derive(Args)]
#[command(after_help = "Examples:
  tally consume orders --from-beginning
  tally consume orders --partition 2 --offset 100 -n 10
  tally consume orders --from-beginning --format json")]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the first offset (default: only new messages).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset (of every partition read).
    #[arg(long, conflicts_with = "from_beginning")]
    offset: Option<i64>,
    /// Read only this partition.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Stop after this many messages.
    #[arg(short = 'n', long = "max-messages")]
    max_messages: Option<usize>,
    #[arg(long, value_enum, default_value = "value")]
    format: Format,
    /// Between key and value in the kv format.
    #[arg(long, default_value = "\t")]
    key_separator: String,
    /// Stop when no message arrives for this long.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
}

fn text(bytes: &Option<bytes::Bytes>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn render(record: &ConsumerRecord, format: Format, separator: &str) -> String {
    match format {
        Format::Value => text(&record.value).unwrap_or_default(),
        Format::Kv => format!(
            "{}{separator}{}",
            text(&record.key).unwrap_or_default(),
            text(&record.value).unwrap_or_default()
        ),
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = record
                .headers
                .iter()
                .map(|h| {
                    (
                        h.key.clone(),
                        text(&h.value).map_or(serde_json::Value::Null, serde_json::Value::String),
                    )
                })
                .collect();
            serde_json::json!({
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp_ms,
                "key": text(&record.key),
                "value": text(&record.value),
                "headers": headers,
            })
            .to_string()
        }
    }
}

pub async fn run(args: ConsumeArgs, client: ClientConfig) -> Result<()> {
    let mut config = ConsumerConfig::new(String::new());
    config.client = client;
    let mut consumer = Consumer::new(config).await?;
    let start = match (args.offset, args.from_beginning) {
        (Some(o), _) => Offset::At(o),
        (None, true) => Offset::Earliest,
        (None, false) => Offset::Latest,
    };
    match args.partition {
        Some(p) => consumer.assign(&[(args.topic.clone(), p, start)]).await?,
        None => consumer.assign_topic(&args.topic, start).await?,
    }
    if args.max_messages == Some(0) {
        return Ok(());
    }
    let mut printed = 0usize;
    let mut idle = Duration::ZERO;
    let stdout = std::io::stdout();
    loop {
        let poll = consumer.poll(Duration::from_millis(200));
        let records = tokio::select! {
            r = poll => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        if records.is_empty() {
            idle += Duration::from_millis(200);
            if args
                .idle_timeout_ms
                .is_some_and(|t| idle >= Duration::from_millis(t))
            {
                return Ok(());
            }
            continue;
        }
        idle = Duration::ZERO;
        let mut out = stdout.lock();
        for record in &records {
            if writeln!(out, "{}", render(record, args.format, &args.key_separator)).is_err() {
                // Downstream closed (e.g. `| head`): stop quietly.
                return Ok(());
            }
            printed += 1;
            if args.max_messages.is_some_and(|n| printed >= n) {
                let _ = out.flush();
                return Ok(());
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
    }
}
