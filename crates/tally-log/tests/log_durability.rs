//! What the log makes durable, checked with the storage seam's power cut (which keeps only
//! what was fsynced: file data and directory entries), and reads that must not wait for the
//! disk, checked against pages really dropped from the page cache. cargo-mutants found both
//! unchecked by the other tests of this crate (docs/testing.md §8).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use tally_log::{storage, AbortedTxn, Log, LogError, ReadMode};

mod common;
use common::*;

/// A tracked log directory inside a temporary one, untracked when dropped.
struct Tracked {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
}

impl Tracked {
    fn new() -> Tracked {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("log");
        std::fs::create_dir(&root).unwrap();
        storage::track(&root);
        Tracked { _tmp: tmp, root }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        storage::untrack(&self.root);
    }
}

/// A flushed append survives a power cut: the segment's data was fsynced, and the directory
/// entries of the segment files it created were made durable.
#[test]
fn flushed_appends_in_new_segments_survive_a_power_cut() {
    let t = Tracked::new();
    let (mut log, _) = Log::open(&t.root, config(1 << 20)).unwrap();
    let mut bases = Vec::new();
    for i in 0..5 {
        bases.push(append(&mut log, 2, 1000 + i));
    }
    log.flush().unwrap();
    log.roll().unwrap();
    for i in 0..3 {
        bases.push(append(&mut log, 2, 2000 + i));
    }
    log.flush().unwrap();
    // Not flushed: may be lost.
    append(&mut log, 2, 3000);
    drop(log);

    let report = storage::power_cut(&t.root).unwrap();
    assert!(report.bytes_lost > 0, "{report:?}");
    let (log, _) = Log::open(&t.root, config(1 << 20)).unwrap();
    let got: Vec<i64> = read_all(&log).iter().map(|h| h.base_offset).collect();
    assert_eq!(got, bases);
}

/// An aborted transaction recorded in an older segment (not flushed again by the log) is
/// flushed at once; one in the active segment waits for the log's next flush.
#[test]
fn an_aborted_transaction_in_an_older_segment_is_durable_at_once() {
    let t = Tracked::new();
    let (mut log, _) = Log::open(&t.root, config(1 << 20)).unwrap();
    for i in 0..5 {
        append(&mut log, 2, 1000 + i);
    }
    let new_base = log.roll().unwrap();
    append(&mut log, 2, 2000);
    log.flush().unwrap();
    let old = AbortedTxn {
        producer_id: 7,
        first_offset: 2,
        last_offset: 9,
        last_stable_offset: 2,
    };
    log.append_aborted_txn(old).unwrap();
    let active = AbortedTxn {
        producer_id: 8,
        first_offset: new_base,
        last_offset: new_base + 1,
        last_stable_offset: new_base,
    };
    log.append_aborted_txn(active).unwrap();
    drop(log);

    storage::power_cut(&t.root).unwrap();
    let (log, _) = Log::open(&t.root, config(1 << 20)).unwrap();
    assert_eq!(log.log_end_offset(), new_base + 2);
    let found = log.reader().collect_aborted_txns(0, log.log_end_offset());
    assert_eq!(
        found,
        vec![old],
        "the active segment's entry waits for a flush"
    );
}

/// Drops `[from, end of file)` of `path` from the page cache (the pages are clean: flushed).
fn evict(path: &Path, from: i64) {
    let file = File::open(path).unwrap();
    // The kernel drops clean pages only: written back first, so that whether the advice
    // takes does not depend on when background writeback ran (it failed once under CI load).
    file.sync_all().unwrap();
    // SAFETY: a plain advice call on a file descriptor we own.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), from, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

/// A log of one segment well over 128 KiB, flushed.
fn big_log(dir: &Path) -> Log {
    let (mut log, _) = Log::open(dir, config(64 << 20)).unwrap();
    while log.size_in_bytes() < 256 << 10 {
        append(&mut log, 50, 1000);
    }
    log.flush().unwrap();
    log
}

#[test]
fn a_read_that_must_not_wait_returns_bytes_in_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let log = big_log(dir.path());
    let end = log.log_end_offset();
    let from = end / 2;
    let blocking = log.read(from, 64 << 10, end, true).unwrap();
    let no_wait = log
        .reader()
        .read_with(from, 64 << 10, end, true, ReadMode::NoWait)
        .unwrap();
    assert!(blocking.records.len() > 32 << 10);
    assert_eq!(no_wait.records, blocking.records);
    assert_eq!(no_wait.first_batch_offset, blocking.first_batch_offset);
}

/// Half of the range cached, half not: the read that must not wait says so (it does not
/// return the cached half, nor anything else), and a blocking read gets every byte.
#[test]
fn a_read_that_must_not_wait_refuses_bytes_not_in_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let log = big_log(dir.path());
    let end = log.log_end_offset();
    let path = active_segment_path(dir.path(), &log);
    let expected = log.read(0, 64 << 10, end, true).unwrap();
    assert!(expected.records.len() > 48 << 10);

    evict(&path, 32 << 10);
    match log
        .reader()
        .read_with(0, 64 << 10, end, true, ReadMode::NoWait)
    {
        Err(LogError::WouldBlock) => {}
        other => panic!("expected WouldBlock, got {other:?}"),
    }

    evict(&path, 0);
    let got = log.read(0, 64 << 10, end, true).unwrap();
    assert_eq!(got.records, expected.records);
}
