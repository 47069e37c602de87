//! `tally`: one command line for Tally. `tally serve` runs a broker with embedded defaults
//! (data in ./tally-data, listening on 127.0.0.1:9092); the other commands are clients of a
//! running broker (`--bootstrap`, default 127.0.0.1:9092).

mod acl_cmd;
mod audit_cmd;
mod bench_cmd;
mod chaos_cmd;
mod cluster_cmd;
mod consume_cmd;
mod demo;
mod demo_keys;
mod demo_transactions;
mod dev_cluster_cmd;
mod group_cmd;
mod keys_cmd;
mod partition_cmd;
mod produce_cmd;
mod producers_cmd;
mod serve;
mod table;
mod top_cmd;
mod topic_cmd;
mod transactions_cmd;
mod user_cmd;

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the broker and the client allocate and free across
/// tokio worker threads, where glibc's arenas contend on a lock (measured in BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tally_client::ClientConfig;

const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Tally: a Kafka-compatible event log built around exactly-once writes"
)]
struct Cli {
    /// Broker to connect to, HOST:PORT (client commands; default 127.0.0.1:9092).
    #[arg(long, global = true, env = "TALLY_BOOTSTRAP", value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(subcommand)]
    command: Command,
}

/// How client commands reach a secured listener, with librdkafka's names.
#[derive(clap::Args)]
struct SecurityArgs {
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (librdkafka's security.protocol).
    #[arg(
        long,
        global = true,
        env = "TALLY_SECURITY_PROTOCOL",
        default_value = "PLAINTEXT"
    )]
    security_protocol: String,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (sasl.mechanism).
    #[arg(
        long,
        global = true,
        env = "TALLY_SASL_MECHANISM",
        default_value = "SCRAM-SHA-512"
    )]
    sasl_mechanism: String,
    #[arg(long, global = true, env = "TALLY_SASL_USERNAME")]
    sasl_username: Option<String>,
    /// Prefer TALLY_SASL_PASSWORD or --sasl-password-file: an argument shows in `ps`.
    #[arg(
        long,
        global = true,
        env = "TALLY_SASL_PASSWORD",
        hide_env_values = true
    )]
    sasl_password: Option<String>,
    /// A file whose first line is the SASL password.
    #[arg(
        long,
        global = true,
        env = "TALLY_SASL_PASSWORD_FILE",
        value_name = "FILE"
    )]
    sasl_password_file: Option<std::path::PathBuf>,
    /// PEM file of the authorities to trust on SSL and SASL_SSL (ssl.ca.location).
    #[arg(
        long,
        global = true,
        env = "TALLY_SSL_CA_LOCATION",
        value_name = "FILE"
    )]
    ssl_ca_location: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), for brokers with ssl.client.auth (ssl.certificate.location).
    #[arg(
        long,
        global = true,
        env = "TALLY_SSL_CERTIFICATE_LOCATION",
        value_name = "FILE",
        requires = "ssl_key_location"
    )]
    ssl_certificate_location: Option<std::path::PathBuf>,
    /// Its private key (PEM) (ssl.key.location).
    #[arg(
        long,
        global = true,
        env = "TALLY_SSL_KEY_LOCATION",
        value_name = "FILE"
    )]
    ssl_key_location: Option<std::path::PathBuf>,
}

impl SecurityArgs {
    fn apply(&self, client: &mut ClientConfig) -> Result<()> {
        use tally_client::{SaslConfig, SecurityProtocol};
        let protocol = SecurityProtocol::parse(&self.security_protocol)?;
        let sasl = match (protocol.uses_sasl(), &self.sasl_username) {
            (false, _) => None,
            (true, None) => anyhow::bail!(
                "{} needs --sasl-username (and TALLY_SASL_PASSWORD or --sasl-password-file)",
                self.security_protocol
            ),
            (true, Some(user)) => {
                let password = match (&self.sasl_password, &self.sasl_password_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(file)) => std::fs::read_to_string(file)
                        .with_context(|| format!("--sasl-password-file {}", file.display()))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    (None, None) => anyhow::bail!(
                        "{} needs a password: TALLY_SASL_PASSWORD, --sasl-password-file or --sasl-password",
                        self.security_protocol
                    ),
                };
                Some(SaslConfig::new(&self.sasl_mechanism, user, &password)?)
            }
        };
        let certificate = self
            .ssl_certificate_location
            .as_deref()
            .zip(self.ssl_key_location.as_deref());
        client.set_security(protocol, sasl, self.ssl_ca_location.as_deref(), certificate)?;
        Ok(())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    #[command(after_help = "Examples:
  tally serve
  tally serve --data-dir /var/lib/tally --listen 0.0.0.0:9092 --advertise broker1:9092
  tally serve --config tally.toml --set log.retention.hours=24

Config keys use Kafka's names (log.dirs, listeners, advertised.listeners, num.partitions,
log.segment.bytes, log.retention.ms, message.max.bytes, producer.id.expiration.ms, ...).
Later sources win: defaults, --config FILE, TALLY_* environment variables
(TALLY_LOG_RETENTION_MS=...), --set KEY=VALUE, then --data-dir/--listen/--advertise.")]
    Serve(serve::ServeArgs),
    /// Run a local cluster of several brokers in the foreground (Ctrl-C stops them all).
    #[command(after_help = "Examples:
  tally dev-cluster
  tally dev-cluster --nodes 3 --base-port 9092 --data-dir ./tally-dev-cluster")]
    DevCluster(dev_cluster_cmd::DevClusterArgs),
    /// Create, delete, list and describe topics.
    Topic(topic_cmd::TopicArgs),
    /// A cluster's nodes, leaders and replica lag; add a node.
    Cluster(cluster_cmd::ClusterArgs),
    /// Move a partition's replicas between a cluster's nodes.
    Partition(partition_cmd::PartitionArgs),
    /// Write messages, one per line, from standard input or a file.
    Produce(produce_cmd::ProduceArgs),
    /// Read messages.
    Consume(consume_cmd::ConsumeArgs),
    /// List, describe, delete consumer groups and reset their offsets.
    Group(group_cmd::GroupArgs),
    /// Show each partition's producer table: producer id, epoch, last sequence and offset.
    Producers(producers_cmd::ProducersArgs),
    /// Show each partition's idempotency-key index: keys remembered, duplicates dropped.
    Keys(keys_cmd::KeysArgs),
    /// Add, remove and list ACLs (with authorizer.class.name set on the broker).
    Acl(acl_cmd::AclArgs),
    /// Create, delete and list SCRAM users (SASL).
    User(user_cmd::UserArgs),
    /// List and describe transactions, and abort a hanging one.
    Transactions(transactions_cmd::TransactionsArgs),
    /// Report sequence gaps and ranges stored twice in a topic (exit 1 if any range is).
    Audit(audit_cmd::AuditArgs),
    /// Watch the broker live: partitions, producers and the retries absorbed, groups and lag.
    Top(top_cmd::TopArgs),
    /// Run a fault-injecting proxy in front of a broker.
    ChaosProxy(chaos_cmd::ChaosArgs),
    /// Run a demonstration.
    Demo(demo::DemoArgs),
    /// Measure throughput and latency: produce, consume or end-to-end.
    #[command(after_help = "Examples:
  tally bench produce --count 1000000 --message-size 100 --partitions 8
  tally bench produce --message-size 1024 --duration-secs 30 --producers 4 --no-idempotence
  tally bench end-to-end --count 200000 --rate 50000
  tally bench consume --topic tally-bench --count 1000000 --json

Latency: send to acknowledgement (produce), send to receipt (end-to-end), as percentiles of
an HDR histogram. The same options work with the librdkafka bench:
  cargo run --release -p tally-rdkafka-bench -- produce --count 1000000")]
    Bench(tally_bench::BenchOptions),
}

/// mimalloc asks for transparent huge pages on its arenas; a node's many small, long-lived
/// allocations (each Raft group's buffers) then each pin a 2 MiB page: 2 MiB of RSS per idle
/// partition replica instead of 0.4 MiB, and no faster (BENCHMARKS.md, "Memory per idle
/// replica"). Pages touched before this call keep theirs; every later fault gets 4 KiB.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line, as for every other error: clap's first paragraph, joined; --help has
            // the details.
            let rendered = e.render().to_string();
            let first: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("tally: {} (see --help)", first.join(" "));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::DevCluster(args) => dev_cluster_cmd::run(args),
        Command::Cluster(mut args) => match args.take_add_node() {
            Some(serve_args) => cluster_cmd::add_node(serve_args),
            None => client_command(Command::Cluster(args), cli.bootstrap, &cli.security),
        },
        other => client_command(other, cli.bootstrap, &cli.security),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn client_command(
    command: Command,
    bootstrap: Option<String>,
    security: &SecurityArgs,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut client = ClientConfig::new(
        bootstrap
            .clone()
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string()),
    );
    client.client_id = "tally-cli".into();
    client.connect_timeout_ms = 5_000;
    if !security.security_protocol.eq_ignore_ascii_case("PLAINTEXT") {
        refuse_security(&command)?;
    }
    security.apply(&mut client)?;
    runtime.block_on(async move {
        match command {
            Command::Serve(_) | Command::DevCluster(_) => {
                unreachable!("serve and dev-cluster run their own runtime")
            }
            Command::Topic(args) => topic_cmd::run(args, client).await,
            Command::Produce(args) => produce_cmd::run(args, client).await,
            Command::Consume(args) => consume_cmd::run(args, client).await,
            Command::Producers(args) => producers_cmd::run(args, client).await,
            Command::Keys(args) => keys_cmd::run(args, client).await,
            Command::Cluster(args) => cluster_cmd::run(args, client).await,
            Command::Partition(args) => partition_cmd::run(args, client).await,
            Command::Transactions(args) => transactions_cmd::run(args, client).await,
            Command::User(args) => user_cmd::run(args, client).await,
            Command::Acl(args) => acl_cmd::run(args, client).await,
            Command::Group(args) => group_cmd::run(args, client).await,
            Command::Demo(args) => demo::run(args, bootstrap).await,
            Command::Bench(options) => bench_cmd::run(options, client).await,
            Command::Audit(args) => audit_cmd::run(args, client).await,
            Command::ChaosProxy(args) => chaos_cmd::run(args).await,
            Command::Top(args) => top_cmd::run(args).await,
        }
    })
}

/// The commands that do not speak to a Kafka listener with the security settings, refused
/// instead of ignoring them: the demos and the chaos proxy read and rewrite Kafka frames
/// between a client and a broker (they cannot inside TLS), and `tally top` reads the HTTP
/// listener.
fn refuse_security(command: &Command) -> Result<()> {
    let why = match command {
        Command::Demo(_) => {
            "the demos run against a PLAINTEXT listener (their fault proxy reads Kafka frames); \
             without --bootstrap a demo runs on a broker of its own"
        }
        Command::ChaosProxy(_) => {
            "the chaos proxy reads and rewrites Kafka frames, so it sits in front of a \
             PLAINTEXT listener"
        }
        Command::Top(_) => {
            "tally top reads the broker's HTTP listener (--http), which takes no Kafka \
             security settings"
        }
        _ => return Ok(()),
    };
    anyhow::bail!("--security-protocol: {why}")
}

/// The error and its causes on one line, skipping a cause its parent already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
