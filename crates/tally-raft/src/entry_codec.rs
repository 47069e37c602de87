//! Raft entries as the record batches the segment files hold, and back.
//!
//! A client's batch is stored as it came: only its base offset and partition leader epoch,
//! which its CRC does not cover, are set. openraft's blank and membership entries become
//! control batches of one record whose type is Tally's own (Kafka's readers skip control
//! types they do not know, and Fetch does not return these at all). Every entry's term is
//! its batch's partition leader epoch, so the log id of each batch is on disk with it.

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::EntryPayload;
use tally_protocol::record_batch::{set_base_offset, set_partition_leader_epoch};
use tally_protocol::{
    encode_control, parse_control, BatchHeader, ControlRecord, ATTRIBUTES_CONTROL,
    RECORD_BATCH_OVERHEAD,
};
use thiserror::Error;

use crate::type_config::{Entry, LogId, Membership, RaftBatch};

/// The control type of a new leader's blank entry (KRaft writes a LEADER_CHANGE record
/// where Raft writes a blank entry; ours carries nothing).
pub const CONTROL_TYPE_BLANK: i16 = 0x7a00;
/// The control type of a membership entry; its value is the membership as JSON.
pub const CONTROL_TYPE_MEMBERSHIP: i16 = 0x7a01;
/// The control type written in place of a client batch the leader's log refused as it wrote
/// it (see `leader_log.rs`); its value is the reason, in UTF-8. It stays a normal entry to
/// openraft, so its proposal is answered, as refused.
pub const CONTROL_TYPE_REFUSED: i16 = 0x7a02;
/// The control type of a log-start entry: its value is an offset (i64, big-endian) below which
/// every replica may delete its segments, once it has applied the entry (Kafka's
/// DeleteRecords, as a Raft entry; see `PartitionLeader::propose_log_start`).
pub const CONTROL_TYPE_LOG_START: i16 = 0x7a03;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("term {0} does not fit a Kafka leader epoch (i32)")]
    TermTooLarge(u64),
    #[error("batch at raft index {index}: {reason}")]
    BadBatch { index: u64, reason: String },
    #[error("membership entry: {0}")]
    Membership(#[from] serde_json::Error),
}

/// The bytes to append for `entry` at Kafka offset `base_offset`, as a patched header and the
/// rest (a client's bytes after the header are not copied). For control batches, `head` is
/// the whole batch and `tail` is empty.
pub struct EncodedEntry {
    pub head: Vec<u8>,
    pub tail: Bytes,
    pub header: BatchHeader,
}

pub fn encode_entry(entry: &Entry, base_offset: i64) -> Result<EncodedEntry, CodecError> {
    let term = entry.log_id.leader_id.term;
    let epoch = i32::try_from(term).map_err(|_| CodecError::TermTooLarge(term))?;
    let bad = |reason: String| CodecError::BadBatch {
        index: entry.log_id.index,
        reason,
    };
    let (mut head, tail) = match &entry.payload {
        EntryPayload::Normal(RaftBatch(batch)) => {
            if batch.len() < RECORD_BATCH_OVERHEAD {
                return Err(bad(format!("{} bytes is not a batch", batch.len())));
            }
            (
                batch[..RECORD_BATCH_OVERHEAD].to_vec(),
                batch.slice(RECORD_BATCH_OVERHEAD..),
            )
        }
        EntryPayload::Blank => (control(CONTROL_TYPE_BLANK, &[]), Bytes::new()),
        EntryPayload::Membership(m) => {
            let value = serde_json::to_vec(&m)?;
            (control(CONTROL_TYPE_MEMBERSHIP, &value), Bytes::new())
        }
    };
    set_base_offset(&mut head, base_offset);
    set_partition_leader_epoch(&mut head, epoch);
    let header = BatchHeader::parse(&head).map_err(|e| bad(e.to_string()))?;
    if header.size_in_bytes() != head.len() + tail.len() {
        return Err(bad(format!(
            "batch length says {} bytes, entry has {}",
            header.size_in_bytes(),
            head.len() + tail.len()
        )));
    }
    Ok(EncodedEntry { head, tail, header })
}

fn control(control_type: i16, value: &[u8]) -> Vec<u8> {
    let record = ControlRecord {
        attributes: ATTRIBUTES_CONTROL,
        producer_id: -1,
        producer_epoch: -1,
        control_type,
        value,
    };
    // No timestamp: every replica encodes the same entry to the same bytes.
    encode_control(&record, -1)
}

/// The control batch that stands for a refused client batch.
pub fn refused_batch(reason: &str) -> Bytes {
    Bytes::from(control(CONTROL_TYPE_REFUSED, reason.as_bytes()))
}

/// The batch of a log-start entry at `offset`.
pub fn log_start_batch(offset: i64) -> Bytes {
    Bytes::from(control(CONTROL_TYPE_LOG_START, &offset.to_be_bytes()))
}

/// The offset a log-start entry names, if `batch` is one.
pub fn log_start_of(header: &BatchHeader, batch: &[u8]) -> Option<i64> {
    if !header.is_control() {
        return None;
    }
    match parse_control(header, batch) {
        Ok((CONTROL_TYPE_LOG_START, value)) => value.try_into().ok().map(i64::from_be_bytes),
        _ => None,
    }
}

/// Whether a stored batch stands for a refused client batch.
pub fn is_refused(header: &BatchHeader, batch: &[u8]) -> bool {
    header.is_control() && matches!(parse_control(header, batch), Ok((CONTROL_TYPE_REFUSED, _)))
}

/// Whether a stored batch is one of Raft's own entries (blank, membership) or a refused
/// batch's stand-in, which Fetch must not return.
pub fn is_raft_entry(header: &BatchHeader, batch: &[u8]) -> bool {
    header.is_control()
        && matches!(
            parse_control(header, batch),
            Ok((
                CONTROL_TYPE_BLANK
                    | CONTROL_TYPE_MEMBERSHIP
                    | CONTROL_TYPE_REFUSED
                    | CONTROL_TYPE_LOG_START,
                _
            ))
        )
}

/// `records` (whole batches, as a log read returns them) without Raft's own entries. Copies
/// only when there is one to leave out, which is rare: one per term and membership change.
pub fn without_raft_entries(records: Bytes) -> Bytes {
    let mut kept: Option<Vec<u8>> = None;
    let mut at = 0;
    while at < records.len() {
        let Ok(header) = BatchHeader::parse(&records[at..]) else {
            break;
        };
        let end = (at + header.size_in_bytes()).min(records.len());
        let raft = is_raft_entry(&header, &records[at..end]);
        match (&mut kept, raft) {
            (None, true) => kept = Some(records[..at].to_vec()),
            (Some(out), false) => out.extend_from_slice(&records[at..end]),
            _ => {}
        }
        at = end;
    }
    match kept {
        Some(mut out) => {
            out.extend_from_slice(&records[at..]);
            Bytes::from(out)
        }
        None => records,
    }
}

/// The offset after the last batch in `records` (None when it holds no whole batch header).
pub fn next_offset(records: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut next = None;
    while at < records.len() {
        let Ok(header) = BatchHeader::parse(&records[at..]) else {
            break;
        };
        next = Some(header.last_offset() + 1);
        at += header.size_in_bytes();
    }
    next
}

/// The entry at raft `index` from the whole batch the log holds for it. A refused batch's
/// stand-in is a normal entry, so it reaches followers byte for byte.
pub fn decode_entry(index: u64, batch: Bytes) -> Result<Entry, CodecError> {
    let bad = |reason: String| CodecError::BadBatch { index, reason };
    let header = BatchHeader::parse_whole(&batch).map_err(|e| bad(e.to_string()))?;
    let term = u64::try_from(header.partition_leader_epoch)
        .map_err(|_| bad(format!("negative epoch {}", header.partition_leader_epoch)))?;
    let log_id = LogId::new_term_index(term, index);
    // Only Raft's own entries carry Tally's control types: a transaction marker (types 0
    // and 1) is a client-side entry like any batch.
    if header.is_control() {
        if let Ok((control_type, value)) = parse_control(&header, &batch) {
            match control_type {
                CONTROL_TYPE_BLANK => return Ok(Entry::new_blank(log_id)),
                CONTROL_TYPE_MEMBERSHIP => {
                    let membership: Membership = serde_json::from_slice(value)?;
                    return Ok(Entry::new_membership(log_id, membership));
                }
                _ => {}
            }
        }
    }
    Ok(Entry::new_normal(log_id, RaftBatch(batch)))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::impls::BasicNode;
    use openraft::Membership;
    use tally_testkit::BatchSpec;

    use super::*;

    fn whole(e: &EncodedEntry) -> Bytes {
        let mut v = e.head.clone();
        v.extend_from_slice(&e.tail);
        Bytes::from(v)
    }

    #[test]
    fn a_client_batch_keeps_its_bytes_and_gets_offset_and_epoch() {
        let original = BatchSpec::new(42, 3, 10, 5).encode();
        let entry = Entry::new_normal(LogId::new_term_index(7, 12), RaftBatch(original.clone()));
        let encoded = encode_entry(&entry, 1_000).unwrap();
        let bytes = whole(&encoded);
        let header = BatchHeader::parse_whole(&bytes).unwrap();
        header.verify_crc(&bytes).unwrap();
        assert_eq!(
            (header.base_offset, header.partition_leader_epoch),
            (1_000, 7)
        );
        assert_eq!(
            &bytes[21..],
            &original[21..],
            "everything under the CRC is untouched"
        );
        let back = decode_entry(12, bytes.clone()).unwrap();
        assert_eq!(back.log_id, LogId::new_term_index(7, 12));
        assert_eq!(back.payload, EntryPayload::Normal(RaftBatch(bytes)));
    }

    #[test]
    fn blank_and_membership_entries_round_trip_as_control_batches() {
        let voters: BTreeSet<u64> = [1, 2, 3].into();
        let nodes: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|id| (*id, BasicNode::new(format!("127.0.0.{id}:9193"))))
            .collect();
        let membership = Membership::new(vec![voters], nodes).unwrap();
        for entry in [
            Entry::new_blank(LogId::new_term_index(3, 1)),
            Entry::new_membership(LogId::new_term_index(3, 2), membership),
        ] {
            let encoded = encode_entry(&entry, 55).unwrap();
            assert!(encoded.tail.is_empty());
            let bytes = whole(&encoded);
            let header = BatchHeader::parse_whole(&bytes).unwrap();
            header.verify_crc(&bytes).unwrap();
            assert!(header.is_control());
            assert_eq!(header.base_offset, 55);
            // No producer and no timestamp: the producer table skips it, and every replica
            // writes the same bytes.
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.max_timestamp
                ),
                (-1, -1, -1)
            );
            let back = decode_entry(entry.log_id.index, bytes).unwrap();
            assert_eq!(back, entry);
        }
    }

    /// A batch of no records is its 61-byte header alone (Kafka keeps such batches for
    /// their producer state): it is a whole batch.
    #[test]
    fn a_read_without_rafts_entries_keeps_every_other_batch_in_order() {
        let blank =
            whole(&encode_entry(&Entry::new_blank(LogId::new_term_index(1, 0)), 0).unwrap());
        let data = |offset: i64| {
            let mut b = BatchSpec::new(3, 0, offset as i32, 1).encode().to_vec();
            tally_protocol::record_batch::set_base_offset(&mut b, offset);
            b
        };
        let marker = tally_protocol::encode_marker(
            &tally_protocol::EndTxnMarker {
                producer_id: 3,
                producer_epoch: 0,
                result: tally_protocol::TxnResult::Commit,
                coordinator_epoch: 0,
            },
            0,
        );
        let mut records = Vec::new();
        records.extend_from_slice(&data(0));
        records.extend_from_slice(&blank);
        records.extend_from_slice(&marker);
        records.extend_from_slice(&data(3));
        records.extend_from_slice(&blank);
        let kept = without_raft_entries(Bytes::from(records));
        let mut expected = data(0);
        expected.extend_from_slice(&marker);
        expected.extend_from_slice(&data(3));
        assert_eq!(&kept[..], &expected[..]);
        let only_data = Bytes::from(data(0));
        assert_eq!(without_raft_entries(only_data.clone()), only_data);
    }

    #[test]
    fn a_header_only_batch_is_an_entry() {
        let mut head = BatchSpec::new(42, 3, 10, 1).encode()[..RECORD_BATCH_OVERHEAD].to_vec();
        head[8..12].copy_from_slice(&((RECORD_BATCH_OVERHEAD - 12) as i32).to_be_bytes());
        let entry = Entry::new_normal(LogId::new_term_index(1, 1), RaftBatch(Bytes::from(head)));
        let encoded = encode_entry(&entry, 7).unwrap();
        assert_eq!(encoded.head.len(), RECORD_BATCH_OVERHEAD);
        assert!(encoded.tail.is_empty());
        assert_eq!(encoded.header.base_offset, 7);
    }

    #[test]
    fn a_term_past_i32_and_a_short_batch_are_refused() {
        let blank = Entry::new_blank(LogId::new_term_index(u64::from(u32::MAX), 1));
        assert!(matches!(
            encode_entry(&blank, 0),
            Err(CodecError::TermTooLarge(_))
        ));
        let short = Entry::new_normal(
            LogId::new_term_index(1, 1),
            RaftBatch(Bytes::from_static(b"abc")),
        );
        assert!(matches!(
            encode_entry(&short, 0),
            Err(CodecError::BadBatch { .. })
        ));
    }
}
