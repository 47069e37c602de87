//! The stored keys of a [`crate::KeyIndex`]: the keys in log order in a ring, and a hash table
//! (hashbrown's `HashTable`) from each key's hash to its position in the ring.
//!
//! Why this shape: the index forgets its oldest key for each key it stores once it is full, and
//! looking that key up in the table to remove it was a third of the broker's time with keys on
//! (a random probe into a table of a million entries, then freeing the key). Now forgetting is
//! popping the ring's front, which is sequential memory. The table slot that pointed at it is
//! left behind, dead (its position is before the ring's front, so lookups skip it without
//! reading the ring), and dead slots are swept in one sequential pass once they are half as
//! many as the live ones.
//!
//! A key stored again (after its window) gets a new entry at the ring's back; its slot moves
//! there, and the old entry is kept in the ring as stale (no key) until it reaches the front.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::idempotency_key::IdempotencyKey;
use crate::key_index::StoredKey;
use crate::presence_filter::PresenceFilter;

/// How far ahead of the front the ring is prefetched, in entries (cache lines).
const PREFETCH_AHEAD: usize = 16;
/// Dead slots swept at once at least (so a small index is not swept at every batch).
const SWEEP_MIN_DEAD: usize = 1024;

/// 64 bytes: one cache line.
#[derive(Debug, Clone)]
struct Entry {
    /// `None` once the key was stored again (the newer entry is the live one).
    key: Option<IdempotencyKey>,
    stored: StoredKey,
    hash: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    /// The entry's position: `front` is the ring's first entry, positions only grow.
    position: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct KeyTable {
    // Keys come from clients: a randomly seeded hasher, so chosen collisions do not pile up
    // (foldhash: hashbrown's default, a fraction of SipHash's cost).
    hasher: foldhash::fast::RandomState,
    table: HashTable<Slot>,
    ring: VecDeque<Entry>,
    /// The position of `ring[0]`.
    front: u64,
    /// Entries of `ring` whose key was stored again.
    stale: usize,
    /// Which hashes are certainly not in the table.
    presence: PresenceFilter,
}

impl KeyTable {
    /// Keys remembered.
    pub(crate) fn len(&self) -> usize {
        self.ring.len() - self.stale
    }

    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Starts reading what a lookup of `hash` reads first.
    pub(crate) fn prefetch(&self, hash: u64) {
        self.presence.prefetch(hash);
    }

    /// The live slot of `key` (hash `hash`): one whose entry is still in the ring.
    fn is_slot_of(&self, slot: &Slot, hash: u64, key: &[u8]) -> bool {
        slot.hash == hash
            && slot.position >= self.front
            && self.ring[(slot.position - self.front) as usize]
                .key
                .as_deref()
                .is_some_and(|k| k == key)
    }

    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<StoredKey> {
        if !self.presence.may_contain(hash) {
            return None;
        }
        let slot = self.table.find(hash, |s| self.is_slot_of(s, hash, key))?;
        Some(self.ring[(slot.position - self.front) as usize].stored)
    }

    /// Stores `key` (hash `hash`) as the newest, replacing what was remembered of it.
    pub(crate) fn insert(&mut self, hash: u64, key: IdempotencyKey, stored: StoredKey) {
        let position = self.front + self.ring.len() as u64;
        let new = !self.presence.may_contain(hash);
        self.presence.add(hash);
        self.ring.push_back(Entry {
            key: None,
            stored,
            hash,
        });
        if new {
            self.table
                .insert_unique(hash, Slot { hash, position }, |s| s.hash);
            self.ring.back_mut().expect("pushed").key = Some(key);
            return;
        }
        let (front, ring) = (self.front, &self.ring);
        let is_slot = |s: &Slot| {
            s.hash == hash
                && s.position >= front
                && ring[(s.position - front) as usize].key.as_deref() == Some(&*key)
        };
        // One probe: it finds the key's slot, or where a new slot goes.
        match self.table.entry(hash, is_slot, |s| s.hash) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                let old = (slot.position - front) as usize;
                slot.position = position;
                self.ring[old].key = None;
                self.stale += 1;
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(Slot { hash, position });
            }
        }
        self.ring.back_mut().expect("pushed").key = Some(key);
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

    /// Forgets the oldest live key. Its table slot stays behind, dead, until a sweep.
    pub(crate) fn pop_front(&mut self) -> Option<StoredKey> {
        self.skip_stale();
        let entry = self.ring.pop_front()?;
        self.front += 1;
        // The ring is read front to back, far behind where it was written: ask for the
        // entries a few pops ahead, or each pop waits for memory.
        if let Some(ahead) = self.ring.get(PREFETCH_AHEAD) {
            crate::prefetch::prefetch(ahead);
        }
        Some(entry.stored)
    }

    /// Sweeps the dead slots once they are half as many as the live keys: one pass over the
    /// table in memory order.
    pub(crate) fn compact(&mut self) {
        let live = self.len();
        let dead = self.table.len() - live;
        if dead > SWEEP_MIN_DEAD.max(live / 2) {
            let front = self.front;
            self.table.retain(|s| s.position >= front);
        }
        if self.presence.needs_rebuild(live) {
            let mut presence = PresenceFilter::with_keys(live);
            for e in self.ring.iter().filter(|e| e.key.is_some()) {
                presence.add(e.hash);
            }
            self.presence = presence;
        }
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
        t.insert(hash, IdempotencyKey::new(key.as_bytes()), stored(offset));
    }

    fn get(t: &KeyTable, key: &str) -> Option<i64> {
        t.get(t.hash(key.as_bytes()), key.as_bytes())
            .map(|s| s.offset)
    }

    #[test]
    fn forgotten_keys_are_gone_before_and_after_the_sweep() {
        let mut t = KeyTable::default();
        for i in 0..5000 {
            put(&mut t, &format!("k{i}"), i);
        }
        for _ in 0..3000 {
            t.pop_front();
        }
        assert_eq!(t.len(), 2000);
        assert_eq!(get(&t, "k2999"), None, "dead slot, not yet swept");
        assert_eq!(get(&t, "k3000"), Some(3000));
        t.compact();
        assert_eq!(t.table.len(), 2000, "swept");
        assert_eq!(get(&t, "k2999"), None);
        assert_eq!(get(&t, "k4999"), Some(4999));
        // A forgotten key can be stored again.
        put(&mut t, "k0", 9000);
        assert_eq!(get(&t, "k0"), Some(9000));
    }

    #[test]
    fn a_full_table_forgetting_its_oldest_knows_exactly_its_live_keys() {
        // As the index runs when full: one key forgotten per key stored, a sweep per batch.
        let mut t = KeyTable::default();
        let live = 1000;
        for i in 0..50_000i64 {
            put(&mut t, &format!("k{i}"), i);
            if t.len() > live {
                t.pop_front();
            }
            if i % 100 == 0 {
                t.compact();
            }
        }
        assert_eq!(t.len(), live);
        assert!(t.table.len() <= live + SWEEP_MIN_DEAD.max(live / 2) + 100);
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
        assert_eq!(t.pop_front().map(|s| s.offset), Some(2));
        assert_eq!(t.pop_front().map(|s| s.offset), Some(3));
        assert_eq!(t.pop_front(), None);
        assert_eq!(t.len(), 0);
        assert_eq!(get(&t, "a"), None);
    }
}
