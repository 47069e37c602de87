//! The partition's state machine: what a committed entry changes. The entry's bytes are in
//! the segments already (the log store wrote them), so applying an entry moves the high
//! watermark past its batch: Fetch reads up to it, and a Produce is answered with the batch's
//! offsets.
//!
//! For now a snapshot holds the applied log id, the membership and the high watermark, not the
//! records below it. So a replica must never be sent a snapshot instead of entries: the
//! group is configured never to purge its log (`raft_config`), until snapshots carry
//! segment files.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tally_log::storage;
use tally_protocol::BatchHeader;
use tokio::sync::watch;

use crate::log_store::SegmentLogStore;
use crate::type_config::{
    AppliedBatch, CommittedLeaderId, LogId, Node, RaftBatch, SnapshotMeta, StoredMembership,
    TallyRaft,
};

const SNAPSHOT_FILE: &str = "raft-snapshot.json";

/// A snapshot's bytes: the state machine's state as JSON.
pub type SnapshotData = Vec<u8>;

type RaftSnapshot = Snapshot<CommittedLeaderId, u64, Node, SnapshotData>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The offset after the last applied batch.
    high_watermark: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: SnapshotData,
}

/// Cheap to clone: clones share the state.
#[derive(Clone)]
pub struct PartitionStateMachine {
    dir: PathBuf,
    store: SegmentLogStore,
    state: Arc<Mutex<State>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    high_watermark: Arc<watch::Sender<i64>>,
}

impl PartitionStateMachine {
    /// The state machine of the partition whose log is `store`, in the same directory,
    /// starting from its saved snapshot (openraft re-applies the committed entries after it).
    pub fn open(dir: &Path, store: SegmentLogStore) -> io::Result<PartitionStateMachine> {
        let snapshot: Option<StoredSnapshot> = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{SNAPSHOT_FILE}: {e}"))
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let state = match &snapshot {
            Some(s) => decode_state(&s.data)?,
            None => State::default(),
        };
        let (high_watermark, _) = watch::channel(state.high_watermark);
        Ok(PartitionStateMachine {
            dir: dir.to_path_buf(),
            store,
            state: Arc::new(Mutex::new(state)),
            snapshot: Arc::new(Mutex::new(snapshot)),
            high_watermark: Arc::new(high_watermark),
        })
    }

    /// The high watermark: every offset below it is committed. Changes wake the receiver.
    pub fn high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
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
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let file = storage::create(&tmp)?;
        storage::write_all_at(&file, &tmp, &bytes, 0)?;
        storage::sync_data(&file, &tmp)?;
        storage::rename(&tmp, &self.dir.join(SNAPSHOT_FILE))?;
        storage::sync_dir(&self.dir)
    }
}

fn decode_state(data: &[u8]) -> io::Result<State> {
    serde_json::from_slice(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl RaftSnapshotBuilder<TallyRaft> for PartitionStateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<RaftSnapshot, io::Error> {
        let state = self.state.lock().clone();
        let data = serde_json::to_vec(&state).map_err(io::Error::other)?;
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: state.applied,
                last_membership: state.membership.clone(),
            },
            data,
        };
        let sm = self.clone();
        let to_save = stored.clone();
        tokio::task::spawn_blocking(move || sm.save_snapshot(&to_save))
            .await
            .map_err(io::Error::other)??;
        *self.snapshot.lock() = Some(stored.clone());
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: stored.data,
        })
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
        while let Some((entry, responder)) = entries.try_next().await? {
            let applied = self.applied_batch(&entry.log_id, &entry.payload);
            {
                let mut state = self.state.lock();
                state.applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
                if let Some(a) = applied {
                    state.high_watermark = state.high_watermark.max(a.last_offset + 1);
                    self.high_watermark.send_replace(state.high_watermark);
                }
            }
            if let Some(responder) = responder {
                responder.send(applied.unwrap_or(AppliedBatch {
                    base_offset: -1,
                    last_offset: -1,
                }));
            }
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
        let mut state = decode_state(&snapshot)?;
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot,
        };
        let sm = self.clone();
        let to_save = stored.clone();
        tokio::task::spawn_blocking(move || sm.save_snapshot(&to_save))
            .await
            .map_err(io::Error::other)??;
        self.high_watermark.send_replace(state.high_watermark);
        *self.state.lock() = state;
        *self.snapshot.lock() = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<RaftSnapshot>, io::Error> {
        Ok(self.snapshot.lock().clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}
