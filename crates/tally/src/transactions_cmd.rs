//! `tally transactions`: what `kafka-transactions.sh` shows and does.

use anyhow::Result;
use clap::{Args, Subcommand};
use tally_client::{Admin, ClientConfig};

use crate::producers_cmd::format_timestamp;
use crate::table::Table;

#[derive(Args)]
#[command(after_help = "Examples:
  tally transactions list
  tally transactions describe loader-1
  tally transactions describe-producers orders
  tally transactions abort --topic orders --partition 0 --start-offset 42")]
pub struct TransactionsArgs {
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Subcommand)]
enum TxnCommand {
    /// Every transactional id with its producer id and state.
    List,
    /// One transactional id: state, producer, timeout, open transaction's partitions.
    Describe { transactional_id: String },
    /// The producers of a topic's partitions, with where their open transaction began.
    DescribeProducers {
        topic: String,
        #[arg(long, short = 'p')]
        partition: Vec<i32>,
    },
    /// Aborts a hanging transaction on one partition (one whose coordinator will not end it).
    Abort {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The first offset of the transaction (see describe-producers).
        #[arg(long)]
        start_offset: i64,
    },
}

pub async fn run(args: TransactionsArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    match args.command {
        TxnCommand::List => {
            let all = admin.list_transactions().await?;
            if all.is_empty() {
                println!("No transactional ids");
                return Ok(());
            }
            let mut table = Table::new(["TRANSACTIONAL ID", "PRODUCER ID", "STATE"]);
            for (id, pid, state) in all {
                table.row([id, pid.to_string(), state]);
            }
            println!("{}", table.render());
        }
        TxnCommand::Describe { transactional_id } => {
            let t = admin.describe_transaction(&transactional_id).await?;
            println!("Transactional id: {}", t.transactional_id);
            println!("State:            {}", t.state);
            println!(
                "Producer:         id {} epoch {}",
                t.producer_id, t.producer_epoch
            );
            println!("Timeout:          {} ms", t.timeout_ms);
            println!("Started:          {}", format_timestamp(t.start_time_ms));
            let parts: Vec<String> = t
                .partitions
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            println!(
                "Partitions:       {}",
                if parts.is_empty() {
                    "-".into()
                } else {
                    parts.join(", ")
                }
            );
        }
        TxnCommand::DescribeProducers { topic, partition } => {
            let partitions = (!partition.is_empty()).then_some(partition);
            let producers = admin.describe_producers(&topic, partitions).await?;
            let mut table = Table::new([
                "PARTITION",
                "PRODUCER ID",
                "EPOCH",
                "COORDINATOR EPOCH",
                "LAST SEQUENCE",
                "CURRENT TRANSACTION START OFFSET",
            ]);
            for p in producers {
                table.row([
                    p.partition.to_string(),
                    p.producer_id.to_string(),
                    p.producer_epoch.to_string(),
                    p.coordinator_epoch.to_string(),
                    p.last_sequence.to_string(),
                    if p.current_txn_start_offset < 0 {
                        "-".to_string()
                    } else {
                        p.current_txn_start_offset.to_string()
                    },
                ]);
            }
            println!("{}", table.render());
        }
        TxnCommand::Abort {
            topic,
            partition,
            start_offset,
        } => {
            let pid = admin
                .abort_hanging_transaction(&topic, partition, start_offset)
                .await?;
            println!("Aborted the transaction of producer {pid} starting at offset {start_offset} of {topic}-{partition}");
        }
    }
    Ok(())
}
