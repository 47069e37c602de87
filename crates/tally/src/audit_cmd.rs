use anyhow::{bail, Result};
use clap::Args;
use tally_client::{audit_topic, ClientConfig};

use crate::table::Table;

#[derive(Args)]
#[command(
    after_help = "Reads every batch of the topic (only fetches: works against any Kafka-compatible
broker) and reports, per producer and partition, sequence gaps within an epoch and sequence
ranges stored more than once. Exits with status 1 if any range is stored twice.

Example:
  tally audit orders"
)]
pub struct AuditArgs {
    topic: String,
}

pub async fn run(args: AuditArgs, client: ClientConfig) -> Result<()> {
    let report = audit_topic(client, &args.topic).await?;
    println!(
        "Audit of {}: {} partitions, {} batches ({} without a producer id, not auditable)",
        report.topic, report.partitions, report.batches, report.batches_without_producer
    );
    if !report.producers.is_empty() {
        let mut table = Table::new([
            "PARTITION",
            "PRODUCER ID",
            "EPOCHS",
            "BATCHES",
            "RECORDS",
            "GAPS",
            "STORED TWICE",
        ]);
        for p in &report.producers {
            table.row([
                p.partition.to_string(),
                p.producer_id.to_string(),
                p.epochs
                    .iter()
                    .map(i16::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                p.batches.to_string(),
                p.records.to_string(),
                p.gaps.len().to_string(),
                p.duplicates.len().to_string(),
            ]);
        }
        println!("{}", table.render());
    }
    for p in &report.producers {
        for g in &p.gaps {
            println!(
                "gap: partition {} producer {} epoch {}: sequence {} expected, {} found at offset {}",
                p.partition, p.producer_id, g.epoch, g.expected, g.found, g.at_offset
            );
        }
        for d in &p.duplicates {
            println!(
                "STORED TWICE: partition {} producer {} epoch {}: sequences {}-{} at offset {} and again at offset {}",
                p.partition, p.producer_id, d.epoch, d.first_sequence, d.last_sequence, d.first_offset, d.again_at_offset
            );
        }
    }
    let duplicates = report.duplicate_ranges();
    if duplicates > 0 {
        bail!(
            "{duplicates} sequence ranges of {} are stored twice",
            report.topic
        );
    }
    println!("No sequence range is stored twice.");
    Ok(())
}
