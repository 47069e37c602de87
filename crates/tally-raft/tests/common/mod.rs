//! Helpers shared by the partition-group tests.
#![allow(dead_code)]

use tally_log::LogReader;
use tally_protocol::BatchHeader;

/// Every byte of the log below `end`, batch by batch.
pub fn bytes_below(reader: &LogReader, end: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0;
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
