use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;

use tally_client::{
    ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    Offset, OffsetReset,
};

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
  tally consume orders --from-beginning --format json
  tally consume orders --group billing --from-beginning

With --group the partitions are shared with the group's other members, reading starts at the
group's committed offsets (--from-beginning applies only where there are none), and each
printed message is committed.")]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the first offset (default: only new messages).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset (of every partition read).
    #[arg(long, conflicts_with_all = ["from_beginning", "group"])]
    offset: Option<i64>,
    /// Read only this partition.
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Option<i32>,
    /// Read as a member of this consumer group, committing what is printed.
    #[arg(long, short = 'g')]
    group: Option<String>,
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
    /// read_committed (the default, as librdkafka's): only committed transactions' records,
    /// nothing past an open transaction; read_uncommitted: every record.
    #[arg(long, value_enum, default_value = "read-committed")]
    isolation: Isolation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Isolation {
    #[value(name = "read_committed", alias = "read-committed")]
    ReadCommitted,
    #[value(name = "read_uncommitted", alias = "read-uncommitted")]
    ReadUncommitted,
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

/// The assigned consumer, or a group member.
enum Source {
    Assigned(Box<Consumer>),
    Group(Box<GroupConsumer>),
}

impl Source {
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        Ok(match self {
            Source::Assigned(c) => c.poll(timeout).await?,
            Source::Group(g) => g.poll(timeout).await?,
        })
    }

    /// Commits the offsets after these printed records (group members only).
    async fn commit(&mut self, printed: &[ConsumerRecord]) -> Result<()> {
        let Source::Group(g) = self else {
            return Ok(());
        };
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in printed {
            next.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        let offsets: Vec<(String, i32, i64)> =
            next.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        g.commit_offsets(&offsets).await?;
        Ok(())
    }

    async fn close(self) -> Result<()> {
        if let Source::Group(g) = self {
            g.close().await?;
        }
        Ok(())
    }
}

pub async fn run(args: ConsumeArgs, client: ClientConfig) -> Result<()> {
    let mut config = ConsumerConfig::new(String::new());
    config.client = client;
    config.isolation_level = match args.isolation {
        Isolation::ReadCommitted => 1,
        Isolation::ReadUncommitted => 0,
    };
    let mut source = match &args.group {
        Some(group) => {
            config.auto_offset_reset = if args.from_beginning {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            };
            // Fail now, with a clear message, on an unknown topic.
            let consumer = Consumer::new(config.clone()).await?;
            consumer
                .cluster()
                .topic_or_fetch(&args.topic, false)
                .await?;
            let mut group_config = GroupConsumerConfig::new(String::new(), group.clone());
            group_config.consumer = config;
            group_config.enable_auto_commit = false;
            let mut member = GroupConsumer::new(group_config).await?;
            member.subscribe(&[args.topic.as_str()]);
            Source::Group(Box::new(member))
        }
        None => Source::Assigned(Box::new(assigned(&args, config).await?)),
    };
    let result = consume(&args, &mut source).await;
    let closed = source.close().await;
    result.and(closed)
}

async fn assigned(args: &ConsumeArgs, config: ConsumerConfig) -> Result<Consumer> {
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
    Ok(consumer)
}

async fn consume(args: &ConsumeArgs, source: &mut Source) -> Result<()> {
    if args.max_messages == Some(0) {
        return Ok(());
    }
    let mut printed = 0usize;
    let mut idle = Duration::ZERO;
    let stdout = std::io::stdout();
    loop {
        let poll = source.poll(Duration::from_millis(200));
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
        let mut shown = 0usize;
        let mut stop = false;
        {
            let mut out = stdout.lock();
            for record in &records {
                if writeln!(out, "{}", render(record, args.format, &args.key_separator)).is_err() {
                    // Downstream closed (e.g. `| head`): stop quietly.
                    stop = true;
                    break;
                }
                shown += 1;
                printed += 1;
                if args.max_messages.is_some_and(|n| printed >= n) {
                    stop = true;
                    break;
                }
            }
            if out.flush().is_err() {
                stop = true;
            }
        }
        // Only what was printed counts as consumed.
        source.commit(&records[..shown]).await?;
        if stop {
            return Ok(());
        }
    }
}
