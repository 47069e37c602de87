//! The stored keys of a [`crate::KeyIndex`]: an open-addressing table (hashbrown's
//! `HashTable`) of keys with their hash, and the log order they were stored in.
//!
//! The order queue holds each entry's hash and generation, not the key: forgetting the oldest
//! key finds its slot by hash and generation (unique), without hashing or reading the key
//! again, and a table resize reuses the stored hashes. A key stored again gets a new
//! generation; its old queue entry is then stale and skipped.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::key_index::StoredKey;

#[derive(Debug, Clone)]
struct Slot {
    hash: u64,
    generation: u64,
    key: Arc<[u8]>,
    stored: StoredKey,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct KeyTable {
    // Keys come from clients: a randomly seeded hasher, so chosen collisions do not pile up
    // (foldhash: hashbrown's default, a fraction of SipHash's cost).
    hasher: foldhash::fast::RandomState,
    table: HashTable<Slot>,
    order: VecDeque<(u64, u64)>,
    next_generation: u64,
}

impl KeyTable {
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<StoredKey> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |s| *s.key == *key).map(|s| s.stored)
    }

    /// Stores `key` as the newest, replacing what was remembered of it.
    pub(crate) fn insert(&mut self, key: Arc<[u8]>, stored: StoredKey) {
        let hash = self.hasher.hash_one(&*key);
        let generation = self.next_generation;
        self.next_generation += 1;
        self.order.push_back((hash, generation));
        // One probe: a key stored again keeps its slot with a new generation (its old queue
        // entry goes stale).
        match self.table.entry(hash, |s| *s.key == *key, |s| s.hash) {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                slot.generation = generation;
                slot.stored = stored;
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(Slot {
                    hash,
                    generation,
                    key,
                    stored,
                });
            }
        }
    }

    /// The oldest live key, stale queue entries dropped on the way.
    pub(crate) fn front(&mut self) -> Option<StoredKey> {
        while let Some(&(hash, generation)) = self.order.front() {
            match self.table.find(hash, |s| s.generation == generation) {
                Some(slot) => return Some(slot.stored),
                None => {
                    self.order.pop_front();
                }
            }
        }
        None
    }

    /// Forgets the oldest live key.
    pub(crate) fn pop_front(&mut self) -> Option<StoredKey> {
        while let Some((hash, generation)) = self.order.pop_front() {
            if let Ok(e) = self.table.find_entry(hash, |s| s.generation == generation) {
                return Some(e.remove().0.stored);
            }
        }
        None
    }

    /// Drops stale queue entries once they outnumber the live ones (many keys stored again).
    pub(crate) fn compact(&mut self) {
        if self.order.len() > 2 * self.table.len() + 1024 {
            let table = &self.table;
            self.order
                .retain(|&(hash, g)| table.find(hash, |s| s.generation == g).is_some());
        }
    }

    /// The live keys in the order they were stored.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = (Arc<[u8]>, StoredKey)> + '_ {
        self.order.iter().filter_map(|&(hash, g)| {
            let slot = self.table.find(hash, |s| s.generation == g)?;
            Some((Arc::clone(&slot.key), slot.stored))
        })
    }
}
