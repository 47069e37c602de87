use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};

#[derive(Args)]
#[command(
    after_help = "A Kafka-frame-aware TCP proxy that injects seeded faults between clients and a broker.
Point clients at the proxy: start the broker with --advertise set to the proxy's address, or
use --rewrite-metadata (single broker).

Examples:
  tally chaos-proxy --upstream 127.0.0.1:9092 --listen 127.0.0.1:19092 --drop-acks 0.05 --reset 0.01
  tally chaos-proxy --upstream 127.0.0.1:9092 --listen 127.0.0.1:19092 --rewrite-metadata --delay-ms 5:50 --duration-secs 60"
)]
pub struct ChaosArgs {
    /// The broker, HOST:PORT.
    #[arg(long)]
    upstream: String,
    /// Where clients connect.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Seed of the fault choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability of losing a Produce acknowledgement after the broker wrote the batch (the
    /// client's connection is then closed).
    #[arg(long, default_value_t = 0.0)]
    drop_acks: f64,
    /// Probability, per request, of resetting the connection instead of forwarding it.
    #[arg(long, default_value_t = 0.0)]
    reset: f64,
    /// Delay added to each answer, MIN:MAX milliseconds.
    #[arg(long)]
    delay_ms: Option<String>,
    /// Probability, per connection, of accepting it and never forwarding anything.
    #[arg(long, default_value_t = 0.0)]
    stall: f64,
    /// Rewrite broker addresses in Metadata answers to the proxy's.
    #[arg(long)]
    rewrite_metadata: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration_secs: Option<u64>,
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {addr}"))
}

pub async fn run(args: ChaosArgs) -> Result<()> {
    for (name, p) in [
        ("--drop-acks", args.drop_acks),
        ("--reset", args.reset),
        ("--stall", args.stall),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bail!("{name} is a probability between 0 and 1, not {p}");
        }
    }
    let mut config = ProxyConfig::new(resolve(&args.upstream)?);
    config.listen = resolve(&args.listen)?;
    config.seed = args.seed;
    config.drop_produce_responses = if args.drop_acks > 0.0 {
        DropPolicy::Probability(args.drop_acks)
    } else {
        DropPolicy::Never
    };
    config.reset_probability = args.reset;
    config.stall_probability = args.stall;
    config.rewrite_metadata = args.rewrite_metadata;
    if let Some(range) = &args.delay_ms {
        let (low, high) = range
            .split_once(':')
            .with_context(|| format!("--delay-ms takes MIN:MAX, not '{range}'"))?;
        config.delay_ms = (
            low.parse().context("--delay-ms MIN")?,
            high.parse().context("--delay-ms MAX")?,
        );
    }
    let proxy = FaultProxy::start(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "chaos proxy listening on {}, forwarding to {} (seed {})",
        proxy.local_addr(),
        args.upstream,
        args.seed
    );
    let stop = async {
        match args.duration_secs {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = report.tick() => eprintln!("faults so far: {:?}", proxy.counters()),
        }
    }
    println!("{:?}", proxy.counters());
    Ok(())
}
