//! The partition's state machine: what a committed entry changes, on every replica, in log
//! order. The entry's bytes are in the segments already (the log store wrote them), so
//! applying an entry moves the producer table through the same transition a single-node
//! partition uses (`ProducerTable::apply_batch`) and the high watermark past the batch: Fetch
//! reads up to it, and a Produce is answered with the batch's offsets. The producer table is
//! therefore a function of the committed log, the same on every replica: a retry that reaches
//! a new leader is judged against the same five-batch memory.
//!
//! Every client batch is checked again here (`ProducerTable::check`) before it is applied;
//! the leader decided against the same state, so a check that does not say Append is a bug,
//! counted (`check_disagreements`) and logged.
//!
//! A snapshot's state holds the applied log id, the membership, the high watermark and the
//! producer table. Its records are the log itself: a snapshot sent to a replica carries the
//! sender's retained log (`snapshot_records.rs`), and installing it starts the receiver's log
//! again from those bytes when its own lacks them (`snapshot_install.rs`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use tally_partition::{
    decode_producer_state, encode_producer_state, AppendDecision, BatchMetadata, ProducerTable,
};
use tally_protocol::{parse_marker, BatchHeader};
use tokio::sync::watch;

use crate::entry_codec::{is_raft_entry, is_refused, log_start_of};
use crate::log_store::SegmentLogStore;
use crate::type_config::{
    AppliedBatch, CommittedLeaderId, LogId, Node, RaftBatch, SnapshotMeta, StoredMembership,
    TallyRaft,
};

use crate::snapshot_install::{replace_file, SNAPSHOT_FILE};
use crate::snapshot_records::{stage_from, PartitionSnapshot, SnapshotRecords};

/// What openraft's snapshots carry: the state, and where the records are.
pub type SnapshotData = PartitionSnapshot;

/// The encoded state of a snapshot (see `encode_snapshot`).
type StateBytes = Vec<u8>;

/// Told of every committed batch that is not one of Raft's own, in log order, on every
/// replica, as it is applied: how state kept outside the producer table (the controller's
/// cluster metadata) follows the log. It must be deterministic and must not block: it runs
/// inside the state machine's apply. It sees the log again from the start after a restart,
/// as the producer table does, so its group must never build a snapshot (the controller's
/// does not: only retention builds them, and the controller has none).
pub trait ApplyListener: Send + Sync + 'static {
    /// `header` carries the batch's offsets in the log; `batch` is the batch as stored.
    fn applied(&self, header: &BatchHeader, batch: &[u8]);
}

type RaftSnapshot = Snapshot<CommittedLeaderId, u64, Node, SnapshotData>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The offset after the last applied batch.
    high_watermark: i64,
    /// The offset after the last applied batch a client can read: Raft's own entries (blank,
    /// membership, refused) are never fetched, so a consumer could not move past one at the
    /// end of the log. None in snapshots written before it existed: the high watermark.
    #[serde(default)]
    client_end: Option<i64>,
    /// The highest offset a log-start entry named: retention may delete the segments below
    /// it (`retention.rs`). 0 in snapshots written before it existed.
    #[serde(default)]
    log_start_floor: i64,
}

impl State {
    fn client_end(&self) -> i64 {
        self.client_end.unwrap_or(self.high_watermark)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: StateBytes,
}

/// Cheap to clone: clones share the state.
#[derive(Clone)]
pub struct PartitionStateMachine {
    dir: PathBuf,
    store: SegmentLogStore,
    state: Arc<Mutex<State>>,
    producers: Arc<Mutex<ProducerTable>>,
    max_producers: usize,
    check_disagreements: Arc<AtomicU64>,
    /// Snapshots installed since this replica opened: all, and those that replaced the log.
    installs: Arc<[AtomicU64; 2]>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    high_watermark: Arc<watch::Sender<i64>>,
    listener: Option<Arc<dyn ApplyListener>>,
}

impl PartitionStateMachine {
    /// The state machine of the partition whose log is `store`, in the same directory,
    /// starting from its saved snapshot (openraft re-applies the committed entries after it).
    pub fn open(
        dir: &Path,
        store: SegmentLogStore,
        max_producers: usize,
    ) -> io::Result<PartitionStateMachine> {
        let snapshot: Option<StoredSnapshot> = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{SNAPSHOT_FILE}: {e}"))
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (state, producers) = match &snapshot {
            Some(s) => decode_snapshot(&s.data, max_producers)?,
            None => (State::default(), ProducerTable::new(max_producers)),
        };
        let (high_watermark, _) = watch::channel(state.high_watermark);
        Ok(PartitionStateMachine {
            dir: dir.to_path_buf(),
            store,
            state: Arc::new(Mutex::new(state)),
            producers: Arc::new(Mutex::new(producers)),
            max_producers,
            check_disagreements: Arc::new(AtomicU64::new(0)),
            installs: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
            snapshot: Arc::new(Mutex::new(snapshot)),
            high_watermark: Arc::new(high_watermark),
            listener: None,
        })
    }

    /// Tells `listener` of every batch this state machine applies from now on. Set it
    /// before the Raft starts, so it sees the log from the start.
    pub fn with_listener(mut self, listener: Arc<dyn ApplyListener>) -> PartitionStateMachine {
        self.listener = Some(listener);
        self
    }

    /// The high watermark: every offset below it is committed. Changes wake the receiver.
    pub fn high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// The high watermark clients see (Fetch, ListOffsets): the end of the last committed
    /// batch that Fetch returns. Raft's entries after it are committed but never returned, so
    /// a consumer that has read everything is at the end and has no lag. The next client batch
    /// moves it past them; a fetch from an offset inside them returns that batch.
    pub fn client_high_watermark(&self) -> i64 {
        self.state.lock().client_end()
    }

    /// The highest offset an applied log-start entry named (see `entry_codec.rs`): every
    /// record below it may be deleted.
    pub fn log_start_floor(&self) -> i64 {
        self.state.lock().log_start_floor
    }

    /// A copy of the committed producer table: what a new leader starts deciding from.
    pub fn producers(&self) -> ProducerTable {
        self.producers.lock().clone()
    }

    /// The committed batch of `producer_id` whose last sequence is `last_seq` in `epoch`, if
    /// the table still remembers it: where a retried batch was stored.
    pub fn committed_batch(
        &self,
        producer_id: i64,
        epoch: i16,
        last_seq: i32,
    ) -> Option<BatchMetadata> {
        let producers = self.producers.lock();
        let entry = producers.get(producer_id)?;
        if entry.producer_epoch != epoch {
            return None;
        }
        entry
            .batch_metadata
            .iter()
            .find(|b| b.last_seq == last_seq)
            .copied()
    }

    /// Committed client batches that the replica's own check did not find new (see the
    /// module comment): always 0 unless the leader's decision and the log disagree.
    pub fn check_disagreements(&self) -> u64 {
        self.check_disagreements.load(Ordering::Relaxed)
    }

    /// Snapshots this replica installed since it opened, and how many of them replaced its
    /// log with the sender's records (a catch-up past segments the leader deleted).
    pub fn snapshots_installed(&self) -> (u64, u64) {
        (
            self.installs[0].load(Ordering::Relaxed),
            self.installs[1].load(Ordering::Relaxed),
        )
    }

    /// Moves the producer table through a committed batch, with its offsets in the log.
    fn apply_to_producers(&self, header: &BatchHeader, batch: &[u8]) {
        let mut producers = self.producers.lock();
        let marker = if header.is_control() {
            parse_marker(header, batch).ok()
        } else {
            None
        };
        if !header.is_control() && header.has_producer_id() {
            match producers.check(header, true) {
                Ok(AppendDecision::Append) => {}
                other => {
                    self.check_disagreements.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        producer_id = header.producer_id,
                        base_sequence = header.base_sequence,
                        offset = header.base_offset,
                        outcome = ?other,
                        "a committed batch is not new to the producer table"
                    );
                }
            }
        }
        // The batch's own max timestamp stands for the append time: every replica must
        // compute the same state, so no clock is read here.
        producers.apply_batch(header, marker.as_ref(), header.max_timestamp);
    }

    /// Where the applied entry's batch is, from the log store, or from the batch itself
    /// (which carries its offsets) when the store does not know the index.
    fn applied_batch(
        &self,
        log_id: &LogId,
        payload: &EntryPayload<RaftBatch, u64, Node>,
    ) -> Option<AppliedBatch> {
        if let Some((base, end)) = self.store.offsets_of(log_id.index) {
            return Some(AppliedBatch {
                base_offset: base,
                last_offset: end - 1,
            });
        }
        match payload {
            EntryPayload::Normal(RaftBatch(b)) => {
                BatchHeader::parse(b).ok().map(|h| AppliedBatch {
                    base_offset: h.base_offset,
                    last_offset: h.last_offset(),
                })
            }
            _ => None,
        }
    }

    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> io::Result<()> {
        let bytes = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
        replace_file(&self.dir, SNAPSHOT_FILE, &bytes)
    }

    /// openraft's view of a stored snapshot: its records are this replica's log.
    fn to_raft(&self, stored: StoredSnapshot) -> RaftSnapshot {
        Snapshot {
            meta: stored.meta,
            snapshot: PartitionSnapshot {
                state: stored.data,
                records: SnapshotRecords::Local(self.store.clone()),
            },
        }
    }
}

/// A snapshot's bytes: the state as JSON (length-prefixed), then the producer table in the
/// producer snapshot format.
fn encode_snapshot(state: &State, producers: &ProducerTable) -> io::Result<StateBytes> {
    let json = serde_json::to_vec(state).map_err(io::Error::other)?;
    let table = encode_producer_state(producers.map_end_offset(), &producers.entries());
    let mut out = Vec::with_capacity(4 + json.len() + table.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&table);
    Ok(out)
}

/// The offset after the last record that a snapshot's state covers: where its records end.
pub(crate) fn snapshot_end_offset(data: &[u8]) -> io::Result<i64> {
    Ok(decode_snapshot(data, usize::MAX)?.0.high_watermark)
}

fn decode_snapshot(data: &[u8], max_producers: usize) -> io::Result<(State, ProducerTable)> {
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot: {e}"));
    let len = data
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| bad("short".into()))?;
    let json = data
        .get(4..4 + len)
        .ok_or_else(|| bad("short state".into()))?;
    let state: State = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let (map_end, entries) = decode_producer_state(&data[4 + len..]).map_err(bad)?;
    Ok((
        state,
        ProducerTable::from_entries(entries, map_end, max_producers),
    ))
}

impl RaftSnapshotBuilder<TallyRaft> for PartitionStateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<RaftSnapshot, io::Error> {
        // One lock order (state, then producers) wherever both are taken.
        let (state, data) = {
            let state = self.state.lock();
            let data = encode_snapshot(&state, &self.producers.lock())?;
            (state.clone(), data)
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: state.applied,
                last_membership: state.membership.clone(),
            },
            data,
        };
        let sm = self.clone();
        let to_save = stored.clone();
        self.store
            .io()
            .run(move || sm.save_snapshot(&to_save))
            .await??;
        *self.snapshot.lock() = Some(stored.clone());
        Ok(self.to_raft(stored))
    }
}

impl RaftStateMachine<TallyRaft> for PartitionStateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = PartitionStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.state.lock();
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TallyRaft>, io::Error>> + Unpin + OptionalSend,
    {
        let mut last_applied = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            last_applied = Some(entry.log_id.index);
            let applied = self.applied_batch(&entry.log_id, &entry.payload);
            let mut refused = false;
            // A Raft entry among the Normal ones (a refused batch's stand-in, a log start):
            // never fetched, never shown to the listener.
            let mut raft_entry = false;
            let mut log_start = None;
            if let (EntryPayload::Normal(RaftBatch(bytes)), Some(a)) = (&entry.payload, applied) {
                if let Ok(mut header) = BatchHeader::parse(bytes) {
                    refused = is_refused(&header, bytes);
                    raft_entry = is_raft_entry(&header, bytes);
                    log_start = log_start_of(&header, bytes);
                    // The leader's entry may still carry the client's offsets: the log's are
                    // the ones that count.
                    header.base_offset = a.base_offset;
                    header.partition_leader_epoch = entry.log_id.leader_id.term as i32;
                    self.apply_to_producers(&header, bytes);
                    if let (Some(listener), false) = (&self.listener, raft_entry) {
                        listener.applied(&header, bytes);
                    }
                }
            } else if let Some(a) = applied {
                self.producers.lock().set_map_end_offset(a.last_offset + 1);
            }
            {
                let mut state = self.state.lock();
                state.applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
                if let Some(offset) = log_start {
                    state.log_start_floor = state.log_start_floor.max(offset);
                }
                if let Some(a) = applied {
                    state.high_watermark = state.high_watermark.max(a.last_offset + 1);
                    let fetched = matches!(entry.payload, EntryPayload::Normal(_)) && !raft_entry;
                    state.client_end = Some(if fetched {
                        state.client_end().max(a.last_offset + 1)
                    } else {
                        state.client_end()
                    });
                    self.high_watermark.send_replace(state.high_watermark);
                }
            }
            if let Some(responder) = responder {
                // No offsets: the proposal is answered as refused (see `PartitionLeader`).
                let nowhere = AppliedBatch {
                    base_offset: -1,
                    last_offset: -1,
                };
                responder.send(applied.filter(|_| !refused).unwrap_or(nowhere));
            }
        }
        if let Some(index) = last_applied {
            self.store.applied_upto(index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let (mut state, producers) = decode_snapshot(&snapshot.state, self.max_producers)?;
        let last_log_id = meta
            .last_log_id
            .ok_or_else(|| io::Error::other("a snapshot with no last log id"))?;
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let end_offset = state.high_watermark;
        let staged = match snapshot.records {
            SnapshotRecords::Staged(staged) => Some(staged),
            // Sent within one process (the in-process network, openraft's storage suite):
            // stage the sender's records here, as the wire transfer would.
            SnapshotRecords::Local(source) => {
                let (dir, config) = (self.dir.clone(), self.store.log_config());
                let staged = self
                    .store
                    .io()
                    .run(move || stage_from(&source, &dir, end_offset, config))
                    .await??;
                Some(staged)
            }
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.state,
        };
        let file = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        let replaced = self
            .store
            .install_snapshot(last_log_id, end_offset, staged, file)
            .await?;
        tracing::info!(
            dir = %self.dir.display(),
            last_log_id = %last_log_id,
            end_offset,
            replaced,
            "installed a snapshot"
        );
        self.high_watermark.send_replace(state.high_watermark);
        {
            let mut current = self.state.lock();
            *current = state;
            *self.producers.lock() = producers;
        }
        *self.snapshot.lock() = Some(stored);
        self.installs[0].fetch_add(1, Ordering::Relaxed);
        if replaced {
            self.installs[1].fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<RaftSnapshot>, io::Error> {
        let stored = self.snapshot.lock().clone();
        Ok(stored.map(|s| self.to_raft(s)))
    }
}
