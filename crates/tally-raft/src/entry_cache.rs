//! The entries a replica appended and has not applied yet, kept in memory. Right after an
//! append, openraft reads the same entries back: on a leader once per follower to send them
//! and once to apply them, on a follower once to apply them. From the segment files each of
//! those reads copied every byte out of the page cache again (into a fresh buffer). From here
//! they are clones of the appended entries' `Bytes`.
//!
//! What an entry holds here is what was appended, not what the segment holds: a client batch
//! keeps the base offset and leader epoch it came with (the log sets both as it writes). Every
//! reader of entries already takes those two from elsewhere (the wire sets the term, apply
//! takes the log's offsets), as it must for entries openraft hands over straight from memory.
//! A batch the leader's log refused is kept as the stand-in the segment holds.
//!
//! Entries leave when they are applied, truncated or purged, and the oldest leave when the
//! cache holds more than its bound (a follower far behind reads those from the segments).

use std::collections::VecDeque;

use openraft::EntryPayload;

use crate::type_config::{Entry, RaftBatch};

/// What a blank or membership entry counts for against the bound.
const SMALL_ENTRY_BYTES: usize = 128;

pub(crate) struct EntryCache {
    /// Consecutive raft indexes, oldest first.
    entries: VecDeque<Entry>,
    bytes: usize,
    max_bytes: usize,
}

fn size_of(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(RaftBatch(batch)) => batch.len(),
        _ => SMALL_ENTRY_BYTES,
    }
}

impl EntryCache {
    pub(crate) fn new(max_bytes: usize) -> EntryCache {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    /// Adds the entry just appended at its index; an entry that does not follow the last one
    /// (the log was cut elsewhere) starts the cache again.
    pub(crate) fn push(&mut self, entry: Entry) {
        let follows = self
            .entries
            .back()
            .is_none_or(|last| last.log_id.index + 1 == entry.log_id.index);
        if !follows {
            self.clear();
        }
        self.bytes += size_of(&entry);
        self.entries.push_back(entry);
        while self.bytes > self.max_bytes {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= size_of(&e);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Forgets the entries up to and including `index` (applied, or purged).
    pub(crate) fn forget_upto(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    /// Forgets the entries from `index` on (the log was truncated there).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|last| last.log_id.index >= index)
        {
            if let Some(e) = self.entries.pop_back() {
                self.bytes -= size_of(&e);
            }
        }
    }

    /// The cached entries of `start..end`, and where the cached part begins: the entries of
    /// `start..that` (if any) must be read from the log.
    pub(crate) fn range(&self, start: u64, end: u64) -> (u64, Vec<Entry>) {
        let Some(first) = self.first_index() else {
            return (end, Vec::new());
        };
        let from = start.max(first);
        let skip = (from - first) as usize;
        let take = end.saturating_sub(from) as usize;
        let cached: Vec<Entry> = self.entries.iter().skip(skip).take(take).cloned().collect();
        if cached.is_empty() {
            return (end, cached);
        }
        (from, cached)
    }

    #[cfg(test)]
    fn indexes(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.log_id.index).collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::entry::RaftEntry;

    use super::*;
    use crate::type_config::LogId;

    fn entry(index: u64, len: usize) -> Entry {
        Entry::new_normal(
            LogId::new_term_index(1, index),
            RaftBatch(Bytes::from(vec![index as u8; len])),
        )
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn a_range_is_split_where_the_cache_begins() {
        let mut cache = EntryCache::new(1 << 20);
        for i in 5..10 {
            cache.push(entry(i, 10));
        }
        let (from, got) = cache.range(3, 8);
        assert_eq!((from, indexes(&got)), (5, vec![5, 6, 7]));
        let (from, got) = cache.range(7, 100);
        assert_eq!((from, indexes(&got)), (7, vec![7, 8, 9]));
        let (from, got) = cache.range(0, 4);
        assert_eq!((from, got.len()), (4, 0), "all of it from the log");
        let (from, got) = cache.range(10, 12);
        assert_eq!((from, got.len()), (12, 0), "past the cache: from the log");
    }

    #[test]
    fn entries_leave_when_applied_truncated_or_over_the_bound() {
        let mut cache = EntryCache::new(35);
        for i in 1..=3 {
            cache.push(entry(i, 10));
        }
        cache.push(entry(4, 10));
        assert_eq!(
            cache.indexes(),
            vec![2, 3, 4],
            "the oldest left for the bound"
        );
        cache.forget_upto(2);
        assert_eq!(cache.indexes(), vec![3, 4]);
        cache.truncate_from(4);
        assert_eq!(cache.indexes(), vec![3]);
        cache.push(entry(4, 10));
        assert_eq!(cache.indexes(), vec![3, 4]);
        cache.push(entry(9, 10));
        assert_eq!(cache.indexes(), vec![9], "a jump starts again");
        cache.forget_upto(9);
        assert_eq!(cache.range(0, 10).1.len(), 0);
        assert_eq!(cache.bytes, 0);
    }
}
