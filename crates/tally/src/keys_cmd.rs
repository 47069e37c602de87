//! `tally keys TOPIC`: each partition's idempotency-key index (topic config `idempotency.key`):
//! keys remembered, records dropped as duplicates and keys evicted at the bound.

use anyhow::{bail, Result};
use clap::Args;
use tally_client::{Admin, ClientConfig};

use crate::table::Table;

#[derive(Args)]
#[command(
    after_help = "Example:\n  tally topic create orders --config idempotency.key=key\n  tally keys orders"
)]
pub struct KeysArgs {
    topic: String,
}

pub async fn run(args: KeysArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    let configs = admin.describe_topic_configs(&args.topic).await?;
    let value = |name: &str| {
        configs
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or("-".to_string(), |(_, v, _)| v.clone())
    };
    let source = value("idempotency.key");
    if source == "none" || source == "-" {
        bail!(
            "topic {} has no idempotency keys (idempotency.key={source}); create it with --config idempotency.key=key or header:NAME",
            args.topic
        );
    }
    println!(
        "{}: idempotency.key={source}, idempotency.window.ms={}, idempotency.window.max.keys={}",
        args.topic,
        value("idempotency.window.ms"),
        value("idempotency.window.max.keys")
    );
    let mut table = Table::new(["PARTITION", "KEYS", "DUPLICATES DROPPED", "KEYS EVICTED"]);
    for p in admin.describe_idempotency_keys(&args.topic).await? {
        table.row([
            p.partition.to_string(),
            p.keys.to_string(),
            p.dropped_records.to_string(),
            p.evicted_keys.to_string(),
        ]);
    }
    println!("{}", table.render());
    println!("(dropped and evicted count since the broker started)");
    Ok(())
}
