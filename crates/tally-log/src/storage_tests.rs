use super::*;

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

/// A tracked temporary directory, untracked when dropped.
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        track(dir.path());
        Root(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn cut(&self) -> PowerCutReport {
        power_cut(self.path()).unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        untrack(self.0.path());
    }
}

fn created_synced(root: &Root, name: &str, bytes: &[u8]) -> (PathBuf, File) {
    let path = root.path().join(name);
    let file = open(
        OpenOptions::new().read(true).write(true).create(true),
        &path,
    )
    .unwrap();
    write_all_at(&file, &path, bytes, 0).unwrap();
    sync_data(&file, &path).unwrap();
    sync_dir(root.path()).unwrap();
    (path, file)
}

#[test]
fn unsynced_appends_are_lost_synced_ones_kept() {
    let root = Root::new();
    let (path, file) = created_synced(&root, "a.log", b"durable");
    write_all_at(&file, &path, b"-lost", 7).unwrap();
    assert_eq!(read(&path).unwrap(), b"durable-lost");
    let report = root.cut();
    assert_eq!(read(&path).unwrap(), b"durable");
    assert_eq!(report.files_reverted, 1);
    assert_eq!(report.bytes_lost, 5);
}

#[test]
fn an_unsynced_overwrite_and_truncation_are_undone() {
    let root = Root::new();
    let (path, file) = created_synced(&root, "a.log", b"0123456789");
    write_all_at(&file, &path, b"ab", 2).unwrap();
    set_len(&file, &path, 4).unwrap();
    write_all_at(&file, &path, b"XYZWVU", 3).unwrap();
    set_len(&file, &path, 1).unwrap();
    write_all_at(&file, &path, b"abcde", 1).unwrap();
    let report = root.cut();
    assert_eq!(read(&path).unwrap(), b"0123456789");
    // Durable bytes each change overwrote or cut, when it did: 2 written over, 6 cut, 1
    // written over (the file was 4 long then), 8 cut (it was 9); the last write only extends.
    assert_eq!(report.bytes_lost, 2 + 6 + 1 + 8);
}

#[test]
fn a_later_fsync_makes_changes_durable() {
    let root = Root::new();
    let (path, file) = created_synced(&root, "a.log", b"one");
    write_all_at(&file, &path, b"two", 3).unwrap();
    sync_all(&file, &path).unwrap();
    write_all_at(&file, &path, b"three", 6).unwrap();
    root.cut();
    assert_eq!(read(&path).unwrap(), b"onetwo");
}

/// An fsync covers what was written before it started: bytes another thread appended while
/// it ran are still lost in a power cut.
#[test]
fn an_fsync_does_not_cover_appends_made_while_it_ran() {
    let root = Root::new();
    let (path, file) = created_synced(&root, "a.log", b"one");
    write_all_at(&file, &path, b"two", 3).unwrap();
    // The fsync starts here...
    let len_before = tracked_len(&file);
    assert_eq!(len_before, Some(6));
    // ...another thread appends...
    write_all_at(&file, &path, b"three", 6).unwrap();
    // ...and the fsync returns.
    file.sync_data().unwrap();
    synced_file(&path, len_before);
    let report = root.cut();
    assert_eq!(read(&path).unwrap(), b"onetwo");
    assert_eq!(
        report.bytes_lost, 5,
        "the append made during the fsync is lost"
    );
}

#[test]
fn a_new_file_needs_its_directory_fsynced() {
    let root = Root::new();
    let kept = root.path().join("kept");
    let file = create(&kept).unwrap();
    sync_data(&file, &kept).unwrap();
    sync_dir(root.path()).unwrap();
    // Entry durable, data not: the file survives empty.
    let empty = root.path().join("empty");
    let file = create(&empty).unwrap();
    sync_dir(root.path()).unwrap();
    write_all_at(&file, &empty, b"data", 0).unwrap();
    let gone = root.path().join("gone");
    let file = create(&gone).unwrap();
    write_all_at(&file, &gone, b"data", 0).unwrap();
    sync_data(&file, &gone).unwrap();
    root.cut();
    assert!(kept.exists());
    assert!(
        !gone.exists(),
        "a created entry is lost without a directory fsync"
    );
    assert_eq!(read(&empty).unwrap(), b"");
}

#[test]
fn an_unsynced_rename_is_undone_and_a_synced_one_kept() {
    let root = Root::new();
    let (target, _) = created_synced(&root, "target", b"old");
    let tmp = root.path().join("target.tmp");
    let file = create(&tmp).unwrap();
    write_all_at(&file, &tmp, b"new", 0).unwrap();
    sync_data(&file, &tmp).unwrap();
    rename(&tmp, &target).unwrap();
    assert_eq!(read(&target).unwrap(), b"new");
    let report = root.cut();
    assert_eq!(report.dir_ops_undone, 2, "the create and the rename");
    assert_eq!(read(&target).unwrap(), b"old");
    assert!(!tmp.exists(), "the temporary file was never durable");

    let file = create(&tmp).unwrap();
    write_all_at(&file, &tmp, b"new", 0).unwrap();
    sync_data(&file, &tmp).unwrap();
    rename(&tmp, &target).unwrap();
    sync_dir(root.path()).unwrap();
    root.cut();
    assert_eq!(read(&target).unwrap(), b"new");
}

#[test]
fn an_unsynced_rename_of_unsynced_data_loses_both() {
    let root = Root::new();
    let (target, _) = created_synced(&root, "target", b"old");
    let tmp = root.path().join("target.tmp");
    write(&tmp, b"new").unwrap();
    rename(&tmp, &target).unwrap();
    sync_dir(root.path()).unwrap();
    root.cut();
    // The rename reached the disk, the data did not: an empty file under the real name.
    assert_eq!(read(&target).unwrap(), b"");
}

#[test]
fn a_removal_needs_its_directory_fsynced() {
    let root = Root::new();
    let (a, _) = created_synced(&root, "a", b"aaa");
    let (b, _) = created_synced(&root, "b", b"bbb");
    let (c, _) = created_synced(&root, "c", b"ccc");
    remove_file(&a).unwrap();
    remove_file(&c).unwrap();
    assert!(!a.exists());
    root.cut();
    assert_eq!(read(&a).unwrap(), b"aaa");
    assert_eq!(read(&c).unwrap(), b"ccc", "each removal keeps its own copy");
    remove_file(&b).unwrap();
    sync_dir(root.path()).unwrap();
    root.cut();
    assert!(!b.exists());
}

#[test]
fn created_directories_and_removed_trees_come_back_as_they_were() {
    let root = Root::new();
    let nested = root.path().join("x/y/z");
    create_dir_all(&nested).unwrap();
    assert!(nested.exists());
    root.cut();
    assert!(!root.path().join("x").exists());

    create_dir_all(&nested).unwrap();
    sync_dir(root.path()).unwrap();
    sync_dir(&root.path().join("x")).unwrap();
    sync_dir(&root.path().join("x/y")).unwrap();
    let file = create(&nested.join("f")).unwrap();
    write_all_at(&file, &nested.join("f"), b"f", 0).unwrap();
    sync_data(&file, &nested.join("f")).unwrap();
    sync_dir(&nested).unwrap();
    remove_dir_all(&root.path().join("x")).unwrap();
    assert!(!root.path().join("x").exists());
    root.cut();
    assert_eq!(read(&nested.join("f")).unwrap(), b"f");
}

#[test]
fn create_of_an_existing_file_is_undone() {
    let root = Root::new();
    let (path, _) = created_synced(&root, "a", b"durable");
    let mut file = create(&path).unwrap();
    append(&mut file, &path, b"x").unwrap();
    root.cut();
    assert_eq!(read(&path).unwrap(), b"durable");
}

#[test]
fn untracked_directories_are_left_alone() {
    let root = Root::new();
    let path = root.path().join("a");
    untrack(root.path());
    write(&path, b"kept").unwrap();
    assert_eq!(power_cut(root.path()).unwrap(), PowerCutReport::default());
    assert_eq!(read(&path).unwrap(), b"kept", "no longer tracked");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    write(&path, b"kept").unwrap();
    assert_eq!(power_cut(dir.path()).unwrap(), PowerCutReport::default());
    assert_eq!(read(&path).unwrap(), b"kept");
}

#[test]
fn a_tracked_root_created_late_needs_its_parent_fsynced() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("data");
    track(&root);
    create_dir_all(&root).unwrap();
    power_cut(&root).unwrap();
    assert!(
        !root.exists(),
        "the root's own entry was never made durable"
    );
    create_dir_all(&root).unwrap();
    sync_dir(parent.path()).unwrap();
    power_cut(&root).unwrap();
    assert!(root.exists());
    untrack(&root);
}

#[test]
fn an_unsynced_overwrite_inside_the_file_is_undone_byte_for_byte() {
    let root = Root::new();
    let (path, file) = created_synced(&root, "a", b"0123456789");
    write_all_at(&file, &path, b"xyz", 1).unwrap();
    root.cut();
    assert_eq!(read(&path).unwrap(), b"0123456789");
}

/// A directory created for a log and fsynced itself is still undone by a power cut unless its
/// parent is fsynced too; `create_dir_all_durable` does that, so the fsynced file in it stays.
#[test]
fn a_durably_created_directory_keeps_its_synced_files() {
    for durable in [false, true] {
        let root = Root::new();
        let dir = root.path().join("cluster").join("sim-0");
        if durable {
            create_dir_all_durable(&dir).unwrap();
        } else {
            create_dir_all(&dir).unwrap();
        }
        let path = dir.join("a.log");
        let file = open(OpenOptions::new().write(true).create(true), &path).unwrap();
        write_all_at(&file, &path, b"acked", 0).unwrap();
        sync_data(&file, &path).unwrap();
        sync_dir(&dir).unwrap();
        root.cut();
        if durable {
            assert_eq!(read(&path).unwrap(), b"acked");
        } else {
            assert!(!root.path().join("cluster").exists());
        }
    }
}

/// `Log::open` creates its directory durably: a flushed batch survives a power cut that comes
/// right after the log was created.
#[test]
fn a_new_log_and_its_flushed_batch_survive_a_power_cut() {
    let root = Root::new();
    let dir = root.path().join("cluster").join("sim-0");
    let (mut log, _) = crate::Log::open(&dir, crate::LogConfig::default()).unwrap();
    let mut batch = tally_protocol::encode_control(
        &tally_protocol::ControlRecord {
            attributes: tally_protocol::ATTRIBUTES_CONTROL,
            producer_id: -1,
            producer_epoch: -1,
            control_type: 1,
            value: &[],
        },
        0,
    );
    batch[..8].copy_from_slice(&0i64.to_be_bytes());
    let header = tally_protocol::BatchHeader::parse(&batch).unwrap();
    log.append(&batch, &header, 0).unwrap();
    log.flush().unwrap();
    drop(log);
    root.cut();
    let (log, _) = crate::Log::open(&dir, crate::LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 1, "the flushed batch is gone");
}
