//! What the Raft log store keeps beside the segments: the vote, the last purged log id and
//! where the entries start (`raft-meta.json`, replaced atomically and made durable before
//! the call that changed it returns), and the committed log id (`raft-committed`, a hint).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tally_log::storage;

use crate::type_config::{LogId, Vote};

const META_FILE: &str = "raft-meta.json";
const COMMITTED_FILE: &str = "raft-committed.json";

/// The raft index and Kafka offset of the first entry the segments hold for the group: the
/// entries are every batch from that offset on, numbered consecutively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FirstEntry {
    pub index: u64,
    pub base_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RaftMeta {
    pub vote: Option<Vote>,
    pub last_purged: Option<LogId>,
    /// None: the segments hold no entry of the group (yet, or after a purge past the end).
    pub first_entry: Option<FirstEntry>,
}

impl RaftMeta {
    /// The saved state, or the empty one for a new log. A file that does not parse is an
    /// error: forgetting a vote could let this replica vote twice in one term.
    pub fn load(dir: &Path) -> io::Result<RaftMeta> {
        let path = dir.join(META_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RaftMeta::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the file and makes the new one durable.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        replace(dir, META_FILE, &bytes, true)
    }
}

/// The committed log id saved by `save_committed`, or None when there is none or it does not
/// parse: it only tells a restarted replica how far it may re-apply before it hears from the
/// leader, and a lower value is always safe.
pub(crate) fn load_committed(dir: &Path) -> Option<LogId> {
    let bytes = std::fs::read(dir.join(COMMITTED_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Written without an fsync: it moves on every commit, and losing the newest value to a power
/// cut only means re-applying less before the leader says more (see `load_committed`).
pub(crate) fn save_committed(dir: &Path, committed: Option<&LogId>) -> io::Result<()> {
    let bytes = serde_json::to_vec(&committed).map_err(io::Error::other)?;
    replace(dir, COMMITTED_FILE, &bytes, false)
}

pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
    // `Log::open` removes `*.tmp` files, so a crash here leaves nothing behind.
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let file = storage::create(&tmp)?;
    storage::write_all_at(&file, &tmp, bytes, 0)?;
    if durable {
        storage::sync_data(&file, &tmp)?;
    }
    storage::rename(&tmp, &path)?;
    if durable {
        storage::sync_dir(dir)?;
    }
    Ok(())
}
