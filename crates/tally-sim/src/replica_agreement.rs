//! The end of a cluster run: every two replicas of a partition hold the same committed log.
//! Raft promises it, and the client-side checks cannot see it: they read only from the
//! leaders of the moment, so a follower whose log went wrong (a snapshot installed over a log
//! that lacks its records, a truncation too far) would pass them until it led. Compared over
//! what both replicas retain and have applied: `[later log start, lower high watermark)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tally_log::LogReader;
use tally_protocol::BatchHeader;

use crate::world::Registry;

/// One replica's view of its partition's log.
struct ReplicaLog {
    host: String,
    reader: Arc<LogReader>,
    log_start: i64,
    high_watermark: i64,
}

/// The replicas' logs that differ, one line per pair and partition; empty when all agree.
pub(crate) fn disagreements(registry: &Registry, hosts: &[String]) -> Vec<String> {
    let mut groups: BTreeMap<String, Vec<ReplicaLog>> = BTreeMap::new();
    {
        let registry = registry.lock().unwrap();
        for host in hosts {
            let Some(broker) = registry.get(host).and_then(|b| b.upgrade()) else {
                continue;
            };
            let Some(cluster) = broker.cluster.clone() else {
                continue;
            };
            for p in cluster.node.partitions() {
                let reader = Arc::clone(p.replica.store.log_reader());
                let high_watermark = *p.replica.state_machine.high_watermark().borrow();
                groups
                    .entry(format!("{}-{}", p.topic, p.index))
                    .or_default()
                    .push(ReplicaLog {
                        host: host.clone(),
                        log_start: reader.log_start_offset(),
                        reader,
                        high_watermark,
                    });
            }
        }
    }
    let mut out = Vec::new();
    for (group, replicas) in &groups {
        let Some((first, others)) = replicas.split_first() else {
            continue;
        };
        for other in others {
            let from = first.log_start.max(other.log_start);
            let to = first.high_watermark.min(other.high_watermark);
            if from >= to {
                continue;
            }
            let a = committed_bytes(&first.reader, from, to);
            let b = committed_bytes(&other.reader, from, to);
            if a != b {
                out.push(format!(
                    "{group}: the replicas on {} and {} differ in offsets [{from}, {to}): \
                     {} against {} bytes",
                    first.host,
                    other.host,
                    a.as_ref().map_or(0, Vec::len),
                    b.as_ref().map_or(0, Vec::len),
                ));
            }
        }
    }
    out
}

/// The whole batches of `[from, to)`; `None` when the log cannot be read there.
fn committed_bytes(reader: &LogReader, from: i64, to: i64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < to {
        let read = reader.read(offset, 1 << 20, to, true).ok()?;
        if read.records.is_empty() {
            return None;
        }
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let header = BatchHeader::parse_whole(rest).ok()?;
            offset = header.last_offset() + 1;
            rest = &rest[header.size_in_bytes()..];
        }
        out.extend_from_slice(&read.records);
    }
    Some(out)
}
