//! The Prometheus text exposition of a broker, built at each scrape from the live counters
//! (a fresh registry per scrape: the partition counters live in the writers' atomics, and the
//! set of partitions changes with topics).

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::PartitionCounts;
use crate::broker::Broker;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i64,
}

/// One metric of every partition: its name, help, how to read it from a writer's snapshot,
/// and the family its values go into.
struct Series<V, M> {
    name: &'static str,
    help: &'static str,
    read: fn(&PartitionCounts) -> V,
    family: Family<PartitionLabels, M>,
}

type CounterSeries = Series<u64, Counter>;
type GaugeSeries = Series<i64, Gauge<i64, AtomicI64>>;

struct PartitionFamilies {
    counters: Vec<CounterSeries>,
    gauges: Vec<GaugeSeries>,
}

fn partition_families() -> PartitionFamilies {
    let c = |name, help, read| CounterSeries {
        name,
        help,
        read,
        family: Family::default(),
    };
    let g = |name, help, read| GaugeSeries {
        name,
        help,
        read,
        family: Family::default(),
    };
    PartitionFamilies {
        counters: vec![
            c("batches_appended", "Client batches appended", |p| {
                p.batches_appended
            }),
            c("messages_in", "Records appended from clients", |p| {
                p.messages_in
            }),
            c("bytes_in", "Bytes of client batches appended", |p| {
                p.bytes_in
            }),
            c(
                "duplicates_absorbed",
                "Retried batches answered with their original offset instead of being stored again",
                |p| p.duplicates,
            ),
            c(
                "out_of_order_sequence",
                "Batches refused with OUT_OF_ORDER_SEQUENCE_NUMBER (a sequence gap)",
                |p| p.out_of_order,
            ),
            c(
                "fenced_batches",
                "Batches refused with INVALID_PRODUCER_EPOCH (a stale producer epoch)",
                |p| p.fenced,
            ),
            c(
                "unknown_producers_accepted",
                "Idempotent batches accepted from a producer the partition did not know",
                |p| p.unknown_producers,
            ),
            c(
                "idempotency_key_duplicates_dropped",
                "Records not stored because their idempotency key was (topic config idempotency.key)",
                |p| p.key_duplicates_dropped,
            ),
            c(
                "idempotency_keys_evicted",
                "Idempotency keys forgotten because idempotency.window.max.keys was reached",
                |p| p.keys_evicted,
            ),
            c(
                "producers_expired",
                "Producers forgotten after producer.id.expiration.ms",
                |p| p.producers_expired,
            ),
            c(
                "messages_out",
                "Records returned to consumers by Fetch",
                |p| p.messages_out,
            ),
            c("bytes_out", "Bytes of batches returned by Fetch", |p| {
                p.bytes_out
            }),
        ],
        gauges: vec![
            g(
                "producers_tracked",
                "Producers whose last batches the partition remembers",
                |p| p.producers_tracked,
            ),
            g(
                "log_start_offset",
                "The partition's log start offset",
                |p| p.log_start_offset,
            ),
            g("log_end_offset", "The partition's log end offset", |p| {
                p.log_end_offset
            }),
            g("log_size_bytes", "Bytes in the partition's segments", |p| {
                p.size_bytes
            }),
            g("log_segments", "Segments of the partition", |p| p.segments),
            g(
                "idempotency_keys",
                "Idempotency keys the partition remembers",
                |p| p.keys_tracked,
            ),
        ],
    }
}

/// Everything `/metrics` shows, in the Prometheus text format.
pub fn render(broker: &Broker) -> String {
    let mut registry = Registry::with_prefix("tally");
    let families = partition_families();
    for p in broker.topics.all_partitions() {
        let counts = p.metrics().snapshot();
        let labels = PartitionLabels {
            topic: p.topic.clone(),
            partition: i64::from(p.index),
        };
        for c in &families.counters {
            c.family.get_or_create(&labels).inc_by((c.read)(&counts));
        }
        for g in &families.gauges {
            g.family.get_or_create(&labels).set((g.read)(&counts));
        }
    }
    for c in families.counters {
        registry.register(c.name, c.help, c.family);
    }
    for g in families.gauges {
        registry.register(g.name, g.help, g.family);
    }
    let high_watermark = Family::<PartitionLabels, Gauge<i64, AtomicI64>>::default();
    for p in broker.topics.all_partitions() {
        let labels = PartitionLabels {
            topic: p.topic.clone(),
            partition: i64::from(p.index),
        };
        high_watermark
            .get_or_create(&labels)
            .set(p.reader().high_watermark());
    }
    registry.register(
        "high_watermark",
        "The partition's high watermark (what consumers can read)",
        high_watermark,
    );
    register_broker(&mut registry, broker);
    super::groups::register(&mut registry, broker);
    registry.register(
        "fsync_latency_seconds",
        "Time each fsync of the broker's files and directories took",
        super::fsync::FsyncHistogram(tally_log::fsync_latency()),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

fn register_broker(registry: &mut Registry, broker: &Broker) {
    let m = &broker.metrics;
    registry.register(
        "request_latency_seconds",
        "Time from a request read to its answer ready, per API and version",
        m.requests.clone(),
    );
    let gauge = |v: i64| {
        let g = Gauge::<i64, AtomicI64>::default();
        g.set(v);
        g
    };
    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    registry.register(
        "connections_open",
        "Client connections open",
        gauge(m.connections_open.load(Ordering::Relaxed)),
    );
    registry.register(
        "connections_accepted",
        "Client connections accepted",
        counter(m.connections_accepted.load(Ordering::Relaxed)),
    );
    registry.register(
        "connections_refused",
        "Client connections refused at max.connections",
        counter(m.connections_refused.load(Ordering::Relaxed)),
    );
    registry.register(
        "authentication_failures",
        "SASL authentications refused",
        counter(m.authentication_failures.load(Ordering::Relaxed)),
    );
    let process = crate::metrics::process::sample();
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory of the broker process",
        gauge(process.resident_bytes),
    );
    registry.register(
        "process_open_fds",
        "Open file descriptors of the broker process",
        gauge(process.open_fds),
    );
    registry.register(
        "process_threads",
        "Threads of the broker process",
        gauge(process.threads),
    );
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    cpu.inc_by(process.cpu_seconds);
    registry.register(
        "process_cpu_seconds",
        "CPU time of the broker process, user and system",
        cpu,
    );
}
