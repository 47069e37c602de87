use clap::{Args, ValueEnum};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Producers write; latency is send to acknowledgement.
    Produce,
    /// One consumer reads `--count` messages from the start of the topic (written first,
    /// untimed, if the topic holds fewer).
    Consume,
    /// Producers write while a consumer reads; latency is send to receipt.
    EndToEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Acks {
    #[value(name = "all", alias = "-1")]
    All,
    #[value(name = "1")]
    One,
    #[value(name = "0")]
    Zero,
}

impl Acks {
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::One => 1,
            Acks::Zero => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    pub fn name(self) -> &'static str {
        match self {
            CompressionArg::None => "none",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
        }
    }
}

/// The options of every bench, whatever the client.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BenchOptions {
    #[arg(value_enum)]
    pub mode: Mode,
    /// Created with `--partitions` if it does not exist.
    #[arg(long, default_value = "tally-bench")]
    pub topic: String,
    /// Bytes per message value (at least 8: the send time travels in the first 8).
    #[arg(long, short = 's', default_value_t = 100)]
    pub message_size: usize,
    /// Messages in all (split between producers).
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    pub count: u64,
    /// Run for this long instead of a count (produce and end-to-end).
    #[arg(long, value_name = "SECONDS")]
    pub duration_secs: Option<u64>,
    #[arg(long, short = 'p', default_value_t = 1)]
    pub partitions: i32,
    /// Producer instances, each with its own connections and producer id.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    #[arg(long, value_enum, default_value = "all")]
    pub acks: Acks,
    /// Turn idempotence off (on by default).
    #[arg(long)]
    pub no_idempotence: bool,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: CompressionArg,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, default_value_t = 256 * 1024)]
    pub batch_size: usize,
    /// How long the client waits for an answer before it retries (on a new connection).
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Target messages per second over all producers (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Produce in transactions of this many messages each (Tally client, produce mode):
    /// commits per second = msg/s / this.
    #[arg(long, value_name = "MESSAGES")]
    pub transaction_messages: Option<u64>,
    /// Give every message its own record key (unique in the run), as an application's
    /// idempotency key would be.
    #[arg(long)]
    pub unique_keys: bool,
    /// A config of the topic when the bench creates it (repeatable), e.g.
    /// idempotency.key=key.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    pub topic_configs: Vec<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchOptions {
    pub fn idempotent(&self) -> bool {
        !self.no_idempotence
    }

    pub fn validate(&self) -> Result<(), crate::BenchError> {
        let bad = |m: &str| Err(crate::BenchError::Options(m.to_string()));
        if self.message_size < 8 {
            return bad("--message-size must be at least 8 bytes");
        }
        if self.producers == 0 || self.partitions <= 0 {
            return bad("--producers and --partitions must be at least 1");
        }
        if self.count == 0 && self.duration_secs.is_none() {
            return bad("--count must be at least 1");
        }
        if self.idempotent() && self.acks != Acks::All {
            return bad("idempotence needs --acks all (or --no-idempotence)");
        }
        if self.mode == Mode::Consume && self.duration_secs.is_some() {
            return bad("consume mode reads --count messages; --duration-secs does not apply");
        }
        if self.request_timeout_ms == 0 {
            return bad("--request-timeout-ms must be positive");
        }
        if self.rate == Some(0) {
            return bad("--rate must be positive");
        }
        if self.transaction_messages == Some(0) {
            return bad("--transaction-messages must be positive");
        }
        if self.transaction_messages.is_some() && !self.idempotent() {
            return bad("transactions need idempotence");
        }
        if self.topic_configs.iter().any(|c| !c.contains('=')) {
            return bad("--topic-config takes KEY=VALUE");
        }
        Ok(())
    }

    /// Messages producer `index` sends when running by count.
    pub fn share(&self, index: usize) -> u64 {
        let n = self.producers as u64;
        self.count / n + u64::from((index as u64) < self.count % n)
    }
}
