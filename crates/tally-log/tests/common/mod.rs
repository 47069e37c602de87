//! Helpers shared by the log's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tally_log::{Log, LogConfig};
use tally_protocol::record_batch::set_base_offset;
use tally_protocol::BatchHeader;
use tally_testkit::BatchSpec;

pub fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Appends a batch of `count` records with timestamps from `ts`; returns its base offset.
pub fn append(log: &mut Log, count: usize, ts: i64) -> i64 {
    let mut spec = BatchSpec::new(-1, -1, -1, count);
    spec.timestamp_ms = ts;
    let mut bytes = spec.encode().to_vec();
    let base = log.log_end_offset();
    set_base_offset(&mut bytes, base);
    let header = BatchHeader::parse_whole(&bytes).unwrap();
    if log.should_roll(bytes.len(), header.last_offset(), ts) {
        log.roll().unwrap();
    }
    log.append(&bytes, &header, ts).unwrap();
    base
}

/// Every batch header in `records`, checked whole.
pub fn headers(records: &Bytes) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut rest = &records[..];
    while !rest.is_empty() {
        let h = BatchHeader::parse_whole(rest).unwrap();
        rest = &rest[h.size_in_bytes()..];
        out.push(h);
    }
    out
}

pub fn read_all(log: &Log) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log
            .read(offset, 1 << 20, log.log_end_offset(), true)
            .unwrap();
        let hs = headers(&r.records);
        assert!(!hs.is_empty(), "read at {offset} returned nothing");
        offset = hs.last().unwrap().last_offset() + 1;
        out.extend(hs);
    }
    out
}

pub fn active_segment_path(dir: &Path, log: &Log) -> PathBuf {
    let base = *log.segment_base_offsets().last().unwrap();
    dir.join(tally_log::offset_file_name(base, "log"))
}

/// The path of the segment file (or index, by `suffix`) with base offset `base`.
pub fn segment_file(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(tally_log::offset_file_name(base, suffix))
}

/// The bytes of a batch of `count` records at `base_offset`, timestamps from `ts`.
pub fn batch_at(base_offset: i64, count: usize, ts: i64) -> Vec<u8> {
    let mut spec = BatchSpec::new(-1, -1, -1, count);
    spec.timestamp_ms = ts;
    let mut bytes = spec.encode().to_vec();
    set_base_offset(&mut bytes, base_offset);
    bytes
}
