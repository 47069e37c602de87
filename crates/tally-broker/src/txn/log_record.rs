//! Records of `__transaction_state`: key = the transactional id, value = its metadata, a
//! tombstone (no value) when an expired id is forgotten. The latest record of a key is the
//! truth. The layout follows Kafka's `TransactionLogKey` v0 and `TransactionLogValue` v0
//! (big-endian, i16-length strings), with the previous producer id and last epoch appended;
//! Kafka's tools do not read this topic, so byte compatibility is not promised.

use std::collections::BTreeSet;

use super::metadata::{TxnMetadata, TxnState};

const KEY_VERSION: i16 = 0;

/// The longest transactional id (and topic name) a record can carry: an i16 length.
pub const MAX_ID_BYTES: usize = i16::MAX as usize;
/// Version 1 appends the next producer id and the client's transaction version; version 0
/// records (written before transaction version 2) still load.
const VALUE_VERSION: i16 = 1;

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + transactional_id.len());
    b.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_str(&mut b, transactional_id);
    b
}

pub fn encode_value(m: &TxnMetadata) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&VALUE_VERSION.to_be_bytes());
    b.extend_from_slice(&m.producer_id.to_be_bytes());
    b.extend_from_slice(&m.producer_epoch.to_be_bytes());
    b.extend_from_slice(&m.timeout_ms.to_be_bytes());
    b.push(m.state.code() as u8);
    b.extend_from_slice(&(m.partitions.len() as i32).to_be_bytes());
    for (topic, partition) in &m.partitions {
        put_str(&mut b, topic);
        b.extend_from_slice(&partition.to_be_bytes());
    }
    b.extend_from_slice(&m.last_update_ms.to_be_bytes());
    b.extend_from_slice(&m.txn_start_ms.to_be_bytes());
    b.extend_from_slice(&m.prev_producer_id.to_be_bytes());
    b.extend_from_slice(&m.last_producer_epoch.to_be_bytes());
    b.extend_from_slice(&m.next_producer_id.to_be_bytes());
    b.extend_from_slice(&m.client_txn_version.to_be_bytes());
    b
}

/// The transactional id of a key, or `None` if it is not a key of this topic.
pub fn decode_key(key: &[u8]) -> Option<String> {
    let mut r = Reader { b: key, at: 0 };
    (r.i16()? == KEY_VERSION).then_some(())?;
    let id = r.string()?;
    r.done().then_some(id)
}

pub fn decode_value(transactional_id: &str, value: &[u8]) -> Option<TxnMetadata> {
    let mut r = Reader { b: value, at: 0 };
    let version = r.i16()?;
    (0..=VALUE_VERSION).contains(&version).then_some(())?;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_code(r.u8()? as i8)?;
    let count = r.i32()?;
    let mut partitions = BTreeSet::new();
    for _ in 0..count.max(0) {
        let topic = r.string()?;
        partitions.insert((topic, r.i32()?));
    }
    let mut m = TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms: r.i64()?,
        txn_start_ms: r.i64()?,
        prev_producer_id: r.i64()?,
        last_producer_epoch: r.i16()?,
        next_producer_id: -1,
        client_txn_version: 0,
    };
    if version >= 1 {
        m.next_producer_id = r.i64()?;
        m.client_txn_version = r.i16()?;
    }
    r.done().then_some(m)
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    // Callers refuse longer strings (InitProducerId checks the id; topic names are short).
    let len = i16::try_from(s.len()).expect("a string of at most i16::MAX bytes");
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn done(&self) -> bool {
        self.at == self.b.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut m = TxnMetadata::new("orders-1", 42, 60_000, 1_000);
        m.producer_epoch = 3;
        m.last_producer_epoch = 2;
        m.prev_producer_id = 41;
        m.state = TxnState::PrepareCommit;
        m.partitions.insert(("a".into(), 0));
        m.partitions.insert(("b".into(), 7));
        m.txn_start_ms = 900;
        m.next_producer_id = 43;
        m.client_txn_version = 2;
        let key = encode_key(&m.transactional_id);
        let id = decode_key(&key).unwrap();
        assert_eq!(decode_value(&id, &encode_value(&m)), Some(m));
        assert_eq!(decode_key(&key[..key.len() - 1]), None);
        let value = encode_value(&TxnMetadata::new("x", 1, 1, 1));
        assert_eq!(decode_value("x", &value[..value.len() - 1]), None);
    }

    #[test]
    fn version_0_records_still_load() {
        let mut m = TxnMetadata::new("old", 5, 60_000, 1);
        m.producer_epoch = 2;
        let mut v0 = encode_value(&m);
        v0.truncate(v0.len() - 10);
        v0[..2].copy_from_slice(&0i16.to_be_bytes());
        assert_eq!(decode_value("old", &v0), Some(m));
        v0[..2].copy_from_slice(&2i16.to_be_bytes());
        assert_eq!(
            decode_value("old", &v0),
            None,
            "an unknown version is refused"
        );
    }
}
