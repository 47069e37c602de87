use serde::Serialize;

use crate::latency::LatencySummary;
use crate::options::{BenchOptions, Mode};

/// The outcome of one bench run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `tally` or `rdkafka`.
    pub client: String,
    pub mode: Mode,
    pub messages: u64,
    pub message_size: usize,
    /// Value bytes moved (messages x size).
    pub bytes: u64,
    pub seconds: f64,
    pub messages_per_sec: f64,
    /// Megabytes (10^6 bytes) of values per second.
    pub mb_per_sec: f64,
    /// Send to acknowledgement (produce) or send to receipt (end-to-end); none for consume.
    pub latency: Option<LatencySummary>,
    /// Messages whose delivery failed.
    pub errors: u64,
    pub options: BenchOptions,
}

impl Report {
    pub fn new(
        client: &str,
        options: &BenchOptions,
        messages: u64,
        seconds: f64,
        latency: Option<LatencySummary>,
        errors: u64,
    ) -> Report {
        let bytes = messages * options.message_size as u64;
        let seconds = seconds.max(1e-9);
        Report {
            client: client.to_string(),
            mode: options.mode,
            messages,
            message_size: options.message_size,
            bytes,
            seconds,
            messages_per_sec: messages as f64 / seconds,
            mb_per_sec: bytes as f64 / seconds / 1e6,
            latency,
            errors,
            options: options.clone(),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report serialises")
    }

    pub fn table(&self) -> String {
        let mode = match self.mode {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::EndToEnd => "end-to-end",
        };
        let o = &self.options;
        let settings = format!(
            "{} partition(s), {} producer(s), acks={}, idempotence={}, compression={}, linger.ms={}, batch.size={}{}",
            o.partitions,
            o.producers,
            o.acks.as_i16(),
            if o.idempotent() { "on" } else { "off" },
            o.compression.name(),
            o.linger_ms,
            o.batch_size,
            o.rate.map(|r| format!(", rate={r}/s")).unwrap_or_default()
        );
        let ms = |f: fn(&LatencySummary) -> f64| {
            self.latency
                .as_ref()
                .map_or("-".to_string(), |l| format!("{:.2}", f(l)))
        };
        let header = [
            "client", "mode", "messages", "size", "seconds", "msg/s", "MB/s", "p50 ms", "p99 ms",
            "p99.9 ms", "max ms", "errors",
        ];
        let row = [
            self.client.clone(),
            mode.to_string(),
            self.messages.to_string(),
            self.message_size.to_string(),
            format!("{:.2}", self.seconds),
            format!("{:.0}", self.messages_per_sec),
            format!("{:.1}", self.mb_per_sec),
            ms(|l| l.p50_ms),
            ms(|l| l.p99_ms),
            ms(|l| l.p999_ms),
            ms(|l| l.max_ms),
            self.errors.to_string(),
        ];
        let widths: Vec<usize> = header
            .iter()
            .zip(&row)
            .map(|(h, r)| h.len().max(r.len()))
            .collect();
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        format!(
            "{settings}\n{}\n{}",
            line(header.to_vec()),
            line(row.iter().map(String::as_str).collect())
        )
    }
}
