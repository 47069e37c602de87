use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tally_client::{Admin, ClientConfig, NewTopic};

use crate::table::Table;

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    #[command(
        after_help = "Examples:\n  tally topic create orders --partitions 6\n  tally topic create audit --config retention.ms=86400000"
    )]
    Create {
        topic: String,
        #[arg(long, short = 'p', default_value_t = -1, help = "Partitions (-1: the broker's num.partitions)")]
        partitions: i32,
        #[arg(long, default_value_t = -1, help = "Replication factor (-1: the broker's default)")]
        replication_factor: i16,
        #[arg(
            long = "config",
            value_name = "KEY=VALUE",
            help = "Topic config (repeatable)"
        )]
        configs: Vec<String>,
    },
    /// Delete a topic and its data.
    #[command(after_help = "Example:\n  tally topic delete orders")]
    Delete { topic: String },
    /// List topics.
    #[command(after_help = "Example:\n  tally topic list")]
    List,
    /// Show a topic's partitions, offsets and configs.
    #[command(after_help = "Example:\n  tally topic describe orders")]
    Describe { topic: String },
    /// Add partitions to a topic (kafka-topics.sh --alter --partitions).
    #[command(after_help = "Example:\n  tally topic alter orders --partitions 6")]
    Alter {
        topic: String,
        /// The topic's new partition count (larger than the current one).
        #[arg(long)]
        partitions: i32,
    },
}

#[derive(Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub command: TopicCommand,
}

pub async fn run(args: TopicArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut new = NewTopic::new(topic.clone(), partitions);
            new.replication_factor = replication_factor;
            for pair in configs {
                let Some((k, v)) = pair.split_once('=') else {
                    bail!("--config takes KEY=VALUE, not '{pair}'");
                };
                new.configs.push((k.to_string(), v.to_string()));
            }
            let id = admin.create_topic(new).await?;
            let info = admin.describe_topic(&topic).await?;
            println!(
                "Created topic {topic} with {} partitions (id {id})",
                info.partitions.len()
            );
        }
        TopicCommand::Delete { topic } => {
            admin.delete_topic(&topic).await?;
            println!("Deleted topic {topic}");
        }
        TopicCommand::List => {
            let mut table = Table::new(["TOPIC", "PARTITIONS", "ID"]);
            for t in admin.list_topics().await? {
                table.row([
                    t.name.clone(),
                    t.partitions.len().to_string(),
                    t.id.to_string(),
                ]);
            }
            println!("{}", table.render());
        }
        TopicCommand::Alter { topic, partitions } => {
            admin
                .create_partitions(&topic, partitions)
                .await
                .with_context(|| format!("adding partitions to {topic}"))?;
            println!("Topic {topic} now has {partitions} partitions");
        }
        TopicCommand::Describe { topic } => {
            let info = admin.describe_topic(&topic).await?;
            println!(
                "Topic {} (id {}), {} partitions",
                info.name,
                info.id,
                info.partitions.len()
            );
            let mut table = Table::new([
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "START OFFSET",
                "END OFFSET",
            ]);
            for p in &info.partitions {
                let start = admin.list_offset(&topic, p.partition, -2).await?;
                let end = admin.list_offset(&topic, p.partition, -1).await?;
                let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                table.row([
                    p.partition.to_string(),
                    p.leader.to_string(),
                    list(&p.replicas),
                    list(&p.isr),
                    start.to_string(),
                    end.to_string(),
                ]);
            }
            println!("{}", table.render());
            let overrides: Vec<String> = admin
                .describe_topic_configs(&topic)
                .await?
                .into_iter()
                .filter(|(_, _, default)| !default)
                .map(|(k, v, _)| format!("{k}={v}"))
                .collect();
            if !overrides.is_empty() {
                println!("Configs: {}", overrides.join(", "));
            }
        }
    }
    Ok(())
}
