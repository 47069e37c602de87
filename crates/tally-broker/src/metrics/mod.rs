//! What `/metrics` reports: the broker's request and connection metrics (here), each
//! partition's writer counters ([`PartitionMetrics`]), and their exposition in the Prometheus
//! text format (`text.rs`), all named `tally_*` in Kafka's vocabulary.

mod fsync;
mod groups;
mod partition;
mod process;
mod text;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

pub use partition::{PartitionCounts, PartitionMetrics};
pub use text::render;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    api: &'static str,
    version: i64,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Request and connection metrics of one broker.
#[derive(Debug)]
pub struct BrokerMetrics {
    /// Request latency, from the request read to its answer ready, per API and version
    /// (its count is the request count).
    pub(crate) requests: LatencyFamily,
    pub connections_open: AtomicI64,
    pub connections_accepted: AtomicU64,
    /// Refused at `max.connections`.
    pub connections_refused: AtomicU64,
    /// SASL authentications refused (wrong password, unknown user, malformed exchange).
    pub authentication_failures: AtomicU64,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            requests: Family::new_with_constructor(latency_histogram),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            authentication_failures: AtomicU64::new(0),
        }
    }
}

impl BrokerMetrics {
    pub fn observe_request(&self, api_key: ApiKey, version: i16, took: Duration) {
        let labels = RequestLabels {
            api: api_name(api_key),
            version: i64::from(version),
        };
        self.requests
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}

/// The API's name as Kafka spells it (`Produce`), made once per API key.
fn api_name(api_key: ApiKey) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..256i16)
            .map(|k| match ApiKey::try_from(k) {
                Ok(key) => &*Box::leak(format!("{key:?}").into_boxed_str()),
                Err(_) => "Unknown",
            })
            .collect()
    });
    names
        .get(api_key as i16 as usize)
        .copied()
        .unwrap_or("Unknown")
}
