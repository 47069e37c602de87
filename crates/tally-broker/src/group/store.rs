//! Durable group state: committed offsets and group metadata written as keyed records to the
//! internal topic `__consumer_offsets` (one partition), through the same partition code as
//! data. The latest record per key wins; a record without value deletes its key. On start the
//! whole log is read back. This file is the record codec; `offsets_log.rs` writes and
//! compacts the log.
//!
//! Record keys start with a type byte: 3 = offset (group, topic, partition), 4 = group
//! metadata (group). Strings are i32-length UTF-8, so every string the wire allows (a group
//! id, member id or metadata longer than 32,767 bytes in the flexible versions) is stored
//! intact. Types 1 and 2, written before, had i16 lengths; they are still read, and every
//! record is written again in the current form (the key of a record read back is re-encoded,
//! so both forms of one key are the same key).

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

const OFFSET_KEY_V0: u8 = 1;
const GROUP_KEY_V0: u8 = 2;
const OFFSET_KEY: u8 = 3;
const GROUP_KEY: u8 = 4;

/// A length as the format writes it. Every string and byte field comes out of a request
/// frame, which `socket.request.max.bytes` bounds far below `i32::MAX`.
fn put_len(b: &mut BytesMut, n: usize) {
    let n = i32::try_from(n).expect("a field of a request is shorter than i32::MAX");
    b.put_i32(n);
}

fn put_str(b: &mut BytesMut, s: &str) {
    put_len(b, s.len());
    b.put_slice(s.as_bytes());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i32(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    put_len(b, v.len());
    b.put_slice(v);
}

/// Reads a record; `wide` is the current form (i32 string lengths), otherwise the first
/// form (i16).
struct Reader<'a> {
    b: &'a [u8],
    wide: bool,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
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
    fn opt_str(&mut self) -> Option<Option<String>> {
        let n = if self.wide {
            self.i32()?
        } else {
            i32::from(self.i16()?)
        };
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
                b.put_u8(OFFSET_KEY);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            StoreRecord::Group { group, .. } => {
                b.put_u8(GROUP_KEY);
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
        let kind = *key.first()?;
        let wide = matches!(kind, OFFSET_KEY | GROUP_KEY);
        let mut k = Reader { b: &key[1..], wide };
        let reader = |v| Reader { b: v, wide };
        match kind {
            OFFSET_KEY_V0 | OFFSET_KEY => {
                let group = k.str()?;
                let topic = k.str()?;
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = reader(v);
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
            GROUP_KEY_V0 | GROUP_KEY => {
                let group = k.str()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = reader(v);
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
        assert!(StoreRecord::decode(&[3, 0, 0, 0, 5, b'a'], None).is_none());
        assert!(StoreRecord::decode(&[], None).is_none());
    }

    #[test]
    fn strings_longer_than_an_i16_are_stored_intact() {
        for len in [32_767, 32_768, 65_536, 1 << 20] {
            let record = StoreRecord::Offset {
                group: "g".repeat(len),
                topic: "t".into(),
                partition: 0,
                value: Some(CommittedOffset {
                    offset: 1,
                    leader_epoch: -1,
                    metadata: Some("m".repeat(len)),
                    commit_timestamp_ms: 2,
                }),
            };
            let back = StoreRecord::decode(&record.key(), record.value().as_deref()).unwrap();
            assert_eq!(back, record, "length {len}");
        }
    }

    #[test]
    fn records_of_the_first_form_still_load() {
        // Offset key: type 1, group "g" and topic "t" with i16 lengths, partition 3; value
        // with an i16-length metadata "m".
        let key = [1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3];
        let mut value = vec![0, 0, 0, 0, 0, 0, 0, 42, 0xff, 0xff, 0xff, 0xff, 0, 1, b'm'];
        value.extend_from_slice(&7i64.to_be_bytes());
        let record = StoreRecord::decode(&key, Some(&value)).unwrap();
        let expected = StoreRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(CommittedOffset {
                offset: 42,
                leader_epoch: -1,
                metadata: Some("m".into()),
                commit_timestamp_ms: 7,
            }),
        };
        assert_eq!(record, expected);
        assert_eq!(record.key()[0], 3, "written again in the current form");
        // A group record with no members.
        let key = [2, 0, 1, b'g'];
        let mut value = vec![0, 8];
        value.extend_from_slice(b"consumer");
        value.extend_from_slice(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let StoreRecord::Group {
            group,
            value: Some(g),
        } = StoreRecord::decode(&key, Some(&value)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (group.as_str(), g.protocol_type.as_str(), g.generation),
            ("g", "consumer", 5)
        );
    }
}
