//! `tally cluster status`: the nodes, who leads the controller's group, and for every
//! partition its leader, epoch, high watermark, replicas, ISR and how far each replica lags
//! (Metadata, then DescribeQuorum asked of each group's leader).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tally_client::{Admin, ClientConfig, QuorumDescription, METADATA_TOPIC};

use crate::table::Table;

#[derive(Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Run a node that joins a running cluster as a broker (not a controller voter), in the
    /// foreground: the controller's leader sends it the metadata, and partitions come to it
    /// by `tally partition reassign` or new topics. Takes `tally serve`'s options.
    #[command(after_help = "Example:
  tally cluster add-node --node-id 4 --data-dir n4 --listen 127.0.0.1:9095 \\
      --raft-listen 127.0.0.1:9195 --voters 1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194")]
    AddNode(crate::serve::ServeArgs),
    /// Nodes, the controller's leader, and each partition's leader, epoch, high watermark,
    /// replicas, in-sync replicas and each replica's lag in records.
    #[command(after_help = "Example:\n  tally --bootstrap 127.0.0.1:9092 cluster status")]
    Status,
}

impl ClusterArgs {
    /// `add-node` runs a broker (with its own runtime); everything else is a client command.
    pub fn take_add_node(&mut self) -> Option<crate::serve::ServeArgs> {
        if !matches!(self.command, ClusterCommand::AddNode(_)) {
            return None;
        }
        match std::mem::replace(&mut self.command, ClusterCommand::Status) {
            ClusterCommand::AddNode(args) => Some(args),
            _ => None,
        }
    }
}

/// `tally cluster add-node`: `tally serve` for a node that joins as a broker.
pub fn add_node(args: crate::serve::ServeArgs) -> Result<()> {
    args.check_joins_as_broker()?;
    crate::serve::run(args)
}

pub async fn run(args: ClusterArgs, client: ClientConfig) -> Result<()> {
    match args.command {
        ClusterCommand::Status => status(client).await,
        ClusterCommand::AddNode(_) => unreachable!("add-node runs its own runtime"),
    }
}

async fn status(client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    let topics = admin.list_topics().await?;
    let mut wanted = vec![(METADATA_TOPIC.to_string(), 0)];
    for t in &topics {
        wanted.extend(t.partitions.iter().map(|p| (t.name.clone(), p.partition)));
    }
    let quorums = admin
        .describe_quorum(&wanted)
        .await
        .context("describing the Raft groups (DescribeQuorum)")?;
    let controller = quorums.iter().find(|q| q.topic == METADATA_TOPIC);

    let mut nodes = Table::new(["NODE", "ADDRESS", "CONTROLLER"]);
    for (id, address) in admin.cluster().brokers() {
        let role = match controller {
            Some(c) if c.leader_id == id => format!("leader (epoch {})", c.leader_epoch),
            Some(c) if c.voters.iter().any(|v| v.node_id == id) => "voter".to_string(),
            Some(c) if c.observers.iter().any(|v| v.node_id == id) => "learner".to_string(),
            _ => "-".to_string(),
        };
        nodes.row([id.to_string(), address, role]);
    }
    println!("{}", nodes.render());
    println!();

    let mut partitions = Table::new([
        "TOPIC",
        "PARTITION",
        "LEADER",
        "EPOCH",
        "HIGH WATERMARK",
        "REPLICAS",
        "ISR",
        "LAG",
    ]);
    for t in &topics {
        for p in &t.partitions {
            let quorum = quorums
                .iter()
                .find(|q| q.topic == t.name && q.partition == p.partition);
            partitions.row([
                t.name.clone(),
                p.partition.to_string(),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                quorum.map_or("-".to_string(), |q| q.high_watermark.to_string()),
                join(&p.replicas),
                join(&p.isr),
                quorum.map_or("-".to_string(), lags),
            ]);
        }
    }
    println!("{}", partitions.render());
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Each voter's lag in records, as `node:lag` (`?` when its leader does not know it yet).
fn lags(q: &QuorumDescription) -> String {
    q.voters
        .iter()
        .map(|v| {
            let lag = q.lag(v).map_or("?".to_string(), |l| l.to_string());
            format!("{}:{lag}", v.node_id)
        })
        .collect::<Vec<_>>()
        .join(" ")
}
