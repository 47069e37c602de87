//! The broker's HTTP listener against a real `tally serve`: `/healthz` and `/readyz` answer,
//! and `/metrics` after a known workload (N messages, K acknowledgements lost by the fault
//! proxy after the write) reports exactly that workload: N messages in, K duplicates absorbed
//! (the proxy's own count of lost answers, each followed by a retry the broker answered from
//! its memory), one Produce request per request the proxy forwarded. The text parses as
//! Prometheus exposition (`prometheus-parse`).

use std::collections::HashMap;
use std::path::Path;

use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};
use tally_client::{Admin, ClientConfig, NewTopic};
use tally_testkit::{http_get, BrokerProcess};

mod common;
use common::produce_one_request_at_a_time;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 400;
const LOST_ANSWERS: usize = 3;

/// Every sample of a scrape: (name, labels) -> value.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

fn scrape(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let mut out = Samples::new();
    for s in scrape.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert((s.metric, labels), value);
    }
    out
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    *samples
        .get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// The sum of a metric over every label set with `label=value`.
fn sum(samples: &Samples, name: &str, label: (&str, &str)) -> f64 {
    samples
        .iter()
        .filter(|((n, l), _)| n == name && l.iter().any(|(k, v)| k == label.0 && v == label.1))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_count_the_workload_and_the_retries_absorbed() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let http = broker.http_addr().expect("an HTTP listener");
    assert_eq!(http_get(http, "/healthz").unwrap().0, 200);
    assert_eq!(http_get(http, "/readyz").unwrap().0, 200);
    assert_eq!(http_get(http, "/nothing").unwrap().0, 404);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(async {
        Admin::new(ClientConfig::new(broker.bootstrap()))
            .await
            .unwrap()
            .create_topic(NewTopic::new("measured", 1))
            .await
            .unwrap();
        let mut config = ProxyConfig::new(broker.addr);
        config.drop_produce_responses = DropPolicy::FirstN(LOST_ANSWERS as u64);
        config.rewrite_metadata = true;
        let proxy = FaultProxy::start(config).await.unwrap();
        // One request at a time: each lost answer is followed by exactly one retry.
        produce_one_request_at_a_time(
            proxy.local_addr().to_string(),
            "measured",
            MESSAGES,
            Some(0),
        )
        .await;
        proxy
    });
    let faults = proxy.counters();
    assert_eq!(faults.produce_responses_dropped, LOST_ANSWERS as u64);

    let (status, text) = http_get(http, "/metrics").unwrap();
    assert_eq!(status, 200);
    let samples = scrape(&text);
    assert!(
        samples.keys().all(|(name, _)| name.starts_with("tally_")),
        "every metric is named tally_*"
    );
    let partition = [("topic", "measured"), ("partition", "0")];
    assert_eq!(
        value(&samples, "tally_messages_in_total", &partition),
        MESSAGES as f64,
        "each message stored once"
    );
    assert_eq!(
        value(&samples, "tally_duplicates_absorbed_total", &partition),
        LOST_ANSWERS as f64,
        "one absorbed retry per answer the proxy lost"
    );
    assert_eq!(
        value(&samples, "tally_out_of_order_sequence_total", &partition),
        0.0
    );
    assert_eq!(
        value(&samples, "tally_fenced_batches_total", &partition),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "tally_unknown_producers_accepted_total",
            &partition
        ),
        1.0,
        "the producer's first batch"
    );
    assert_eq!(value(&samples, "tally_producers_tracked", &partition), 1.0);
    assert_eq!(
        value(&samples, "tally_log_end_offset", &partition),
        MESSAGES as f64
    );
    assert_eq!(
        value(&samples, "tally_high_watermark", &partition),
        MESSAGES as f64
    );
    let appended = value(&samples, "tally_batches_appended_total", &partition);
    // Every Produce request the proxy forwarded was answered once: a new batch or a retry.
    assert_eq!(
        appended + LOST_ANSWERS as f64,
        faults.produce_requests as f64,
        "batches appended and duplicates make up the Produce requests"
    );
    assert_eq!(
        sum(
            &samples,
            "tally_request_latency_seconds_count",
            ("api", "Produce")
        ),
        faults.produce_requests as f64
    );
    assert!(value(&samples, "tally_connections_accepted_total", &[]) >= faults.connections as f64);
    assert!(value(&samples, "tally_process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&samples, "tally_process_open_fds", &[]) > 0.0);
}
