//! The idempotency-key index after a restart is the index before, through the real
//! `Partition::open` on real files: random keyed batches from several producers (some
//! transactional, in every codec, some retried), markers, the clock moving past the window,
//! and restarts (a crash that keeps what was written, or a clean close) drive two partitions
//! with the same inputs: one never restarts, the other restarts whenever the input says so.
//! Answers, stored records and the live key index must be the same for both, and the stored
//! keys must be what a model of "first copy wins within the window" says.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use proptest::prelude::*;
use tally_log::LogConfig;
use tally_partition::{
    validate_client_batch, Decision, Entry, EntryOrigin, IdempotencyConfig, Partition,
    PartitionConfig,
};
use tally_protocol::{BatchHeader, EndTxnMarker, KeySource, TxnResult};
use tally_testkit::batch::BatchSpec;

const WINDOW_MS: i64 = 50;
const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn config() -> PartitionConfig {
    PartitionConfig {
        log: LogConfig {
            // Small segments: rolls (with key snapshots) happen within a run.
            segment_bytes: 1_500,
            index_interval_bytes: 256,
            ..LogConfig::default()
        },
        idempotency: Some(IdempotencyConfig {
            source: KeySource::Header("id".into()),
            window_ms: WINDOW_MS,
            max_keys: 1_000,
        }),
        ..PartitionConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// The producer's next batch, with these keys (0 = no key).
    Send {
        pid: i64,
        keys: Vec<u8>,
        codec: usize,
        txn: bool,
    },
    /// The producer resends its last batch.
    Retry {
        pid: i64,
    },
    /// A marker ends the producer's transaction.
    End {
        pid: i64,
        commit: bool,
    },
    /// The clock moves on.
    Wait {
        ms: i64,
    },
    Restart {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0i64..3, proptest::collection::vec(0u8..12, 1..5), 0usize..5, proptest::bool::weighted(0.3))
            .prop_map(|(pid, keys, codec, txn)| Op::Send { pid, keys, codec, txn }),
        2 => (0i64..3).prop_map(|pid| Op::Retry { pid }),
        2 => (0i64..3, any::<bool>()).prop_map(|(pid, commit)| Op::End { pid, commit }),
        1 => (1i64..40).prop_map(|ms| Op::Wait { ms }),
        2 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

#[derive(Default, Clone)]
struct Producer {
    next: i32,
    last: Option<Bytes>,
    in_txn: bool,
}

fn encode(pid: i64, seq: i32, keys: &[u8], codec: usize, txn: bool, now_ms: i64) -> Bytes {
    let mut spec = BatchSpec::new(pid, 0, seq, keys.len());
    spec.compression = CODECS[codec];
    spec.transactional = txn;
    spec.timestamp_ms = now_ms;
    let mut encoded = spec.encode();
    // BatchSpec has no headers: re-encode with an `id` header per keyed record.
    let mut buf = encoded.clone();
    let mut set = RecordBatchDecoder::decode(&mut buf).unwrap();
    for (r, k) in set.records.iter_mut().zip(keys) {
        if *k > 0 {
            r.headers.insert(
                kafka_protocol::protocol::StrBytes::from_static_str("id"),
                Some(Bytes::from(format!("key-{k}"))),
            );
        }
    }
    let mut out = bytes::BytesMut::new();
    kafka_protocol::records::RecordBatchEncoder::encode(
        &mut out,
        &set.records,
        &kafka_protocol::records::RecordEncodeOptions {
            version: 2,
            compression: CODECS[codec],
        },
    )
    .unwrap();
    encoded = out.freeze();
    encoded
}

/// Check, decide, filter, apply, flush: the writer's steps.
fn append(p: &mut Partition, bytes: &[u8], now_ms: i64) -> Result<(i64, bool), i16> {
    let result = (|| -> Result<tally_partition::AppendOutcome, tally_partition::AppendError> {
        let header = validate_client_batch(bytes, usize::MAX)?;
        if let Decision::Duplicate(o) = p.decide(&header, true)? {
            return Ok(o);
        }
        let filtered = p.filter_keys(&header, bytes, now_ms)?.unwrap();
        let (h, b) = filtered.batch(&header, bytes);
        let o = p.apply(Entry {
            origin: EntryOrigin::Client,
            header: h,
            bytes: b,
            append_time_ms: now_ms,
            keys: Some(&filtered),
        })?;
        p.flush_if_due()?;
        Ok(o)
    })();
    result
        .map(|o| (o.base_offset, o.duplicate))
        .map_err(|e| e.error_code().code())
}

fn end(p: &mut Partition, pid: i64, commit: bool, now_ms: i64) -> Result<i64, i16> {
    let m = EndTxnMarker {
        producer_id: pid,
        producer_epoch: 0,
        coordinator_epoch: 0,
        result: if commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    };
    let r = p.write_marker(&m, now_ms).map(|o| o.base_offset);
    p.flush_if_due().unwrap();
    r.map_err(|e| e.error_code().code())
}

/// Stored data records: (offset, key header, producer id, transactional).
fn stored(p: &Partition) -> Vec<(i64, Option<String>, i64, bool)> {
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    while offset < p.high_watermark() {
        let mut buf = p.read(offset, 1 << 20, true).unwrap().records;
        while !buf.is_empty() {
            let h = BatchHeader::parse(&buf).unwrap();
            offset = h.last_offset() + 1;
            let mut one = buf.split_to(h.size_in_bytes());
            if h.is_control() {
                continue;
            }
            for r in RecordBatchDecoder::decode(&mut one).unwrap().records {
                let key = r
                    .headers
                    .iter()
                    .find(|(k, _)| k.as_str() == "id")
                    .and_then(|(_, v)| v.clone())
                    .map(|v| String::from_utf8(v.to_vec()).unwrap());
                out.push((r.offset, key, h.producer_id, h.is_transactional()));
            }
        }
    }
    out
}

type Live = Vec<(tally_partition::IdempotencyKey, tally_partition::StoredKey)>;

fn live(p: &Partition, now_ms: i64) -> Live {
    p.key_index()
        .unwrap()
        .live_entries(now_ms, p.log_start_offset())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn the_key_index_after_restarts_equals_the_live_run(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (a_dir, b_dir) = (dir.path().join("live"), dir.path().join("restarted"));
        let mut now_ms = 1_000;
        let (mut a, _) = Partition::open(&a_dir, config(), now_ms).unwrap();
        let mut b = Some(Partition::open(&b_dir, config(), now_ms).unwrap().0);
        let mut producers: Vec<Producer> = vec![Producer::default(); 3];
        let mut model = Model::default();
        for op in ops {
            // Ops 10 ms apart, and each batch appended at its max timestamp (now + records - 1):
            // a batch replayed after a crash then gets the time live apply gave it.
            now_ms += 10;
            match op {
                Op::Send { pid, keys, codec, txn } => {
                    let p = &mut producers[pid as usize];
                    let txn = txn || p.in_txn;
                    let bytes = encode(pid, p.next, &keys, codec, txn, now_ms);
                    p.next += keys.len() as i32;
                    p.last = Some(bytes.clone());
                    p.in_txn = txn;
                    let at = now_ms + keys.len() as i64 - 1;
                    let x = append(&mut a, &bytes, at);
                    let y = append(b.as_mut().unwrap(), &bytes, at);
                    prop_assert_eq!(x, y);
                    prop_assert_eq!(x, Ok((model.next_offset, false)));
                    model.send(pid, &keys, txn, at);
                }
                Op::Retry { pid } => {
                    let Some(bytes) = producers[pid as usize].last.clone() else { continue };
                    let x = append(&mut a, &bytes, now_ms);
                    let y = append(b.as_mut().unwrap(), &bytes, now_ms);
                    prop_assert_eq!(x, y);
                    prop_assert!(x.is_ok_and(|(_, dup)| dup), "a retry is answered as one");
                }
                Op::End { pid, commit } => {
                    if !producers[pid as usize].in_txn { continue; }
                    producers[pid as usize].in_txn = false;
                    let x = end(&mut a, pid, commit, now_ms);
                    let y = end(b.as_mut().unwrap(), pid, commit, now_ms);
                    prop_assert_eq!(x, y);
                    prop_assert_eq!(x, Ok(model.next_offset));
                    model.end(pid, commit);
                }
                Op::Wait { ms } => now_ms += ms,
                Op::Restart { clean } => {
                    let mut p = b.take().unwrap();
                    if clean { p.close().unwrap(); }
                    drop(p);
                    b = Some(Partition::open(&b_dir, config(), now_ms).unwrap().0);
                }
            }
            let b_ref = b.as_ref().unwrap();
            prop_assert_eq!(live(&a, now_ms), live(b_ref, now_ms));
            prop_assert_eq!(stored(&a), stored(b_ref));
            prop_assert_eq!(&stored(&a), &model.records);
        }
    }
}

/// "First copy wins within the window": the records a partition should hold.
#[derive(Default)]
struct Model {
    next_offset: i64,
    /// key -> the time of its stored copy.
    stored: HashMap<u8, i64>,
    staged: HashMap<i64, Vec<(u8, i64)>>,
    records: Vec<(i64, Option<String>, i64, bool)>,
}

impl Model {
    /// A batch appended at broker time `now_ms`.
    fn send(&mut self, pid: i64, keys: &[u8], txn: bool, now_ms: i64) {
        let time = now_ms;
        let mut seen = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let offset = self.next_offset + i as i64;
            if *k == 0 {
                self.records.push((offset, None, pid, txn));
                continue;
            }
            let stored = self.stored.get(k).is_some_and(|t| now_ms - t <= WINDOW_MS);
            let staged = txn
                && self
                    .staged
                    .get(&pid)
                    .is_some_and(|s| s.iter().any(|(x, _)| x == k));
            if stored || staged || seen.contains(k) {
                continue;
            }
            seen.push(*k);
            self.records
                .push((offset, Some(format!("key-{k}")), pid, txn));
            if txn {
                self.staged.entry(pid).or_default().push((*k, time));
            } else {
                self.stored.insert(*k, time);
            }
        }
        self.next_offset += keys.len() as i64;
    }

    fn end(&mut self, pid: i64, commit: bool) {
        self.next_offset += 1;
        for (k, t) in self.staged.remove(&pid).unwrap_or_default() {
            if commit {
                self.stored.insert(k, t);
            }
        }
    }
}
