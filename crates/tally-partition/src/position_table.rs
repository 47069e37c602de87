//! The hash table of a [`crate::key_table::KeyTable`]: from a key's hash to its position in
//! the ring of keys. Open addressing with linear probing, 16-byte slots, four to a cache line.
//!
//! Why not hashbrown: with a million keys per partition every access is a cache miss, and the
//! writer spent its time waiting for them (a lookup, an insert and a removal per stored key
//! once the index is full). Here the slot a hash starts at is known from the hash alone, so
//! the caller asks for it ahead ([`PositionTable::prefetch`]) while the batch is still being
//! walked, and usually the line asked for holds everything a lookup, insert or removal
//! touches.
//! Removal shifts the following slots back (no tombstones), so the table never needs a sweep
//! and a lookup stops at the first empty slot.

use crate::prefetch::prefetch;

const MIN_SLOTS: usize = 64;

/// A position filed under a hash (kept plus one, so that an empty slot is all zero).
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    /// The position plus one; 0 when the slot is empty.
    tagged: u64,
}

impl Slot {
    const EMPTY: Slot = Slot { hash: 0, tagged: 0 };

    fn new(hash: u64, position: u64) -> Slot {
        Slot {
            hash,
            tagged: position + 1,
        }
    }

    fn is_empty(&self) -> bool {
        self.tagged == 0
    }

    fn position(&self) -> u64 {
        self.tagged - 1
    }
}

const SLOTS_PER_LINE: usize = 4;

/// One cache line of slots, aligned so that it is one line.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Line([Slot; SLOTS_PER_LINE]);

impl Line {
    const EMPTY: Line = Line([Slot::EMPTY; SLOTS_PER_LINE]);
}

#[derive(Debug, Clone)]
pub(crate) struct PositionTable {
    /// A power of two long, slots at most three quarters full.
    lines: Vec<Line>,
    len: usize,
}

impl Default for PositionTable {
    fn default() -> Self {
        PositionTable {
            lines: vec![Line::EMPTY; MIN_SLOTS / SLOTS_PER_LINE],
            len: 0,
        }
    }
}

impl PositionTable {
    /// Entries held (the tests compare it with the keys remembered).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn slot_count(&self) -> usize {
        self.lines.len() * SLOTS_PER_LINE
    }

    fn mask(&self) -> usize {
        self.slot_count() - 1
    }

    fn slot(&self, i: usize) -> Slot {
        self.lines[i / SLOTS_PER_LINE].0[i % SLOTS_PER_LINE]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.lines[i / SLOTS_PER_LINE].0[i % SLOTS_PER_LINE]
    }

    /// Where a probe for `hash` starts.
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask()
    }

    /// Starts reading the line a probe for `hash` starts in, and the next one when the probe
    /// starts in the line's last slot (about half of those probes run on into it). Not more:
    /// the writer is limited by how many lines it can have in flight at once, and a line
    /// fetched for nothing takes the place of one that was needed.
    pub(crate) fn prefetch(&self, hash: u64) {
        let home = self.home(hash);
        prefetch(&self.lines[home / SLOTS_PER_LINE]);
        if home % SLOTS_PER_LINE == SLOTS_PER_LINE - 1 {
            prefetch(&self.lines[((home + SLOTS_PER_LINE) & self.mask()) / SLOTS_PER_LINE]);
        }
    }

    /// The position filed under `hash` for which `is_key` holds (it compares the key at that
    /// position), if any.
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u64) -> bool) -> Option<u64> {
        self.find_slot(hash, &mut is_key)
            .map(|i| self.slot(i).position())
    }

    fn find_slot(&self, hash: u64, is_key: &mut impl FnMut(u64) -> bool) -> Option<usize> {
        self.probe(hash, is_key).ok()
    }

    /// The slot holding the entry `is_key` recognises, or else the empty slot where the
    /// probe ended.
    fn probe(&self, hash: u64, is_key: &mut impl FnMut(u64) -> bool) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let slot = self.slot(i);
            if slot.is_empty() {
                return Err(i);
            }
            if slot.hash == hash && is_key(slot.position()) {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Files `position` under `hash`: replaces the position of the entry `is_key` recognises
    /// and returns the old one, or adds an entry.
    pub(crate) fn upsert(
        &mut self,
        hash: u64,
        position: u64,
        mut is_key: impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        if (self.len + 1) * 4 > self.slot_count() * 3 {
            self.grow();
        }
        match self.probe(hash, &mut is_key) {
            Ok(i) => {
                let old = self.slot(i).position();
                *self.slot_mut(i) = Slot::new(hash, position);
                Some(old)
            }
            Err(empty) => {
                *self.slot_mut(empty) = Slot::new(hash, position);
                self.len += 1;
                None
            }
        }
    }

    /// Removes the entry filed under `hash` at `position`. Returns whether there was one.
    pub(crate) fn remove(&mut self, hash: u64, position: u64) -> bool {
        let Some(i) = self.find_slot(hash, &mut |p| p == position) else {
            return false;
        };
        self.len -= 1;
        self.shift_back(i);
        true
    }

    /// Empties slot `hole`, moving back the slots after it that a probe would no longer reach
    /// across an empty slot (backward-shift deletion).
    fn shift_back(&mut self, mut hole: usize) {
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let slot = self.slot(j);
            if slot.is_empty() {
                *self.slot_mut(hole) = Slot::EMPTY;
                return;
            }
            // The slot may fill the hole when its probe starts at or before the hole: its
            // distance from home is at least the hole's distance back.
            let from_home = j.wrapping_sub(self.home(slot.hash)) & mask;
            let from_hole = j.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                *self.slot_mut(hole) = slot;
                hole = j;
            }
        }
    }

    fn grow(&mut self) {
        let doubled = vec![Line::EMPTY; self.lines.len() * 2];
        let old = std::mem::replace(&mut self.lines, doubled);
        let mask = self.mask();
        for slot in old.iter().flat_map(|l| l.0).filter(|s| !s.is_empty()) {
            let mut i = self.home(slot.hash);
            while !self.slot(i).is_empty() {
                i = (i + 1) & mask;
            }
            *self.slot_mut(i) = slot;
        }
    }

    /// Slots held.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.slot_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Against a map: random inserts, moves and removals, with hashes from a tiny range so
        /// that probes collide, wrap around the end and shift back across one another.
        #[test]
        fn behaves_as_a_map_from_position_to_hash(
            ops in proptest::collection::vec((0u8..3, 0u64..40, 0u64..200), 1..600)
        ) {
            let mut table = PositionTable::default();
            // position -> hash; a position is filed once.
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            for (op, hash_seed, position) in ops {
                // Hashes near the table's end, so probes wrap.
                let hash = (hash_seed % 7) + 60;
                match op {
                    0 if !model.contains_key(&position) => {
                        prop_assert_eq!(table.upsert(hash, position, |_| false), None);
                        model.insert(position, hash);
                    }
                    1 => {
                        // Move: re-file an existing position under a new one.
                        if let Some((&old, &h)) = model.iter().next() {
                            let new = old + 1000;
                            if !model.contains_key(&new) {
                                prop_assert_eq!(table.upsert(h, new, |p| p == old), Some(old));
                                model.remove(&old);
                                model.insert(new, h);
                            }
                        }
                    }
                    _ => {
                        let expected = model.get(&position) == Some(&hash);
                        prop_assert_eq!(table.remove(hash, position), expected);
                        if expected {
                            model.remove(&position);
                        }
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                for (&p, &h) in &model {
                    prop_assert_eq!(table.find(h, |q| q == p), Some(p), "position {} lost", p);
                }
            }
        }
    }

    #[test]
    fn grows_and_keeps_every_entry() {
        const N: u64 = 200_000;
        let mut table = PositionTable::default();
        for p in 0..N {
            table.upsert(p.wrapping_mul(0x9E37_79B9_7F4A_7C15), p, |_| false);
        }
        assert!(table.capacity() >= N as usize * 4 / 3);
        for p in 0..N {
            let h = p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(table.find(h, |q| q == p), Some(p));
        }
        for p in (0..N).step_by(2) {
            assert!(table.remove(p.wrapping_mul(0x9E37_79B9_7F4A_7C15), p));
        }
        assert_eq!(table.len(), N as usize / 2);
        for p in 0..N {
            let h = p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(table.find(h, |q| q == p), (p % 2 == 1).then_some(p));
        }
    }
}
