//! The disk fills up, or the data directory is read-only: clients get a clear error
//! (KAFKA_STORAGE_ERROR, or one error line at start-up), nothing stored is corrupted, and the
//! broker recovers by itself when space returns. Uses a small tmpfs mounted for the test (the
//! test needs root, as CI runs).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const KAFKA_STORAGE_ERROR: i16 = 56;

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("tally-tmpfs-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "this test mounts a small tmpfs to fill it up; it needs root (CI runs as root)"
        );
        Tmpfs { path, _dir: dir }
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem with a file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    path
}

#[test]
fn a_full_disk_is_a_storage_error_without_corruption_and_recovers() {
    let fs = Tmpfs::mount("3m");
    let data = fs.path.join("data");
    let mut broker = BrokerProcess::start_in(
        Path::new(TALLY),
        Some(data.clone()),
        &["--set", "log.segment.bytes=65536"],
        &[],
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("full", 1).unwrap();
    let (pid, _) = c.init_producer_id().unwrap();
    let mut seq = 0;
    for _ in 0..20 {
        assert_eq!(
            c.produce(9, "full", 0, batch(pid, 0, seq, 10))
                .unwrap()
                .error_code,
            0
        );
        seq += 10;
    }
    let stored = c.fetch_once("full", 0, 0, 1 << 20).unwrap().2;

    let filler = fill(&fs.path);
    // Appends now fail as the disk is full (a few may still fit in the last free blocks).
    let mut refused = 0;
    for _ in 0..200 {
        let r = c.produce(9, "full", 0, batch(pid, 0, seq, 50)).unwrap();
        match r.error_code {
            0 => seq += 50,
            KAFKA_STORAGE_ERROR => {
                refused += 1;
                assert!(
                    r.error_message
                        .as_deref()
                        .unwrap_or("")
                        .contains("No space"),
                    "{:?}",
                    r.error_message
                );
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("unexpected error {other}"),
        }
    }
    assert!(refused >= 3, "the disk never filled up");
    let end = c.list_offset("full", 0, -1).unwrap();
    assert_eq!(end, i64::from(seq), "failed appends moved the log end");
    let again = c.fetch_once("full", 0, 0, 1 << 20).unwrap().2;
    assert_eq!(&again[..stored.len()], &stored[..], "stored data changed");

    // Space returns: the refused batch (same sequence, never written) is accepted now.
    fs::remove_file(filler).unwrap();
    let r = c.produce(9, "full", 0, batch(pid, 0, seq, 50)).unwrap();
    assert_eq!((r.error_code, r.base_offset), (0, end));
    assert_eq!(
        c.produce(9, "full", 0, batch(pid, 0, seq, 50))
            .unwrap()
            .base_offset,
        end,
        "and its retry is a duplicate"
    );
    drop(c);
    broker.kill9();
    broker.restart();
    assert!(
        !broker.logs().contains("torn or corrupt"),
        "recovery had to cut the log:\n{}",
        broker.logs()
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    assert_eq!(c.list_offset("full", 0, -1).unwrap(), end + 50);
    let batches = c.read_batches("full", 0).unwrap();
    assert_eq!(batches.last().unwrap().last_offset() + 1, end + 50);
}

#[test]
fn a_read_only_data_directory_is_one_clear_error_at_start() {
    let fs = Tmpfs::mount("2m");
    let data = fs.path.join("data");
    let mut broker = BrokerProcess::start_in(Path::new(TALLY), Some(data.clone()), &[], &[]);
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("ro", 1).unwrap();
    assert_eq!(
        c.produce(9, "ro", 0, batch(-1, -1, -1, 5))
            .unwrap()
            .error_code,
        0
    );
    drop(c);
    assert!(broker.terminate().success());
    fs.remount("ro");
    let out = Command::new(TALLY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    fs.remount("rw");
    broker.restart();
    let mut c = WireClient::connect(broker.addr).unwrap();
    assert_eq!(
        c.list_offset("ro", 0, -1).unwrap(),
        5,
        "the data is intact once writable again"
    );
}
