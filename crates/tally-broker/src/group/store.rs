//! Durable group state: committed offsets and group metadata written as keyed records to the
//! internal topic `__consumer_offsets` (one partition), through the same partition code as
//! data. The latest record per key wins; a record without value deletes its key. On start the
//! whole log is read back. This file is the record codec; `offsets_log.rs` writes and
//! compacts the log.
//!
//! Record keys start with a type byte: 1 = offset (group, topic, partition), 2 = group
//! metadata (group). Strings are i16-length UTF-8, as on the wire.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

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
    /// False for a deletion (a record without value).
    pub fn has_value(&self) -> bool {
        match self {
            StoreRecord::Offset { value, .. } => value.is_some(),
            StoreRecord::Group { value, .. } => value.is_some(),
        }
    }

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

    pub(crate) fn value(&self) -> Option<Bytes> {
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

    pub(crate) fn decode(key: &[u8], value: Option<&[u8]>) -> Option<StoreRecord> {
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
