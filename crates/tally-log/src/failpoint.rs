//! Crash points for tests: with `TALLY_FAILPOINT=<name>` or `<name>@<n>` in the environment,
//! the process kills itself with SIGKILL the first (or n-th) time it reaches that point, as a
//! power cut or `kill -9` at exactly that moment would. Without the variable, [`hit`] is one
//! relaxed atomic load.
//!
//! Points: `log.append.before_write`, `log.append.after_write` (written, producer state not yet
//! updated), `log.roll.after_flush` (old segment flushed, new one not created),
//! `log.roll.after_new_segment` (new segment, recovery point not moved), `snapshot.before_rename`
//! (temporary file written), `snapshot.after_rename`, `partition.roll.after_snapshot` (snapshot
//! written, log not rolled), `writer.group_commit.before_flush` (a turn of a partition writer
//! applied its appends, nothing flushed or answered yet), `txn.complete.before_markers` (a
//! PrepareCommit or PrepareAbort written, no marker yet), `txn.complete.after_marker` (after
//! each marker of a transaction), `txn.complete.before_record` (every marker written, the
//! completion not), `log.recovery_point.before_rename`, `index.save.before_rename` (an index
//! written to its temporary file), `segment.delete.after_log` (a segment's log file deleted,
//! its indexes not), `log.recovery.after_segment` (recovery scanned a segment: a crash while
//! recovering), `producer_ids.before_rename` (a new producer-id block written, not in place),
//! `topics.before_rename` (the topics file), `group_store.compaction.before_delete`
//! (`__consumer_offsets` rewritten after a roll, the old segments not yet deleted).
//!
//! With `TALLY_POWER_CUT=<data directory>` as well, the point is a power cut instead: the
//! storage seam tracks what was never fsynced under that directory, and at the point drops
//! it (see `storage.rs`) before the SIGKILL.

//!
//! Pauses: `TALLY_PAUSE=<name>:<ms>` sleeps that long every time the point is reached (a slow
//! disk, say during recovery, so that a test can watch `/readyz` answer 503 meanwhile).
//!
//! Controls: `TALLY_CONTROL=<name>[,<name>...]` turns one guarantee off on purpose, so that a
//! test can show it fails without it (never for real use). `skip-replay`: a partition opens
//! from its producer snapshot alone, without replaying the log after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Armed {
    name: String,
    at_hit: u64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed() -> &'static Option<Armed> {
    ARMED.get_or_init(|| {
        let value = std::env::var("TALLY_FAILPOINT").ok()?;
        let (name, at_hit) = match value.split_once('@') {
            Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
            None => (value, 1),
        };
        Some(Armed { name, at_hit })
    })
}

static CONTROLS: OnceLock<Vec<String>> = OnceLock::new();

/// Whether the test control `name` is on (see the module's text).
pub fn control(name: &str) -> bool {
    CONTROLS
        .get_or_init(|| {
            std::env::var("TALLY_CONTROL")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|c| c == name)
}

static PAUSE: OnceLock<Option<(String, u64)>> = OnceLock::new();

fn pause() -> &'static Option<(String, u64)> {
    PAUSE.get_or_init(|| {
        let value = std::env::var("TALLY_PAUSE").ok()?;
        let (name, ms) = value.rsplit_once(':')?;
        Some((name.to_string(), ms.parse().ok()?))
    })
}

/// Marks a crash point: pauses there if `TALLY_PAUSE` names it; kills the process if it is the
/// armed one and its hit count is reached.
pub fn hit(name: &str) {
    if let Some((paused, ms)) = pause() {
        if paused == name {
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
    }
    let Some(armed) = armed() else {
        return;
    };
    if armed.name == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == armed.at_hit {
        if std::env::var_os("TALLY_POWER_CUT").is_some() {
            eprintln!("failpoint {name} reached: power cut");
            crate::storage::power_cut_and_die();
        }
        eprintln!("failpoint {name} reached: SIGKILL");
        // SAFETY: sending a signal to our own process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
