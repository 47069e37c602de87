//! Helpers shared by the partition-group tests.
#![allow(dead_code)]

pub mod tcp;

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use std::path::Path;

use tally_log::{LogConfig, LogReader};
use tally_protocol::BatchHeader;
use tally_raft::{LocalRouter, PartitionLeader, RaftTimeouts, Replica, ReplicaConfig};

/// Every byte of the log below `end`, batch by batch.
pub fn bytes_below(reader: &LogReader, end: i64) -> Vec<u8> {
    bytes_between(reader, 0, end)
}

/// Every byte of the log in `[start, end)`, batch by batch.
pub fn bytes_between(reader: &LogReader, start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = start;
    while offset < end {
        let read = reader.read(offset, 1 << 20, end, true).unwrap();
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let h = BatchHeader::parse_whole(rest).unwrap();
            offset = h.last_offset() + 1;
            rest = &rest[h.size_in_bytes()..];
        }
        out.extend_from_slice(&read.records);
    }
    out
}

/// The data batches of `producer_id` in `bytes`, as (base sequence, base offset), in order.
pub fn producer_batches(bytes: &[u8], producer_id: i64) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let h = BatchHeader::parse_whole(rest).unwrap();
        if !h.is_control() && h.producer_id == producer_id {
            out.push((h.base_sequence, h.base_offset));
        }
        rest = &rest[h.size_in_bytes()..];
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Waits until every replica has applied all that `leader` holds, checks that they agree byte
/// for byte below its high watermark, and returns those bytes.
pub async fn converged<'a>(
    leader: &Replica,
    replicas: impl IntoIterator<Item = &'a Replica>,
) -> Vec<u8> {
    let replicas: Vec<&Replica> = replicas.into_iter().collect();
    let last = leader.raft.metrics().borrow_watched().last_log_index;
    for r in &replicas {
        r.raft
            .wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(last, "caught up")
            .await
            .unwrap_or_else(|e| panic!("replica {} did not catch up: {e}", r.id));
    }
    let hw = *leader.state_machine.high_watermark().borrow();
    let reference = bytes_below(leader.store.log_reader(), hw);
    for r in &replicas {
        assert_eq!(
            *r.state_machine.high_watermark().borrow(),
            hw,
            "replica {}",
            r.id
        );
        let bytes = bytes_below(r.store.log_reader(), hw);
        assert!(bytes == reference, "replica {} holds other bytes", r.id);
    }
    reference
}

/// Opens replica `id` of an in-process group on `dir`, reachable through `router`, with its
/// produce path.
pub async fn start_local(id: u64, dir: &Path, router: &LocalRouter) -> (Replica, PartitionLeader) {
    start_local_with(id, dir, router, LogConfig::default()).await
}

/// `start_local` with the log settings `log`.
pub async fn start_local_with(
    id: u64,
    dir: &Path,
    router: &LocalRouter,
    log: LogConfig,
) -> (Replica, PartitionLeader) {
    let config = ReplicaConfig::new(log, RaftTimeouts::default()).unwrap();
    let replica = Replica::open(id, dir, &config, router.network_for(id))
        .await
        .unwrap();
    router.add(id, replica.raft.clone());
    let leader = PartitionLeader::new(
        replica.raft.clone(),
        replica.store.clone(),
        replica.state_machine.clone(),
        1 << 20,
    );
    (replica, leader)
}

/// The replica that leads in the highest term, as a client's metadata refresh would find (a
/// replica cut off from the others may still think it leads, in an older term).
pub fn highest_term_leader<'a>(replicas: impl IntoIterator<Item = &'a Replica>) -> Option<u64> {
    replicas
        .into_iter()
        .filter_map(|r| {
            let m = r.raft.metrics().borrow_watched().clone();
            (m.state == openraft::ServerState::Leader).then_some((m.current_term, r.id))
        })
        .max()
        .map(|(_, id)| id)
}

/// The index of the last entry `replica` holds.
pub fn last_index(replica: &Replica) -> u64 {
    replica
        .raft
        .metrics()
        .borrow_watched()
        .last_log_index
        .expect("a log with entries")
}

/// Waits (30 s at most) until `replica` has applied the entry at `index`.
pub async fn applied(replica: &Replica, index: u64) {
    replica
        .raft
        .wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(Some(index), "caught up")
        .await
        .unwrap_or_else(|e| panic!("replica {} did not catch up: {e}", replica.id));
}
