//! `tally serve`: run a broker until SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tally_broker::{Broker, BrokerConfig};

#[derive(Parser)]
pub struct ServeArgs {
    /// Data directory (log.dirs).
    #[arg(long, env = "TALLY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (listeners), HOST:PORT.
    #[arg(long, env = "TALLY_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address given to clients in Metadata (advertised.listeners); defaults to --listen.
    #[arg(long, env = "TALLY_ADVERTISE", value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Address of the HTTP listener for /metrics, /healthz and /readyz (http.listeners),
    /// HOST:PORT, or "off"; default 127.0.0.1:9644.
    #[arg(long, env = "TALLY_HTTP", value_name = "HOST:PORT")]
    http: Option<String>,
    /// This node's id (node.id); in a cluster, its entry in --voters.
    #[arg(long, env = "TALLY_NODE_ID", value_name = "N")]
    node_id: Option<u32>,
    /// Cluster mode: the controller group's voters (controller.quorum.voters), e.g.
    /// 1@127.0.0.1:9193,2@127.0.0.1:9194,3@127.0.0.1:9195; this node's entry is the address
    /// its Raft listener binds.
    #[arg(long, env = "TALLY_VOTERS", value_name = "ID@HOST:PORT,...")]
    voters: Option<String>,
    /// Cluster mode, a node that is not among the voters: where it listens for Raft
    /// (raft.listener). It joins the cluster as a broker (`tally cluster add-node`).
    #[arg(long, value_name = "HOST:PORT")]
    raft_listen: Option<String>,
    /// TOML file of config keys with Kafka's names.
    #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any config key, e.g. --set log.segment.bytes=1048576 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ServeArgs {
    /// What `tally cluster add-node` needs: a node id, the cluster's voters and a Raft address
    /// of its own.
    pub fn check_joins_as_broker(&self) -> Result<()> {
        if self.node_id.is_none() || self.voters.is_none() || self.raft_listen.is_none() {
            anyhow::bail!(
                "a node that joins a cluster needs --node-id, --voters (the cluster's) and \
                 --raft-listen (its own Raft address)"
            );
        }
        Ok(())
    }
}

fn broker_config(args: &ServeArgs) -> Result<BrokerConfig> {
    let mut config = BrokerConfig::new();
    if let Some(path) = &args.config {
        config.merge_toml_file(path)?;
    }
    config.merge_env(std::env::vars())?;
    for pair in &args.set {
        config.set_pair(pair)?;
    }
    if let Some(dir) = &args.data_dir {
        config.set("log.dirs", &dir.to_string_lossy())?;
    }
    if let Some(listen) = &args.listen {
        config.set("listeners", listen)?;
    }
    if let Some(http) = &args.http {
        let value = if http == "off" { "" } else { http.as_str() };
        config.set("http.listeners", value)?;
    }
    if let Some(node_id) = args.node_id {
        config.set("node.id", &node_id.to_string())?;
    }
    if let Some(voters) = &args.voters {
        config.set("controller.quorum.voters", voters)?;
    }
    if let Some(raft) = &args.raft_listen {
        config.set("raft.listener", raft)?;
    }
    if let Some(advertise) = &args.advertise {
        config.set("advertised.listeners", advertise)?;
    }
    config.validate()?;
    Ok(config)
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = broker_config(&args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = Broker::start(config).await?;
        wait_for_signal().await?;
        running.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
