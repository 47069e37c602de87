//! The map from raft index to the batch that holds the entry: its term and its Kafka offsets.
//! Raft indexes count entries; Kafka offsets count records, so the two never line up.
//!
//! Dense for now (24 bytes per entry since the last purge). It is rebuilt on open by reading
//! the batch headers from the first entry on.

use std::collections::VecDeque;

use crate::type_config::LogId;

/// Where one entry is: the batch's term (its partition leader epoch) and its offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    pub term: u64,
    pub base_offset: i64,
    /// The offset after the batch's last record.
    pub end_offset: i64,
}

#[derive(Debug, Default)]
pub(crate) struct RaftIndex {
    /// The raft index of `entries[0]`; meaningless while there are no entries (the next push
    /// sets it, and `accepts` goes by the last purged id then).
    first_index: u64,
    entries: VecDeque<EntryLoc>,
    last_purged: Option<LogId>,
}

impl RaftIndex {
    pub fn new(last_purged: Option<LogId>) -> RaftIndex {
        RaftIndex {
            first_index: 0,
            entries: VecDeque::new(),
            last_purged,
        }
    }

    pub fn last_purged(&self) -> Option<LogId> {
        self.last_purged
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn first(&self) -> Option<(u64, EntryLoc)> {
        self.entries.front().map(|l| (self.first_index, *l))
    }

    pub fn last_log_id(&self) -> Option<LogId> {
        match self.entries.back() {
            Some(l) => Some(LogId::new_term_index(
                l.term,
                self.first_index + self.entries.len() as u64 - 1,
            )),
            None => self.last_purged,
        }
    }

    /// Kafka's OffsetForLeaderEpoch over the entries: the largest term at most `term` and the
    /// offset after its last entry (the start of the next term, or the log end), if an entry
    /// of such a term is still here.
    pub fn end_offset_for_term(&self, term: u64) -> Option<(u64, i64)> {
        let last = self.entries.iter().rev().find(|l| l.term <= term)?;
        Some((last.term, last.end_offset))
    }

    /// The last entry that ends at or before `offset`: how far the Raft log may be purged
    /// when the records below `offset` are to be deleted.
    pub fn last_ending_at_or_before(&self, offset: i64) -> Option<LogId> {
        let count = self.entries.partition_point(|l| l.end_offset <= offset);
        let last = self.entries.get(count.checked_sub(1)?)?;
        Some(LogId::new_term_index(
            last.term,
            self.first_index + count as u64 - 1,
        ))
    }

    pub fn get(&self, index: u64) -> Option<EntryLoc> {
        let i = index.checked_sub(self.first_index)?;
        self.entries.get(usize::try_from(i).ok()?).copied()
    }

    /// The entries with indexes in `[start, end)` that the log holds, in order.
    pub fn range(&self, start: u64, end: u64) -> Vec<(u64, EntryLoc)> {
        let from = start.max(self.first_index);
        let to = end.min(self.first_index + self.entries.len() as u64);
        (from..to)
            .map(|i| (i, self.entries[(i - self.first_index) as usize]))
            .collect()
    }

    /// Whether an entry at `index` would keep the log without holes.
    pub fn accepts(&self, index: u64) -> bool {
        if self.entries.is_empty() {
            self.last_purged.is_none_or(|p| index > p.index)
        } else {
            index == self.first_index + self.entries.len() as u64
        }
    }

    pub fn push(&mut self, index: u64, loc: EntryLoc) {
        debug_assert!(self.accepts(index));
        if self.entries.is_empty() {
            self.first_index = index;
        }
        self.entries.push_back(loc);
    }

    /// Forgets entries at or after `index`; returns the Kafka offset the log must be cut to,
    /// when any entry went.
    pub fn truncate_from(&mut self, index: u64) -> Option<i64> {
        let keep = index.saturating_sub(self.first_index);
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        let cut = self.entries.get(keep).map(|l| l.base_offset)?;
        self.entries.truncate(keep);
        Some(cut)
    }

    /// Forgets entries up to and including `log_id`'s index, which becomes the last purged.
    pub fn purge_upto(&mut self, log_id: LogId) {
        while !self.entries.is_empty() && self.first_index <= log_id.index {
            self.entries.pop_front();
            self.first_index += 1;
        }
        self.last_purged = Some(log_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64, base: i64, n: i64) -> EntryLoc {
        EntryLoc {
            term,
            base_offset: base,
            end_offset: base + n,
        }
    }

    #[test]
    fn the_end_offset_of_a_term_is_where_the_next_term_starts() {
        let mut idx = RaftIndex::new(None);
        // Terms 1 (offsets 0-1), 3 (2-6), 4 (7-9); no entry of term 2.
        for (i, l) in [
            loc(1, 0, 1),
            loc(1, 1, 1),
            loc(3, 2, 4),
            loc(3, 6, 1),
            loc(4, 7, 3),
        ]
        .into_iter()
        .enumerate()
        {
            idx.push(i as u64 + 1, l);
        }
        assert_eq!(idx.end_offset_for_term(1), Some((1, 2)));
        assert_eq!(idx.end_offset_for_term(2), Some((1, 2)));
        assert_eq!(idx.end_offset_for_term(3), Some((3, 7)));
        assert_eq!(idx.end_offset_for_term(4), Some((4, 10)));
        // Entries 1-5 end at offsets 1, 2, 6, 7, 10.
        assert_eq!(idx.last_ending_at_or_before(0), None);
        assert_eq!(
            idx.last_ending_at_or_before(2),
            Some(LogId::new_term_index(1, 2))
        );
        assert_eq!(
            idx.last_ending_at_or_before(5),
            Some(LogId::new_term_index(1, 2))
        );
        assert_eq!(
            idx.last_ending_at_or_before(7),
            Some(LogId::new_term_index(3, 4))
        );
        assert_eq!(
            idx.last_ending_at_or_before(99),
            Some(LogId::new_term_index(4, 5))
        );
        assert_eq!(idx.end_offset_for_term(9), Some((4, 10)));
        assert_eq!(idx.end_offset_for_term(0), None);
    }

    #[test]
    fn push_range_truncate_and_purge() {
        let mut idx = RaftIndex::new(None);
        assert!(idx.accepts(5));
        for (i, base) in [(5u64, 0i64), (6, 3), (7, 4), (8, 10)] {
            assert!(idx.accepts(i));
            idx.push(i, loc(2, base, 1));
        }
        assert!(!idx.accepts(10) && !idx.accepts(8) && idx.accepts(9));
        assert_eq!(idx.last_log_id(), Some(LogId::new_term_index(2, 8)));
        assert_eq!(
            idx.range(0, 7).iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![5, 6]
        );
        assert_eq!(idx.get(7).map(|l| l.base_offset), Some(4));
        assert_eq!(idx.truncate_from(7), Some(4));
        assert_eq!(idx.truncate_from(7), None);
        assert_eq!(idx.last_log_id(), Some(LogId::new_term_index(2, 6)));
        idx.purge_upto(LogId::new_term_index(2, 5));
        assert_eq!(idx.first().map(|f| f.0), Some(6));
        idx.purge_upto(LogId::new_term_index(2, 20));
        assert!(idx.is_empty());
        assert_eq!(idx.last_log_id(), Some(LogId::new_term_index(2, 20)));
        assert!(!idx.accepts(20) && idx.accepts(21));
    }
}
