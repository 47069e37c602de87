//! The web console in a real browser (headless Chromium driven by playwright-core through
//! `tests/console/check_console.mjs`; `.ci/run` installs Debian's chromium and runs `npm ci`):
//! the page loads from the broker, and while it stays open a producer writes through the fault
//! proxy, which loses K acknowledgements after the write. The producer's row and its
//! duplicates-absorbed count appear on the page without a reload. Afterwards `/api/overview`
//! reports exactly the workload (N messages, K duplicates for that producer, the proxy's own
//! count) and the consumer group with its committed offsets and lag. The screenshot is saved
//! as `target/tmp/console.png`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};
use tally_client::{Admin, ClientConfig, GroupConsumer, GroupConsumerConfig, NewTopic};
use tally_testkit::{http_get, BrokerProcess};

mod common;
use common::produce_one_request_at_a_time;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 300;
const LOST_ANSWERS: u64 = 3;
const CONSUMED: usize = 100;

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/console")
}

/// A group member that reads and commits `CONSUMED` messages of `topic`.
async fn consume_and_commit(bootstrap: String, topic: &str) -> GroupConsumer {
    let mut config = GroupConsumerConfig::new(bootstrap, "billing");
    config.enable_auto_commit = false;
    config.session_timeout_ms = 30_000;
    let mut consumer = GroupConsumer::new(config).await.unwrap();
    consumer.subscribe(&[topic]);
    let mut read = 0;
    for _ in 0..200 {
        read += consumer
            .poll(Duration::from_millis(100))
            .await
            .unwrap()
            .len();
        if read >= CONSUMED {
            break;
        }
    }
    assert!(read >= CONSUMED, "the group read {read}");
    consumer.commit_sync().await.unwrap();
    consumer
}

#[test]
fn the_console_shows_absorbed_retries_live_in_a_browser() {
    let dir = script_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/console` (as .ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (as .ci/run does) or set CHROMIUM"
    );
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let http = broker.http_addr().expect("an HTTP listener");
    let (status, page) = http_get(http, "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>Tally console</title>"));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Before the page opens: a topic, some messages, and a group that committed part of them.
    let _member = runtime.block_on(async {
        let admin = Admin::new(ClientConfig::new(broker.bootstrap()))
            .await
            .unwrap();
        admin
            .create_topic(NewTopic::new("orders", 2))
            .await
            .unwrap();
        produce_one_request_at_a_time(broker.bootstrap(), "orders", MESSAGES, Some(0)).await;
        consume_and_commit(broker.bootstrap(), "orders").await
    });

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut browser = Command::new("node")
        .arg(dir.join("check_console.mjs"))
        .arg(format!("http://{http}/"))
        .arg(&screenshot)
        .args(["--expect-topic", "orders", "--timeout-ms", "60000"])
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "loaded", "the page did not come up");

    // Now, with the page open: a second producer through the proxy, which loses answers.
    let proxy = runtime.block_on(async {
        let mut config = ProxyConfig::new(broker.addr);
        config.drop_produce_responses = DropPolicy::FirstN(LOST_ANSWERS);
        config.rewrite_metadata = true;
        let proxy = FaultProxy::start(config).await.unwrap();
        produce_one_request_at_a_time(proxy.local_addr().to_string(), "orders", MESSAGES, Some(0))
            .await;
        proxy
    });
    assert_eq!(proxy.counters().produce_responses_dropped, LOST_ANSWERS);

    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let output = browser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the browser check failed: {rest:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(rest.last().map(String::as_str), Some("done"));
    assert!(screenshot.exists());
    let rows: Vec<serde_json::Value> = rest
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let (status, json) = http_get(http, "/api/overview").unwrap();
    assert_eq!(status, 200);
    let overview: serde_json::Value = serde_json::from_str(&json).unwrap();
    check_overview(&overview, &rows);
}

/// The overview after the workload, and the rows the page showed while it ran.
fn check_overview(overview: &serde_json::Value, page_rows: &[serde_json::Value]) {
    let topic = &overview["topics"][0];
    assert_eq!(topic["name"], "orders");
    let p0 = &topic["partitions"][0];
    assert_eq!(
        p0["log_end_offset"],
        2 * MESSAGES as u64,
        "each message once"
    );
    assert_eq!(p0["duplicates_absorbed"], LOST_ANSWERS);
    assert_eq!(overview["totals"]["duplicates_absorbed"], LOST_ANSWERS);
    let producers = p0["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 2, "{producers:?}");
    let retried = producers
        .iter()
        .find(|p| p["duplicates_absorbed"] != 0)
        .expect("the producer behind the proxy");
    assert_eq!(retried["duplicates_absorbed"], LOST_ANSWERS);
    assert_eq!(retried["last_sequence"], MESSAGES as u64 - 1);
    assert_eq!(retried["last_offset"], 2 * MESSAGES as u64 - 1);

    // The page showed that producer's row, counting retries, before any reload.
    let shown = page_rows
        .iter()
        .find(|r| r["producer_id"] == retried["producer_id"] && r["partition"] == 0)
        .unwrap_or_else(|| panic!("no row for {retried} in {page_rows:?}"));
    let on_page = shown["duplicates_absorbed"].as_u64().unwrap();
    assert!((1..=LOST_ANSWERS).contains(&on_page), "{shown}");

    let group = &overview["groups"][0];
    assert_eq!(group["group_id"], "billing");
    let members = group["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{group}");
    let assigned: Vec<&serde_json::Value> = members[0]["assignment"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["partitions"].as_array().unwrap())
        .collect();
    assert_eq!(assigned.len(), 2, "both partitions: {group}");
    let offset = group["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["partition"] == 0)
        .expect("a commit on partition 0");
    let committed = offset["committed_offset"].as_u64().unwrap();
    assert!(committed >= CONSUMED as u64 && committed <= MESSAGES as u64);
    assert_eq!(offset["log_end_offset"], 2 * MESSAGES as u64);
    assert_eq!(offset["lag"], 2 * MESSAGES as u64 - committed);
}
