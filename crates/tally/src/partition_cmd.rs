//! `tally partition reassign`: moves a partition's replicas to other nodes while it keeps
//! serving (AlterPartitionReassignments), then waits until its Raft group's voters are the new
//! replicas (DescribeQuorum).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tally_client::{Admin, ClientConfig};

#[derive(Args)]
pub struct PartitionArgs {
    #[command(subcommand)]
    command: PartitionCommand,
}

#[derive(Subcommand)]
enum PartitionCommand {
    /// Move a partition's replicas to the given nodes (preferred leader first) without
    /// stopping produce or consume, and wait until they are its voters.
    #[command(
        after_help = "Examples:\n  tally partition reassign orders 0 --replicas 2,3\n  tally partition reassign orders 0 --cancel"
    )]
    Reassign(ReassignArgs),
    /// List the reassignments in progress: replicas being added and removed.
    Reassignments,
}

#[derive(Args)]
struct ReassignArgs {
    topic: String,
    partition: i32,
    /// The new replicas' node ids, comma-separated, preferred leader first.
    #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
    replicas: Vec<i32>,
    /// Cancel the reassignment in progress: the partition's current voters stay its replicas.
    #[arg(long, conflicts_with = "replicas")]
    cancel: bool,
    /// Return once the reassignment is recorded, without waiting for the move.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the move.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

pub async fn run(args: PartitionArgs, client: ClientConfig) -> Result<()> {
    match args.command {
        PartitionCommand::Reassign(args) if args.cancel => {
            let admin = Admin::new(client).await?;
            admin
                .cancel_reassignment(&args.topic, args.partition)
                .await
                .with_context(|| format!("cancelling {}-{}", args.topic, args.partition))?;
            println!("{}-{}: reassignment cancelled", args.topic, args.partition);
            Ok(())
        }
        PartitionCommand::Reassign(args) => reassign(args, client).await,
        PartitionCommand::Reassignments => list(client).await,
    }
}

async fn list(client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    let ongoing = admin.list_reassignments().await?;
    if ongoing.is_empty() {
        println!("No reassignment in progress");
        return Ok(());
    }
    let join = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let mut table =
        crate::table::Table::new(["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
    for (topic, partition, replicas, adding, removing) in ongoing {
        table.row([
            topic,
            partition.to_string(),
            join(&replicas),
            join(&adding),
            join(&removing),
        ]);
    }
    println!("{}", table.render());
    Ok(())
}

async fn reassign(args: ReassignArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    // Retriable refusals (a group whose first leader is not reported yet, a controller
    // election) are tried again until the deadline.
    loop {
        match admin
            .reassign_partition(&args.topic, args.partition, &args.replicas)
            .await
        {
            Ok(()) => break,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reassigning {}-{}", args.topic, args.partition))
            }
        }
    }
    println!(
        "{}-{}: reassignment to {:?} recorded",
        args.topic, args.partition, args.replicas
    );
    if args.no_wait {
        return Ok(());
    }
    let target: BTreeSet<i32> = args.replicas.iter().copied().collect();
    let wanted = [(args.topic.clone(), args.partition)];
    loop {
        if let Ok(quorums) = admin.describe_quorum(&wanted).await {
            if let Some(q) = quorums.first() {
                let voters: BTreeSet<i32> = q.voters.iter().map(|v| v.node_id).collect();
                if voters == target {
                    println!(
                        "{}-{}: voters are now {:?}, leader {}",
                        args.topic, args.partition, voters, q.leader_id
                    );
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{}-{} did not move to {:?} in {} s (it may still: see `tally cluster status`)",
                args.topic,
                args.partition,
                args.replicas,
                args.timeout_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
