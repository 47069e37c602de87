//! `tally top --once` against a real broker after a known workload: a producer writes through
//! the fault proxy, which loses K acknowledgements after the write. Its row shows the K
//! retries the broker absorbed, the partition holds each message once, and the group shows
//! its lag. Without an HTTP listener it says so and fails. With that workload on the broker,
//! every metric the Grafana dashboard (`docs/grafana/tally.json`) queries is in `/metrics`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};
use tally_client::{Admin, ClientConfig, GroupConsumer, GroupConsumerConfig, NewTopic};
use tally_testkit::{http_get, BrokerProcess};

mod common;
use common::produce_one_request_at_a_time;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 200;
const LOST_ANSWERS: u64 = 2;

fn top(http: &str) -> std::process::Output {
    Command::new(TALLY)
        .args(["top", "--once", "--http", http])
        .output()
        .unwrap()
}

/// The cells of the table row whose first cells are `prefix`.
fn row<'a>(frame: &'a str, prefix: &[&str]) -> Vec<&'a str> {
    frame
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.starts_with(prefix))
        .unwrap_or_else(|| panic!("no row {prefix:?} in\n{frame}"))
}

#[test]
fn top_shows_the_retries_absorbed_and_the_group_lag() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let http = broker.http_addr().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(async {
        Admin::new(ClientConfig::new(broker.bootstrap()))
            .await
            .unwrap()
            .create_topic(NewTopic::new("watched", 1))
            .await
            .unwrap();
        let mut config = ProxyConfig::new(broker.addr);
        config.drop_produce_responses = DropPolicy::FirstN(LOST_ANSWERS);
        config.rewrite_metadata = true;
        let proxy = FaultProxy::start(config).await.unwrap();
        produce_one_request_at_a_time(proxy.local_addr().to_string(), "watched", MESSAGES, None)
            .await;

        let mut config = GroupConsumerConfig::new(broker.bootstrap(), "watchers");
        config.enable_auto_commit = false;
        let mut consumer = GroupConsumer::new(config).await.unwrap();
        consumer.subscribe(&["watched"]);
        let mut read = 0;
        for _ in 0..300 {
            read += consumer
                .poll(Duration::from_millis(100))
                .await
                .unwrap()
                .len();
            if read >= 50 {
                break;
            }
        }
        assert!(read >= 50, "the group read {read}");
        consumer.commit_sync().await.unwrap();
        proxy
    });
    assert_eq!(proxy.counters().produce_responses_dropped, LOST_ANSWERS);

    let out = top(&http);
    let frame = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{frame}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        frame.contains(&format!("duplicates absorbed {LOST_ANSWERS}")),
        "{frame}"
    );
    // TOPIC PARTITION LOG START LOG END HW SIZE(2 cells) SEGMENTS MESSAGES DUPLICATES
    let partition = row(&frame, &["watched", "0", "0"]);
    assert_eq!(
        partition[3],
        MESSAGES.to_string(),
        "each message once: {partition:?}"
    );
    assert_eq!(partition.last().unwrap(), &LOST_ANSWERS.to_string());
    // TOPIC PARTITION PRODUCER EPOCH LAST-SEQ LAST-OFFSET TIMESTAMP DUPLICATES TXN
    let last_seq = (MESSAGES - 1).to_string();
    let producer = frame
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.len() == 9 && c[0] == "watched" && c[4] == last_seq)
        .unwrap_or_else(|| panic!("no producer row in\n{frame}"));
    assert_eq!(producer[7], LOST_ANSWERS.to_string(), "{producer:?}");
    assert_eq!(producer[8], "-");
    // GROUP STATE MEMBERS GENERATION TOPIC PARTITION COMMITTED LOG-END LAG
    let group = row(&frame, &["watchers"]);
    let committed: i64 = group[6].parse().unwrap();
    assert!(committed >= 50, "{group:?}");
    assert_eq!(group[7], MESSAGES.to_string());
    assert_eq!(group[8], (MESSAGES as i64 - committed).to_string());

    dashboard_metrics_are_exported(&http_get(broker.http_addr().unwrap(), "/metrics").unwrap().1);

    // Nothing listening: a clear error, exit 1.
    let out = top("127.0.0.1:1");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the broker's HTTP listener"),
        "{err}"
    );
}

/// Every `tally_*` series a panel of the dashboard queries is a metric family of the scrape.
fn dashboard_metrics_are_exported(scrape: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana/tally.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut names = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("tally_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            scrape.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {name}, which /metrics does not export"
        );
    }
}

/// The commands that cannot speak through the security settings say so instead of ignoring
/// them: `tally top` reads the HTTP listener, the demos and the chaos proxy read Kafka frames.
#[test]
fn commands_without_kafka_security_refuse_its_settings() {
    for command in [
        &["top", "--once"][..],
        &["demo", "idempotence"],
        &["chaos-proxy", "--upstream", "127.0.0.1:9"],
    ] {
        let out = Command::new(TALLY)
            .args(["--security-protocol", "SSL"])
            .args(command)
            .env_remove("TALLY_BOOTSTRAP")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("tally: error: --security-protocol: "),
            "{command:?}: {err}"
        );
    }
}
