//! `tally top`: the web console's live view in the terminal. It reads the broker's
//! `/api/overview` (the HTTP listener, `http.listeners`) every interval and redraws: totals
//! with rates, partitions, each partition's producers with the retries the broker absorbed,
//! and consumer groups with their lag. `--once` prints one view and exits.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::producers_cmd::format_timestamp;
use crate::table::Table;

#[derive(Args)]
#[command(after_help = "Examples:
  tally top
  tally top --http 127.0.0.1:9644 --interval-ms 500
  tally top --once")]
pub struct TopArgs {
    /// The broker's HTTP listener (`http.listeners` of `tally serve`).
    #[arg(long, default_value = "127.0.0.1:9644", value_name = "HOST:PORT")]
    http: String,
    /// Time between two views.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    interval_ms: u64,
    /// Print one view and exit.
    #[arg(long)]
    once: bool,
}

pub async fn run(args: TopArgs) -> Result<()> {
    let mut previous: Option<(Instant, Value)> = None;
    loop {
        let overview = fetch_overview(&args.http).await?;
        let now = Instant::now();
        let frame = render(
            &args.http,
            &overview,
            previous.as_ref().map(|(t, v)| (now - *t, v)),
        );
        if args.once {
            print!("{frame}");
            return Ok(());
        }
        // Clear the screen and draw from the top-left corner.
        print!("\x1b[2J\x1b[H{frame}");
        previous = Some((now, overview));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(args.interval_ms)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn fetch_overview(addr: &str) -> Result<Value> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the broker's HTTP listener at {addr}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/api/overview")
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET http://{addr}/api/overview"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status == hyper::StatusCode::SERVICE_UNAVAILABLE {
        bail!("the broker at {addr} is still recovering");
    }
    if !status.is_success() {
        bail!("GET http://{addr}/api/overview answered {status}");
    }
    serde_json::from_slice(&body).context("the overview is not JSON")
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// One view; `previous` (time since, overview) gives the rates.
fn render(addr: &str, o: &Value, previous: Option<(Duration, &Value)>) -> String {
    let t = &o["totals"];
    let b = &o["broker"];
    let mut out = format!(
        "tally top  {addr}  node {}  up {}  {}\n\n",
        int(&b["node_id"]),
        uptime(int(&b["uptime_ms"])),
        format_timestamp(int(&o["time_ms"])),
    );
    let rate = |key: &str| match previous {
        Some((since, p)) if since.as_secs_f64() > 0.0 => {
            let d = int(&t[key]) - int(&p["totals"][key]);
            format!(" ({:.0}/s)", d.max(0) as f64 / since.as_secs_f64())
        }
        _ => String::new(),
    };
    out += &format!(
        "messages in {}{}   bytes in {}   duplicates absorbed {}{}   out-of-order {}   fenced {}\n\n",
        int(&t["messages_in"]),
        rate("messages_in"),
        human_bytes(int(&t["bytes_in"])),
        int(&t["duplicates_absorbed"]),
        rate("duplicates_absorbed"),
        int(&t["out_of_order"]),
        int(&t["fenced"]),
    );
    out += &partitions(o);
    out += &producers(o);
    out += &groups(o);
    out
}

fn partitions(o: &Value) -> String {
    let mut table = Table::new([
        "TOPIC",
        "PARTITION",
        "LOG START",
        "LOG END",
        "HIGH WATERMARK",
        "SIZE",
        "SEGMENTS",
        "MESSAGES IN",
        "DUPLICATES",
    ]);
    let topics = o["topics"].as_array().cloned().unwrap_or_default();
    for topic in &topics {
        for p in topic["partitions"].as_array().into_iter().flatten() {
            table.row([
                text(&topic["name"]),
                int(&p["partition"]).to_string(),
                int(&p["log_start_offset"]).to_string(),
                int(&p["log_end_offset"]).to_string(),
                int(&p["high_watermark"]).to_string(),
                human_bytes(int(&p["size_bytes"])),
                int(&p["segments"]).to_string(),
                int(&p["messages_in"]).to_string(),
                int(&p["duplicates_absorbed"]).to_string(),
            ]);
        }
    }
    if topics.is_empty() {
        return "No topics yet.\n\n".into();
    }
    format!("{}\n\n", table.render())
}

fn producers(o: &Value) -> String {
    let mut table = Table::new([
        "TOPIC",
        "PARTITION",
        "PRODUCER ID",
        "EPOCH",
        "LAST SEQUENCE",
        "LAST OFFSET",
        "LAST TIMESTAMP",
        "DUPLICATES",
        "TXN START",
    ]);
    let mut any = false;
    for topic in o["topics"].as_array().into_iter().flatten() {
        for p in topic["partitions"].as_array().into_iter().flatten() {
            for pr in p["producers"].as_array().into_iter().flatten() {
                any = true;
                let txn = int(&pr["txn_start_offset"]);
                table.row([
                    text(&topic["name"]),
                    int(&p["partition"]).to_string(),
                    int(&pr["producer_id"]).to_string(),
                    int(&pr["producer_epoch"]).to_string(),
                    int(&pr["last_sequence"]).to_string(),
                    int(&pr["last_offset"]).to_string(),
                    format_timestamp(int(&pr["last_timestamp"])),
                    int(&pr["duplicates_absorbed"]).to_string(),
                    if txn < 0 { "-".into() } else { txn.to_string() },
                ]);
            }
        }
    }
    if !any {
        return "No producers yet.\n\n".into();
    }
    format!("{}\n\n", table.render())
}

fn groups(o: &Value) -> String {
    let mut table = Table::new([
        "GROUP",
        "STATE",
        "MEMBERS",
        "GENERATION",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "LOG END",
        "LAG",
    ]);
    let groups = o["groups"].as_array().cloned().unwrap_or_default();
    for g in &groups {
        let members = g["members"].as_array().map_or(0, Vec::len).to_string();
        let offsets = g["offsets"].as_array().cloned().unwrap_or_default();
        let head = [
            text(&g["group_id"]),
            text(&g["state"]),
            members,
            int(&g["generation"]).to_string(),
        ];
        if offsets.is_empty() {
            table.row(head.iter().cloned().chain([
                "-".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
            ]));
        }
        for off in &offsets {
            table.row(head.iter().cloned().chain([
                text(&off["topic"]),
                int(&off["partition"]).to_string(),
                int(&off["committed_offset"]).to_string(),
                int(&off["log_end_offset"]).to_string(),
                int(&off["lag"]).to_string(),
            ]));
        }
    }
    if groups.is_empty() {
        return "No consumer groups.\n".into();
    }
    format!("{}\n", table.render())
}

fn uptime(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n.max(0) as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_uptimes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(uptime(59_999), "59s");
        assert_eq!(uptime(61_000), "1m01s");
        assert_eq!(uptime(3_660_000), "1h01m");
    }

    #[test]
    fn rates_come_from_the_previous_view() {
        let before = serde_json::json!({"totals": {"messages_in": 100, "duplicates_absorbed": 1}});
        let now = serde_json::json!({"totals": {"messages_in": 300, "duplicates_absorbed": 5}});
        let frame = render("h:1", &now, Some((Duration::from_secs(2), &before)));
        assert!(frame.contains("messages in 300 (100/s)"), "{frame}");
        assert!(frame.contains("duplicates absorbed 5 (2/s)"), "{frame}");
        assert!(frame.contains("No topics yet."));
        assert!(frame.contains("No consumer groups."));
    }
}
