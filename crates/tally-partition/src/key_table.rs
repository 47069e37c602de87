//! The stored keys of a [`crate::KeyIndex`]: the keys in log order in a ring, and a hash table
//! ([`PositionTable`]) from each key's hash to its position in the ring.
//!
//! Why this shape: the index forgets its oldest key for each key it stores once it is full.
//! Forgetting is popping the ring's front (sequential memory, read ahead) and removing that
//! key's slot, whose line was asked for while the entry was still a few pops ahead. Storing is
//! pushing at the back, and the ring is sized to the bound so that the back is the slot just
//! popped. So each stored key costs about one table line, fetched ahead, instead of the
//! several cold misses (and stalled stores) of a general-purpose table.
//!
//! A key stored again (after its window) gets a new entry at the ring's back; its slot moves
//! there, and the old entry is kept in the ring as stale (no key) until it reaches the front.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use crate::idempotency_key::IdempotencyKey;
use crate::key_index::StoredKey;
use crate::position_table::PositionTable;
use crate::prefetch::prefetch;

/// How far ahead of the front the ring is read ahead, in entries (cache lines).
const PREFETCH_AHEAD: usize = 32;
/// How far ahead of the front the table slot of an entry is read ahead (less than
/// `PREFETCH_AHEAD`, so the entry that names the slot has arrived).
const PREFETCH_SLOT_AHEAD: usize = 8;
/// Entries the ring holds beyond `max_keys` before it doubles (room for stale entries).
const RING_SLACK: usize = 256;

/// 64 bytes, aligned: one cache line (unaligned, most entries would straddle two).
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Entry {
    /// `None` once the key was stored again (the newer entry is the live one).
    key: Option<IdempotencyKey>,
    stored: StoredKey,
    hash: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct KeyTable {
    // Keys come from clients: a randomly seeded hasher, so chosen collisions do not pile up
    // (foldhash: hashbrown's default, a fraction of SipHash's cost).
    hasher: foldhash::fast::RandomState,
    table: PositionTable,
    ring: VecDeque<Entry>,
    /// The position of `ring[0]`.
    front: u64,
    /// Entries of `ring` whose key was stored again.
    stale: usize,
    /// What the ring is sized for at most (0: unbounded doubling).
    max_keys: usize,
}

impl KeyTable {
    /// Keys remembered.
    pub(crate) fn len(&self) -> usize {
        self.ring.len() - self.stale
    }

    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Starts reading what a lookup or insert of `hash` reads first.
    pub(crate) fn prefetch(&self, hash: u64) {
        self.table.prefetch(hash);
    }

    /// Sets the number of keys the ring is sized for at most (`idempotency.window.max.keys`).
    pub(crate) fn set_max_keys(&mut self, max_keys: usize) {
        self.max_keys = max_keys;
    }

    /// The ring entry at `position` (`None` when the position is not in the ring, which a
    /// table slot never names: every popped live entry's slot is removed).
    fn entry(ring: &VecDeque<Entry>, front: u64, position: u64) -> Option<&Entry> {
        ring.get(usize::try_from(position.checked_sub(front)?).ok()?)
    }

    fn holds(ring: &VecDeque<Entry>, front: u64, position: u64, key: &[u8]) -> bool {
        Self::entry(ring, front, position).is_some_and(|e| e.key.as_deref() == Some(key))
    }

    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<StoredKey> {
        let (ring, front) = (&self.ring, self.front);
        let position = self
            .table
            .find(hash, |p| Self::holds(ring, front, p, key))?;
        Self::entry(ring, front, position).map(|e| e.stored)
    }

    /// Grows the ring when it is full: doubling, but to no more than the bound and a little
    /// slack. Why: a full index pops its front for each key it pushes at the back; when the
    /// ring is about that size, the back is the slot popped a moment ago, still in cache,
    /// instead of one untouched for megabytes.
    fn reserve_one(&mut self) {
        let len = self.ring.len();
        if len < self.ring.capacity() {
            return;
        }
        let bound = self.max_keys.saturating_add(RING_SLACK);
        let target = if bound > len {
            (2 * len).max(16).min(bound)
        } else {
            2 * len
        };
        self.ring.reserve_exact(target - len);
    }

    /// Stores `key` (hash `hash`) as the newest, replacing what was remembered of it.
    ///
    /// It takes the key by reference and clones it straight into the ring: a key moved in by
    /// value was copied through the stack in pieces that the copy into the ring then read back
    /// whole, which waits for every store queued before it (cold table writes among them).
    pub(crate) fn insert(&mut self, hash: u64, key: &IdempotencyKey, stored: StoredKey) {
        let position = self.front + self.ring.len() as u64;
        let (ring, front) = (&self.ring, self.front);
        let is_key = |p: u64| Self::holds(ring, front, p, key);
        if let Some(old) = self.table.upsert(hash, position, is_key) {
            // `is_key` found it in the ring.
            self.ring[(old - front) as usize].key = None;
            self.stale += 1;
        }
        self.reserve_one();
        self.ring.push_back(Entry {
            key: Some(key.clone()),
            stored,
            hash,
        });
    }

    /// Drops stale entries at the ring's front.
    fn skip_stale(&mut self) {
        while self.ring.front().is_some_and(|e| e.key.is_none()) {
            self.ring.pop_front();
            self.front += 1;
            self.stale -= 1;
        }
    }

    /// The oldest live key.
    pub(crate) fn front(&mut self) -> Option<StoredKey> {
        self.skip_stale();
        self.ring.front().map(|e| e.stored)
    }

    /// Forgets the oldest live key. Returns whether there was one.
    pub(crate) fn pop_front(&mut self) -> bool {
        self.skip_stale();
        let Some(hash) = self.ring.front().map(|e| e.hash) else {
            return false;
        };
        let removed = self.table.remove(hash, self.front);
        debug_assert!(removed, "a live entry has a slot");
        self.ring.pop_front();
        self.front += 1;
        // The ring is read front to back, far behind where it was written, and each entry
        // names a random table slot: ask for the entries, then their slots, a few pops ahead,
        // or each pop waits for memory twice.
        if let Some(ahead) = self.ring.get(PREFETCH_AHEAD) {
            prefetch(ahead);
        }
        if let Some(ahead) = self.ring.get(PREFETCH_SLOT_AHEAD) {
            self.table.prefetch(ahead.hash);
        }
        true
    }

    /// The live keys in the order they were stored.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = (IdempotencyKey, StoredKey)> + '_ {
        self.ring
            .iter()
            .filter_map(|e| Some((e.key.clone()?, e.stored)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(offset: i64) -> StoredKey {
        StoredKey {
            offset,
            timestamp_ms: offset,
        }
    }

    fn put(t: &mut KeyTable, key: &str, offset: i64) {
        let hash = t.hash(key.as_bytes());
        t.insert(hash, &IdempotencyKey::new(key.as_bytes()), stored(offset));
    }

    fn get(t: &KeyTable, key: &str) -> Option<i64> {
        t.get(t.hash(key.as_bytes()), key.as_bytes())
            .map(|s| s.offset)
    }

    #[test]
    fn forgotten_keys_are_gone_and_can_be_stored_again() {
        let mut t = KeyTable::default();
        for i in 0..5000 {
            put(&mut t, &format!("k{i}"), i);
        }
        for _ in 0..3000 {
            assert!(t.pop_front());
        }
        assert_eq!(t.len(), 2000);
        assert_eq!(t.table.len(), 2000, "each forgotten key's slot is removed");
        assert_eq!(get(&t, "k2999"), None);
        assert_eq!(get(&t, "k3000"), Some(3000));
        assert_eq!(get(&t, "k4999"), Some(4999));
        put(&mut t, "k0", 9000);
        assert_eq!(get(&t, "k0"), Some(9000));
    }

    #[test]
    fn a_full_table_forgetting_its_oldest_knows_exactly_its_live_keys() {
        // As the index runs when full: one key forgotten per key stored.
        let mut t = KeyTable::default();
        let live = 1000;
        t.set_max_keys(live);
        for i in 0..50_000i64 {
            put(&mut t, &format!("k{i}"), i);
            if t.len() > live {
                t.pop_front();
            }
        }
        assert_eq!(t.len(), live);
        assert_eq!(t.table.len(), live);
        assert!(
            t.ring.capacity() <= live + RING_SLACK + 16,
            "the ring stays at the bound"
        );
        for i in 0..50_000i64 {
            let expected = (i >= 49_000).then_some(i);
            assert_eq!(get(&t, &format!("k{i}")), expected, "k{i}");
        }
    }

    #[test]
    fn a_key_stored_again_moves_to_the_back_and_counts_once() {
        let mut t = KeyTable::default();
        put(&mut t, "a", 1);
        put(&mut t, "b", 2);
        put(&mut t, "a", 3);
        assert_eq!(t.len(), 2);
        assert_eq!(get(&t, "a"), Some(3));
        let order: Vec<i64> = t.in_order().map(|(_, s)| s.offset).collect();
        assert_eq!(order, [2, 3]);
        assert_eq!(t.front().map(|s| s.offset), Some(2));
        assert!(t.pop_front());
        assert_eq!(t.front().map(|s| s.offset), Some(3));
        assert!(t.pop_front());
        assert!(!t.pop_front());
        assert_eq!(t.len(), 0);
        assert_eq!(get(&t, "a"), None);
    }
}
