//! Replay equals the live run, through the real `Partition::open` on real files: random client
//! batches (new, retried, out of order, stale or bumped epochs, transactional), transaction
//! markers (commit and abort, some from stale epochs), the broker's own records, and
//! restarts (a crash that keeps what was written, or a clean close) drive two partitions with
//! the same inputs: one never restarts, the other is restarted whenever the input says so.
//! Every answer, the producer table, the open transactions, the last stable offset, the aborted
//! transactions and the log bytes must be the same for both.

use proptest::prelude::*;
use tally_log::LogConfig;
use tally_partition::{
    validate_client_batch, Decision, Entry, EntryOrigin, Partition, PartitionConfig,
    ProducerStateEntry,
};
use tally_protocol::sequence::increment_sequence;
use tally_protocol::{BatchHeader, EndTxnMarker, TxnResult};
use tally_testkit::batch::{batch, BatchSpec};

fn config() -> PartitionConfig {
    PartitionConfig {
        log: LogConfig {
            // Small segments: rolls (with producer snapshots) happen within a run, so a restart
            // loads a snapshot and replays only what follows it.
            segment_bytes: 1_200,
            index_interval_bytes: 256,
            ..LogConfig::default()
        },
        ..PartitionConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// The producer's next batch in sequence.
    Next { pid: i64, count: usize },
    /// A retry of one of the producer's earlier batches, `back` batches ago.
    Retry { pid: i64, back: usize },
    /// A batch at an arbitrary sequence and epoch.
    Wild {
        pid: i64,
        epoch_delta: i16,
        seq: i32,
        count: usize,
    },
    /// The producer bumps its epoch and starts again at sequence 0.
    Bump { pid: i64 },
    /// Records the broker writes itself (no producer id), through the trusted path.
    Broker { count: usize },
    /// The producer's next batch in sequence, transactional (verified by the coordinator).
    Txn { pid: i64, count: usize },
    /// A marker ends the producer's transaction, from its epoch plus `epoch_delta`.
    Marker {
        pid: i64,
        commit: bool,
        epoch_delta: i16,
    },
    /// The restarted partition goes down and is opened again on the same directory.
    Restart { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0i64..3, 1usize..4).prop_map(|(pid, count)| Op::Next { pid, count }),
        3 => (0i64..3, 0usize..8).prop_map(|(pid, back)| Op::Retry { pid, back }),
        1 => (0i64..3, -1i16..2, 0i32..40, 1usize..4)
            .prop_map(|(pid, epoch_delta, seq, count)| Op::Wild { pid, epoch_delta, seq, count }),
        1 => (0i64..3).prop_map(|pid| Op::Bump { pid }),
        1 => (1usize..3).prop_map(|count| Op::Broker { count }),
        3 => (0i64..3, 1usize..4).prop_map(|(pid, count)| Op::Txn { pid, count }),
        2 => (0i64..3, any::<bool>(), -1i16..1)
            .prop_map(|(pid, commit, epoch_delta)| Op::Marker { pid, commit, epoch_delta }),
        2 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

/// What a simulated producer has sent: epoch, next sequence, (first, count) per batch.
#[derive(Default, Clone)]
struct Sent {
    epoch: i16,
    next: i32,
    batches: Vec<(i32, usize)>,
}

/// An append's answer in comparable form: (base offset, duplicate) or the error code.
fn outcome(
    result: Result<tally_partition::AppendOutcome, tally_partition::AppendError>,
) -> Result<(i64, bool), i16> {
    result
        .map(|o| (o.base_offset, o.duplicate))
        .map_err(|e| e.error_code().code())
}

fn broker_records(p: &mut Partition, count: usize, now_ms: i64) -> Result<(i64, bool), i16> {
    let bytes = batch(-1, -1, -1, count);
    let header = BatchHeader::parse(&bytes).unwrap();
    let applied = p.apply(Entry {
        origin: EntryOrigin::Broker,
        header: &header,
        bytes: &bytes,
        append_time_ms: now_ms,
        keys: None,
    });
    let applied = outcome(applied);
    p.flush_if_due().unwrap();
    applied
}

/// Check, decide (as verified by the transaction coordinator), apply, flush.
fn verified_client_batch(p: &mut Partition, bytes: &[u8], now_ms: i64) -> Result<(i64, bool), i16> {
    let result = (|| {
        let header = validate_client_batch(bytes, usize::MAX)?;
        if let Decision::Duplicate(o) = p.decide(&header, true)? {
            return Ok(o);
        }
        let o = p.apply(Entry {
            origin: EntryOrigin::Client,
            header: &header,
            bytes,
            append_time_ms: now_ms,
            keys: None,
        })?;
        p.flush_if_due()?;
        Ok(o)
    })();
    outcome(result)
}

fn marker(p: &mut Partition, m: &EndTxnMarker, now_ms: i64) -> Result<(i64, bool), i16> {
    let written = outcome(p.write_marker(m, now_ms));
    p.flush_if_due().unwrap();
    written
}

/// What read_committed readers see: the LSO, the open transactions, the aborted ones.
fn txn_view(p: &Partition) -> (i64, Vec<(i64, i64)>, Vec<tally_log::AbortedTxn>) {
    (
        p.last_stable_offset(),
        p.producers().ongoing_txns().collect(),
        p.reader()
            .aborted_txns(p.log_start_offset(), p.high_watermark()),
    )
}

/// The table as a comparable value. The last append time is the one field replay cannot know
/// (it is the broker's clock at the append, not part of the log), so it is left out.
fn table(p: &Partition) -> Vec<ProducerStateEntry> {
    p.producers()
        .entries()
        .into_iter()
        .cloned()
        .map(|mut e| {
            e.last_append_ms = 0;
            e
        })
        .collect()
}

/// Every byte below the high watermark.
fn log_bytes(p: &Partition) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    while offset < p.high_watermark() {
        let read = p.read(offset, 1 << 20, true).unwrap();
        let mut at = 0;
        while at < read.records.len() {
            let h = BatchHeader::parse(&read.records[at..]).unwrap();
            offset = h.last_offset() + 1;
            at += h.size_in_bytes();
        }
        out.extend_from_slice(&read.records);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn replay_after_restarts_equals_the_live_run(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let (live_dir, restarted_dir) = (dir.path().join("live"), dir.path().join("restarted"));
        let (mut live, _) = Partition::open(&live_dir, config(), 0).unwrap();
        let mut restarted = Some(Partition::open(&restarted_dir, config(), 0).unwrap().0);
        let mut sent: Vec<Sent> = vec![Sent::default(); 3];
        let mut restarts = 0;
        for (i, op) in ops.into_iter().enumerate() {
            let now_ms = 1_000 + i as i64;
            let (pid, epoch, first, count) = match op {
                Op::Next { pid, count } => {
                    let s = &mut sent[pid as usize];
                    let first = s.next;
                    s.next = increment_sequence(first, count as i32);
                    s.batches.push((first, count));
                    (pid, s.epoch, first, count)
                }
                Op::Retry { pid, back } => {
                    let s = &sent[pid as usize];
                    let Some(&(first, count)) = s.batches.iter().rev().nth(back.min(s.batches.len().saturating_sub(1))) else {
                        continue;
                    };
                    (pid, s.epoch, first, count)
                }
                Op::Wild { pid, epoch_delta, seq, count } => {
                    let epoch = sent[pid as usize].epoch.saturating_add(epoch_delta).max(0);
                    (pid, epoch, seq, count)
                }
                Op::Bump { pid } => {
                    let s = &mut sent[pid as usize];
                    *s = Sent { epoch: s.epoch + 1, ..Sent::default() };
                    continue;
                }
                Op::Broker { count } => {
                    let a = broker_records(&mut live, count, now_ms);
                    let b = broker_records(restarted.as_mut().unwrap(), count, now_ms);
                    prop_assert_eq!(a, b);
                    continue;
                }
                Op::Marker { pid, commit, epoch_delta } => {
                    let m = EndTxnMarker {
                        producer_id: pid,
                        producer_epoch: sent[pid as usize].epoch.saturating_add(epoch_delta).max(0),
                        coordinator_epoch: 0,
                        result: TxnResult::from_committed(commit),
                    };
                    let a = marker(&mut live, &m, now_ms);
                    let b = marker(restarted.as_mut().unwrap(), &m, now_ms);
                    prop_assert_eq!(a, b);
                    continue;
                }
                Op::Txn { pid, count } => {
                    let s = &mut sent[pid as usize];
                    let mut spec = BatchSpec::new(pid, s.epoch, s.next, count);
                    spec.transactional = true;
                    s.batches.push((s.next, count));
                    s.next = increment_sequence(s.next, count as i32);
                    let bytes = spec.encode();
                    let a = verified_client_batch(&mut live, &bytes, now_ms);
                    let b = verified_client_batch(restarted.as_mut().unwrap(), &bytes, now_ms);
                    prop_assert_eq!(a, b);
                    continue;
                }
                Op::Restart { clean } => {
                    let mut p = restarted.take().unwrap();
                    if clean {
                        p.close().unwrap();
                    }
                    // Not closed: a crash that keeps what was written (the page cache).
                    drop(p);
                    restarted = Some(Partition::open(&restarted_dir, config(), now_ms).unwrap().0);
                    restarts += 1;
                    continue;
                }
            };
            let bytes = batch(pid, epoch, first, count);
            let a = outcome(live.append_client_batch(&bytes, now_ms));
            let b = outcome(restarted.as_mut().unwrap().append_client_batch(&bytes, now_ms));
            prop_assert_eq!(a, b, "answers differ for {:?} after {} restarts", (pid, epoch, first, count), restarts);
        }
        let restarted = restarted.unwrap();
        prop_assert_eq!(table(&live), table(&restarted));
        prop_assert_eq!(txn_view(&live), txn_view(&restarted));
        prop_assert_eq!(live.log_end_offset(), restarted.log_end_offset());
        prop_assert_eq!(log_bytes(&live), log_bytes(&restarted));
    }
}
