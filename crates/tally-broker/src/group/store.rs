//! Durable group state: committed offsets and group metadata written as keyed records to the
//! internal topic `__consumer_offsets` (one partition), through the same partition code as
//! data. The latest record per key wins; a record without value deletes its key. On start the
//! whole log is read back. When the log holds far more records than live keys, the live state
//! is written again at the end and the segments before it are dropped (compaction without a
//! cleaner: there is a single writer).
//!
//! Record keys start with a type byte: 1 = offset (group, topic, partition), 2 = group
//! metadata (group). Strings are i16-length UTF-8, as on the wire.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tally_partition::AppendError;
use tally_protocol::record_batch::batch_size_at;

use crate::partition_handle::PartitionHandle;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// A member as stored with its group (enough to resume a stable group after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<StoredMember>,
}

/// One change to the stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        value: Option<StoredGroup>,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap()))
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        Some(Some(
            String::from_utf8(self.take(n as usize)?.to_vec()).ok()?,
        ))
    }
    fn str(&mut self) -> Option<String> {
        self.opt_str()?
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.i32()?;
        (n >= 0).then_some(())?;
        Some(Bytes::copy_from_slice(self.take(n as usize)?))
    }
}

impl StoreRecord {
    pub fn key(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            StoreRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                b.put_u8(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            StoreRecord::Group { group, .. } => {
                b.put_u8(2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    fn value(&self) -> Option<Bytes> {
        let mut b = BytesMut::new();
        match self {
            StoreRecord::Offset { value, .. } => {
                let v = value.as_ref()?;
                b.put_i64(v.offset);
                b.put_i32(v.leader_epoch);
                put_opt_str(&mut b, v.metadata.as_deref());
                b.put_i64(v.commit_timestamp_ms);
            }
            StoreRecord::Group { value, .. } => {
                let g = value.as_ref()?;
                put_str(&mut b, &g.protocol_type);
                b.put_i32(g.generation);
                put_opt_str(&mut b, g.protocol.as_deref());
                put_opt_str(&mut b, g.leader.as_deref());
                b.put_i32(g.members.len() as i32);
                for m in &g.members {
                    put_str(&mut b, &m.member_id);
                    put_opt_str(&mut b, m.group_instance_id.as_deref());
                    put_str(&mut b, &m.client_id);
                    put_str(&mut b, &m.client_host);
                    b.put_i32(m.rebalance_timeout_ms);
                    b.put_i32(m.session_timeout_ms);
                    put_bytes(&mut b, &m.subscription);
                    put_bytes(&mut b, &m.assignment);
                }
            }
        }
        Some(b.freeze())
    }

    fn decode(key: &[u8], value: Option<&[u8]>) -> Option<StoreRecord> {
        let mut k = Reader(key);
        match k.u8()? {
            1 => {
                let group = k.str()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        Some(CommittedOffset {
                            offset: r.i64()?,
                            leader_epoch: r.i32()?,
                            metadata: r.opt_str()?,
                            commit_timestamp_ms: r.i64()?,
                        })
                    }
                };
                Some(StoreRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = k.str()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader(v);
                        let protocol_type = r.str()?;
                        let generation = r.i32()?;
                        let protocol = r.opt_str()?;
                        let leader = r.opt_str()?;
                        let n = r.i32()?;
                        let mut members = Vec::new();
                        for _ in 0..n.max(0) {
                            members.push(StoredMember {
                                member_id: r.str()?,
                                group_instance_id: r.opt_str()?,
                                client_id: r.str()?,
                                client_host: r.str()?,
                                rebalance_timeout_ms: r.i32()?,
                                session_timeout_ms: r.i32()?,
                                subscription: r.bytes()?,
                                assignment: r.bytes()?,
                            });
                        }
                        Some(StoredGroup {
                            protocol_type,
                            generation,
                            protocol,
                            leader,
                            members,
                        })
                    }
                };
                Some(StoreRecord::Group { group, value })
            }
            _ => None,
        }
    }
}

/// The internal partition, and how much of it is still live.
pub struct GroupStore {
    partition: Arc<PartitionHandle>,
    /// Records appended since the log was last compacted (or read).
    records_in_log: u64,
}

/// Compact when the log holds this many times more records than there are live keys.
const COMPACTION_RATIO: u64 = 4;
const COMPACTION_MIN_RECORDS: u64 = 10_000;

impl GroupStore {
    pub fn new(partition: Arc<PartitionHandle>) -> Self {
        GroupStore {
            partition,
            records_in_log: 0,
        }
    }

    /// Every record in the log, oldest first.
    pub fn load(&mut self) -> Result<Vec<StoreRecord>, String> {
        let p = self.partition.lock();
        let mut offset = p.log_start_offset();
        let end = p.log_end_offset();
        let mut out = Vec::new();
        while offset < end {
            let read = p.read(offset, 4 << 20, true).map_err(|e| e.to_string())?;
            if read.records.is_empty() {
                break;
            }
            let mut at = 0;
            while at < read.records.len() {
                let Some(size) = batch_size_at(&read.records[at..]) else {
                    break;
                };
                let mut batch = read.records.slice(at..at + size as usize);
                at += size as usize;
                let set = RecordBatchDecoder::decode(&mut batch)
                    .map_err(|e| format!("unreadable group record batch: {e}"))?;
                for r in set.records {
                    offset = r.offset + 1;
                    if let Some(key) = &r.key {
                        if let Some(record) = StoreRecord::decode(key, r.value.as_deref()) {
                            out.push(record);
                        }
                    }
                }
            }
        }
        self.records_in_log = out.len() as u64;
        Ok(out)
    }

    /// Appends records durably (as far as the log's flush policy makes anything durable).
    pub fn write(&mut self, records: &[StoreRecord], now_ms: i64) -> Result<(), AppendError> {
        if records.is_empty() {
            return Ok(());
        }
        let encoded: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: now_ms,
                key: Some(r.key()),
                value: r.value(),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &encoded,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
        let mut bytes = buf.to_vec();
        self.partition
            .lock()
            .append_client_batch(&mut bytes, now_ms)?;
        self.records_in_log += records.len() as u64;
        Ok(())
    }

    /// Whether the log is worth compacting given `live` keys.
    pub fn should_compact(&self, live: u64) -> bool {
        self.records_in_log > COMPACTION_MIN_RECORDS
            && self.records_in_log > live.max(1) * COMPACTION_RATIO
    }

    /// Writes the live state at the end of a fresh segment and drops every segment before it.
    pub fn compact(&mut self, live: &[StoreRecord], now_ms: i64) -> Result<(), AppendError> {
        let start = self.partition.lock().start_new_segment()?;
        for chunk in live.chunks(1000) {
            self.write(chunk, now_ms)?;
        }
        self.partition.lock().delete_segments_before(start)?;
        self.records_in_log = live.len() as u64;
        Ok(())
    }
}

/// Latest value per key, for building the live state from a record sequence.
pub fn latest(records: Vec<StoreRecord>) -> BTreeMap<Vec<u8>, StoreRecord> {
    let mut map = BTreeMap::new();
    for r in records {
        map.insert(r.key().to_vec(), r);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let offset = StoreRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(CommittedOffset {
                offset: 42,
                leader_epoch: 0,
                metadata: Some("m".into()),
                commit_timestamp_ms: 7,
            }),
        };
        let group = StoreRecord::Group {
            group: "g".into(),
            value: Some(StoredGroup {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: Some("a".into()),
                members: vec![StoredMember {
                    member_id: "a".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 1000,
                    session_timeout_ms: 2000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        };
        for r in [
            offset,
            group,
            StoreRecord::Group {
                group: "x".into(),
                value: None,
            },
        ] {
            let back = StoreRecord::decode(&r.key(), r.value().as_deref()).unwrap();
            assert_eq!(back, r);
        }
        assert!(StoreRecord::decode(&[9, 0], None).is_none());
        assert!(StoreRecord::decode(&[1, 0, 5, b'a'], None).is_none());
    }
}
