//! `tally dev-cluster`: a local cluster for development, in the foreground. It starts
//! `tally serve` once per node, each with its own data directory and log file, wired as one
//! cluster (`--node-id`, `--voters`), and stops them all on Ctrl-C or SIGTERM, or as soon as
//! one of them exits.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser)]
pub struct DevClusterArgs {
    /// Nodes to run (1 to 9).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Node 1's Kafka port; node N listens on BASE_PORT + N - 1 and its Raft listener on
    /// BASE_PORT + 100 + N - 1, all on 127.0.0.1.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Parent of the nodes' data directories (node-1, node-2, ...) and log files.
    #[arg(long, default_value = "./tally-dev-cluster", value_name = "DIR")]
    data_dir: PathBuf,
}

pub fn run(args: DevClusterArgs) -> Result<()> {
    if !(1..=9).contains(&args.nodes) {
        bail!("--nodes must be between 1 and 9, not {}", args.nodes);
    }
    if u32::from(args.base_port) + 100 + u32::from(args.nodes) > 65_535 || args.base_port == 0 {
        bail!(
            "--base-port {} leaves no room for {} nodes",
            args.base_port,
            args.nodes
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the tally executable")?;
    let kafka_port = |n: u16| args.base_port + n - 1;
    let voters = (1..=args.nodes)
        .map(|n| format!("{n}@127.0.0.1:{}", args.base_port + 100 + n - 1))
        .collect::<Vec<_>>()
        .join(",");
    let replication_factor = args.nodes.min(3);
    let mut children: Vec<(u16, Child)> = Vec::new();
    for n in 1..=args.nodes {
        let log_path = args.data_dir.join(format!("node-{n}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node-{n}")))
            .args(["--listen", &format!("127.0.0.1:{}", kafka_port(n))])
            .args([
                "--http",
                "off",
                "--node-id",
                &n.to_string(),
                "--voters",
                &voters,
            ])
            .args([
                "--set",
                &format!("default.replication.factor={replication_factor}"),
                "--set",
                &format!("offsets.topic.replication.factor={replication_factor}"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {n}"))?;
        println!(
            "node {n}: kafka 127.0.0.1:{}, raft 127.0.0.1:{}, log {}",
            kafka_port(n),
            args.base_port + 100 + n - 1,
            log_path.display()
        );
        children.push((n, child));
    }
    println!(
        "bootstrap: {} (topics default to replication factor {replication_factor}); Ctrl-C stops every node",
        (1..=args.nodes)
            .map(|n| format!("127.0.0.1:{}", kafka_port(n)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let stopped_by = wait(&mut children)?;
    stop_all(&mut children);
    match stopped_by {
        Some(n) => bail!("node {n} exited; every node is stopped (see its log)"),
        None => Ok(()),
    }
}

/// Waits for SIGINT or SIGTERM (`None`) or for a node to exit (its number).
fn wait(children: &mut [(u16, Child)]) -> Result<Option<u16>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(None),
                _ = int.recv() => return Ok(None),
                _ = tick.tick() => {
                    for (n, child) in children.iter_mut() {
                        if child.try_wait()?.is_some() {
                            return Ok(Some(*n));
                        }
                    }
                }
            }
        }
    })
}

/// SIGTERM to every node still running, then SIGKILL to any still running after 30 s.
fn stop_all(children: &mut [(u16, Child)]) {
    for (_, child) in children.iter_mut() {
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (n, child) in children.iter_mut() {
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("node {n} did not stop within 30 s: killing it");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
