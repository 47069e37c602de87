//! openraft's log store over a partition's segment files: the Raft log is the partition log.
//!
//! Writes (append, truncate, purge, vote) run on tokio's blocking pool, one at a time as
//! openraft issues them; they take the writer's lock, which no reader takes. Readers (the
//! replication tasks, the state machine) take entries appended and not yet applied from
//! memory (`entry_cache.rs`); older ones they locate in the raft index under a short read
//! lock and read from the segment files through the lock-free `LogReader`.
//!
//! Every append is fsynced before openraft hears it is done, which Raft needs for its votes and
//! its commit rule. openraft hands over many entries at once under load, so one fsync covers
//! them all.
//!
//! While this replica leads a term, its client batches of that term are checked again as they
//! are written (`leader_log.rs`): one refused by openraft's core must not leave a gap that the
//! next batch of the same producer is stored behind.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use parking_lot::{Mutex, RwLock};
use tally_log::{Log, LogConfig, LogReader};
use tally_partition::ProducerTable;
use tally_protocol::BatchHeader;

use crate::blocking_io::BlockingIo;
use crate::entry_cache::EntryCache;
use crate::entry_codec::{decode_entry, encode_entry, refused_batch};
use crate::leader_log::{Admission, LeaderLog};
use crate::raft_index::{EntryLoc, RaftIndex};
use crate::raft_meta::{self, FirstEntry, RaftMeta};
use crate::type_config::{Entry, LogId, RaftBatch, TallyRaft, Vote};

/// Bytes read from the segments at a time when openraft asks for a range of entries.
const READ_CHUNK_BYTES: usize = 8 << 20;

/// The bound of a replica's appended-but-unapplied entries kept in memory (`entry_cache.rs`).
/// Entries normally leave within milliseconds, when applied; the bound only matters while
/// a quorum is slower than the writes.
const ENTRY_CACHE_BYTES: usize = 16 << 20;

/// The Raft log of one partition replica. Cheap to clone: clones share the log.
#[derive(Clone)]
pub struct SegmentLogStore {
    inner: Arc<Inner>,
    /// Where writes run (see [`BlockingIo`]).
    io: BlockingIo,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    /// The writer's side of the log. Only this store's writes take it, one at a time.
    pub(crate) log: Mutex<Log>,
    reader: Arc<LogReader>,
    pub(crate) index: RwLock<RaftIndex>,
    /// The saved `raft-meta.json`, as last written.
    pub(crate) meta: Mutex<RaftMeta>,
    committed: Mutex<Option<LogId>>,
    /// Set while this replica leads a term with the duplicate check on.
    pub(crate) leader: Mutex<Option<LeaderLog>>,
    /// The entries appended and not yet applied, so openraft's reads of them right after the
    /// append do not go back to the segments. Taken after `index`, never the other way.
    pub(crate) cache: Mutex<EntryCache>,
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl SegmentLogStore {
    /// Opens the partition log in `dir` (recovering it as `Log::open` does) and rebuilds the
    /// raft index from its first entry on. Blocking: call it off the async workers.
    pub fn open(dir: &Path, config: LogConfig) -> io::Result<SegmentLogStore> {
        let (mut log, _report) = Log::open(dir, config).map_err(io_err)?;
        let mut meta = RaftMeta::load(dir)?;
        crate::snapshot_install::recover(dir, &mut log, &mut meta)?;
        let mut index = RaftIndex::new(meta.last_purged);
        if let Some(first) = meta.first_entry {
            let mut next = first.index;
            let mut bad = None;
            log.for_each_batch_header(first.base_offset, |h| {
                if h.base_offset < first.base_offset || bad.is_some() {
                    return;
                }
                match u64::try_from(h.partition_leader_epoch) {
                    Ok(term) if index.accepts(next) => {
                        index.push(next, loc_of(term, h));
                        next += 1;
                    }
                    _ => bad = Some(h.base_offset),
                }
            })
            .map_err(io_err)?;
            if let Some(offset) = bad {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: the batch at offset {offset} is not a raft entry",
                        dir.display()
                    ),
                ));
            }
        }
        let reader = Arc::clone(log.reader());
        Ok(SegmentLogStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                log: Mutex::new(log),
                reader,
                index: RwLock::new(index),
                committed: Mutex::new(raft_meta::load_committed(dir)),
                meta: Mutex::new(meta),
                leader: Mutex::new(None),
                cache: Mutex::new(EntryCache::new(ENTRY_CACHE_BYTES)),
            }),
            io: BlockingIo::Pool,
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The settings of the partition log (segment size, index interval).
    pub fn log_config(&self) -> LogConfig {
        self.inner.log.lock().config().clone()
    }

    /// The replica's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The index of the last entry the log holds now.
    pub fn last_index(&self) -> Option<u64> {
        self.inner.index.read().last_log_id().map(|l| l.index)
    }

    /// The partition's read side: what Fetch reads (below the high watermark).
    pub fn log_reader(&self) -> &Arc<LogReader> {
        &self.inner.reader
    }

    /// The largest term at most `term` with an entry in the log, and the offset after its
    /// last entry: what a leader answers to OffsetForLeaderEpoch (the leader epoch is the term).
    ///
    /// When every entry of `term` and earlier has been purged (retention), the answer is the
    /// newest purged term at most `term` and the offset where the entries left begin: those
    /// entries were committed, so no truncation can have cut them, and a consumer's position in
    /// them is at or below that offset, which is all KIP-320's check needs.
    pub fn end_offset_for_term(&self, term: u64) -> Option<(u64, i64)> {
        let index = self.inner.index.read();
        if let Some(found) = index.end_offset_for_term(term) {
            return Some(found);
        }
        let purged = index.last_purged()?;
        let end = match index.first() {
            Some((_, first)) => first.base_offset,
            None => self.inner.reader.log_end_offset(),
        };
        Some((term.min(purged.leader_id.term), end))
    }

    /// Tells the store that the entries up to `index` are applied: openraft reads them no
    /// more, except for a follower behind, which reads them from the segments.
    pub fn applied_upto(&self, index: u64) {
        self.inner.cache.lock().forget_upto(index);
    }

    /// The Kafka offsets of the batch that holds the entry at raft `index`.
    pub fn offsets_of(&self, index: u64) -> Option<(i64, i64)> {
        let loc = self.inner.index.read().get(index)?;
        Some((loc.base_offset, loc.end_offset))
    }

    /// This replica leads `term`: from now on each client batch of that term is checked
    /// against `table`, the producer table of the whole log as it stands, as it is written.
    /// Called once the state machine has applied the log and before the term's first client
    /// batch is proposed; a later call for the same term keeps the table it has, which has
    /// moved on with the log since.
    pub fn lead_term(&self, term: u64, table: ProducerTable) {
        let mut leader = self.inner.leader.lock();
        if leader.as_ref().is_none_or(|l| l.term < term) {
            *leader = Some(LeaderLog::new(term, table));
        }
    }

    /// Deletes the segments that end at or before `offset` and hold no entry the Raft log
    /// still has (purged entries are records only): how retention frees space in a replica.
    /// Never the active segment. Returns the log start offset afterwards. Blocking.
    pub fn delete_records_before(&self, offset: i64) -> io::Result<i64> {
        let mut log = self.inner.log.lock();
        let first_entry = self
            .inner
            .index
            .read()
            .first()
            .map(|(_, loc)| loc.base_offset);
        let cut = offset.min(first_entry.unwrap_or_else(|| log.log_end_offset()));
        log.delete_segments_before(cut).map_err(io_err)?;
        Ok(log.log_start_offset())
    }

    /// How many handles share this store, writes still running on the blocking pool
    /// included: 1 once everything else that used it (Raft, state machine) is gone.
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Flushes and records a clean shutdown, so the next open reads nothing again.
    pub fn close(&self) -> io::Result<()> {
        self.inner.log.lock().close().map_err(io_err)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = Arc::clone(&self.inner);
        self.io.run(move || f(&inner)).await?
    }

    /// This store with its writes run where `io` says (inline under a simulation).
    pub fn with_io(mut self, io: BlockingIo) -> SegmentLogStore {
        self.io = io;
        self
    }

    /// Where this store's blocking I/O runs.
    pub fn io(&self) -> BlockingIo {
        self.io
    }
}

fn loc_of(term: u64, h: &BatchHeader) -> EntryLoc {
    EntryLoc {
        term,
        base_offset: h.base_offset,
        end_offset: h.last_offset() + 1,
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Inner {
    fn save_meta(&self, change: impl FnOnce(&mut RaftMeta)) -> io::Result<()> {
        let mut meta = self.meta.lock().clone();
        change(&mut meta);
        if meta == *self.meta.lock() {
            return Ok(());
        }
        meta.save(&self.dir)?;
        *self.meta.lock() = meta;
        Ok(())
    }

    fn append(&self, entries: Vec<Entry>) -> io::Result<()> {
        let mut log = self.log.lock();
        for entry in entries {
            let index = entry.log_id.index;
            if !self.index.read().accepts(index) {
                return Err(io::Error::other(format!(
                    "entry {} would leave a hole after {:?}",
                    entry.log_id,
                    self.index.read().last_log_id()
                )));
            }
            let base_offset = log.log_end_offset();
            if self.index.read().is_empty() {
                // Before the batch is written: a crash in between leaves the first entry's
                // place recorded with nothing there, which reads as no entries.
                let first = FirstEntry { index, base_offset };
                self.save_meta(|m| m.first_entry = Some(first))?;
            }
            let mut encoded = encode_entry(&entry, base_offset).map_err(io_err)?;
            let mut stored = entry;
            if let Some(reason) = self.refuses(&stored, &encoded.header) {
                tracing::info!(
                    log_id = %stored.log_id,
                    producer_id = encoded.header.producer_id,
                    base_sequence = encoded.header.base_sequence,
                    %reason,
                    "the leader's log refused a client batch"
                );
                let stand_in = <Entry as openraft::entry::RaftEntry>::new_normal(
                    stored.log_id,
                    RaftBatch(refused_batch(&reason)),
                );
                encoded = encode_entry(&stand_in, base_offset).map_err(io_err)?;
                stored = stand_in;
            }
            let now = now_ms();
            let size = encoded.header.size_in_bytes();
            if log.should_roll(size, encoded.header.last_offset(), now) {
                log.roll().map_err(io_err)?;
            }
            log.append_parts(&[&encoded.head, &encoded.tail], &encoded.header, now)
                .map_err(io_err)?;
            let loc = loc_of(stored.log_id.leader_id.term, &encoded.header);
            self.index.write().push(index, loc);
            self.cache.lock().push(stored);
        }
        log.flush().map_err(io_err)
    }

    /// Why a client batch of the term this replica leads may not be written as proposed.
    fn refuses(&self, entry: &Entry, header: &tally_protocol::BatchHeader) -> Option<String> {
        if !matches!(entry.payload, openraft::EntryPayload::Normal(_)) {
            return None;
        }
        let mut leader = self.leader.lock();
        let leader = leader
            .as_mut()
            .filter(|l| l.term == entry.log_id.leader_id.term)?;
        match leader.admit(header) {
            Admission::Write => None,
            Admission::Refuse(reason) => Some(reason),
        }
    }

    fn truncate_after(&self, last: Option<LogId>) -> io::Result<()> {
        let mut log = self.log.lock();
        let from = last.map_or(0, |l| l.index + 1);
        // The index first: a reader that finds an entry there finds its bytes.
        let cut = self.index.write().truncate_from(from);
        self.cache.lock().truncate_from(from);
        let Some(cut) = cut else {
            return Ok(());
        };
        log.truncate_to(cut).map_err(io_err)
    }

    fn purge(&self, log_id: LogId) -> io::Result<()> {
        let _writer = self.log.lock();
        let first = {
            let mut index = self.index.write();
            index.purge_upto(log_id);
            index.first()
        };
        self.cache.lock().forget_upto(log_id.index);
        // Purged entries stay in the segments: they are the partition's records, which
        // retention deletes, not Raft.
        self.save_meta(|m| {
            m.last_purged = Some(log_id);
            m.first_entry = first.map(|(index, loc)| FirstEntry {
                index,
                base_offset: loc.base_offset,
            });
        })
    }

    fn read_entries(&self, locs: Vec<(u64, EntryLoc)>) -> io::Result<Vec<Entry>> {
        let (Some(first), Some(last)) = (locs.first(), locs.last()) else {
            return Ok(Vec::new());
        };
        let end = last.1.end_offset;
        let mut out = Vec::with_capacity(locs.len());
        let mut expected = locs.iter();
        let mut offset = first.1.base_offset;
        while offset < end {
            let read = self
                .reader
                .read(offset, READ_CHUNK_BYTES, end, true)
                .map_err(io_err)?;
            let mut rest: Bytes = read.records;
            if rest.is_empty() {
                return Err(io::Error::other(format!("no batch at offset {offset}")));
            }
            while !rest.is_empty() {
                let header = BatchHeader::parse(&rest).map_err(io_err)?;
                let batch = rest.split_to(header.size_in_bytes().min(rest.len()));
                let Some((index, loc)) = expected.next() else {
                    break;
                };
                if header.base_offset != loc.base_offset {
                    return Err(io::Error::other(format!(
                        "raft index {index}: batch at {} where {} was expected",
                        header.base_offset, loc.base_offset
                    )));
                }
                out.push(decode_entry(*index, batch).map_err(io_err)?);
                offset = header.last_offset() + 1;
            }
        }
        Ok(out)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TallyRaft> for SegmentLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        let (cached, locs) = {
            let index = self.inner.index.read();
            let (from, cached) = self.inner.cache.lock().range(start, end);
            (cached, index.range(start, from))
        };
        if locs.is_empty() {
            return Ok(cached);
        }
        let mut entries = self.blocking(move |inner| inner.read_entries(locs)).await?;
        if let (Some(last), Some(first)) = (entries.last(), cached.first()) {
            if last.log_id.index + 1 != first.log_id.index {
                return Err(io::Error::other(format!(
                    "entries read up to {} and cached from {}",
                    last.log_id, first.log_id
                )));
            }
        }
        entries.extend(cached);
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.inner.meta.lock().vote)
    }
}

impl RaftLogStorage<TallyRaft> for SegmentLogStore {
    type LogReader = SegmentLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TallyRaft>, io::Error> {
        let index = self.inner.index.read();
        Ok(LogState {
            last_purged_log_id: index.last_purged(),
            last_log_id: index.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.blocking(move |inner| {
            let _writer = inner.log.lock();
            // A vote in a later term ends any term this replica led: entries of that term
            // that reach it later come from another leader and are stored as they are.
            let mut leader = inner.leader.lock();
            if leader
                .as_ref()
                .is_some_and(|l| l.term < vote.leader_id.term)
            {
                *leader = None;
            }
            drop(leader);
            inner.save_meta(|m| m.vote = Some(vote))
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.blocking(move |inner| {
            let _writer = inner.log.lock();
            raft_meta::save_committed(&inner.dir, committed.as_ref())?;
            *inner.committed.lock() = committed;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(*self.inner.committed.lock())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TallyRaft>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.blocking(move |inner| inner.append(entries)).await;
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.blocking(move |inner| inner.truncate_after(last_log_id))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.blocking(move |inner| inner.purge(log_id)).await
    }
}
