//! The storage seam: every write, truncation, fsync and directory change the broker makes to
//! its data directory goes through these functions. Normally each one is the std call it
//! names plus one relaxed atomic load.
//!
//! Under tracking (the simulation, and power-cut tests through `TALLY_POWER_CUT=<dir>`), the
//! seam also records what is not yet durable, so that [`power_cut`] can put a directory tree
//! back to what a machine that lost power would find: each file's data as of its last fsync,
//! and each directory's entries (creates, renames, deletes) as of that directory's last fsync.
//! A SIGKILL keeps the page cache and so keeps everything; a power cut does not.
//!
//! Tracked operations run under one process-wide mutex (it is held across their I/O: a test
//! mode, where exactness matters and speed does not). Reads are never tracked.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// What a file held at its last fsync, kept from its first unsynced change: its length then,
/// and the old bytes of every range an unsynced change overwrote or cut, oldest first.
#[derive(Debug, Default)]
struct Dirty {
    durable_len: u64,
    saved: Vec<(u64, Vec<u8>)>,
}

/// A directory change not yet made durable by an fsync of `parent`.
#[derive(Debug)]
enum DirOp {
    Created(PathBuf),
    Renamed {
        from: PathBuf,
        to: PathBuf,
        /// Where the file that `to` replaced was moved, to be put back.
        displaced: Option<PathBuf>,
    },
    /// Removed files and trees are moved into the trash until the removal is durable.
    Removed {
        path: PathBuf,
        trash: PathBuf,
    },
}

#[derive(Debug)]
struct Tracker {
    root: PathBuf,
    trash: PathBuf,
    next_trash: u64,
    dirty: HashMap<PathBuf, Dirty>,
    dir_ops: Vec<(PathBuf, DirOp)>,
}

/// What a power cut took away.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PowerCutReport {
    /// Files whose unsynced data was dropped.
    pub files_reverted: usize,
    /// Bytes of file data that were written but never fsynced.
    pub bytes_lost: u64,
    /// Directory entries (creates, renames, deletes) undone.
    pub dir_ops_undone: usize,
}

static TRACKING: AtomicBool = AtomicBool::new(false);
static TRACKERS: Mutex<Vec<Tracker>> = Mutex::new(Vec::new());
static FROM_ENV: OnceLock<()> = OnceLock::new();

fn trackers() -> MutexGuard<'static, Vec<Tracker>> {
    TRACKERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when some directory is tracked; the first call reads `TALLY_POWER_CUT`.
fn tracking() -> bool {
    FROM_ENV.get_or_init(|| {
        if let Some(dir) = std::env::var_os("TALLY_POWER_CUT") {
            track(Path::new(&dir));
        }
    });
    TRACKING.load(Ordering::Relaxed)
}

/// Starts recording what is not durable under `root` (an absolute or relative directory).
pub fn track(root: &Path) {
    let root = absolute(root);
    let mut all = trackers();
    if all.iter().any(|t| t.root == root) {
        return;
    }
    let mut trash = root.clone().into_os_string();
    trash.push(".power-cut-trash");
    all.push(Tracker {
        root,
        trash: PathBuf::from(trash),
        next_trash: 0,
        dirty: HashMap::new(),
        dir_ops: Vec::new(),
    });
    TRACKING.store(true, Ordering::Relaxed);
}

/// Stops tracking `root` and forgets what was recorded (nothing is reverted).
pub fn untrack(root: &Path) {
    let root = absolute(root);
    let mut all = trackers();
    if let Some(i) = all.iter().position(|t| t.root == root) {
        let t = all.remove(i);
        let _ = fs::remove_dir_all(&t.trash);
    }
    TRACKING.store(!all.is_empty(), Ordering::Relaxed);
}

/// Cuts the power under `root`: drops every file's data written since its last fsync and
/// undoes every directory change made since its directory's last fsync. Whoever calls it
/// must have stopped the broker's writers first (the simulation crashes its host; the
/// power-cut failpoint holds the seam's lock and then kills the process). Tracking goes on.
pub fn power_cut(root: &Path) -> io::Result<PowerCutReport> {
    let root = absolute(root);
    let mut all = trackers();
    match all.iter_mut().find(|t| t.root == root) {
        Some(t) => t.revert(),
        None => Ok(PowerCutReport::default()),
    }
}

/// Cuts the power under every tracked root and then kills the process with SIGKILL, the
/// seam's lock held so that no other thread writes in between.
pub(crate) fn power_cut_and_die() -> ! {
    let mut all = trackers();
    for t in all.iter_mut() {
        match t.revert() {
            Ok(r) => eprintln!("power cut under {}: {r:?}", t.root.display()),
            Err(e) => eprintln!("power cut under {} failed: {e}", t.root.display()),
        }
    }
    // SAFETY: sending a signal to our own process.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL returned")
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Runs `f` with the tracker that owns `path`, if any.
fn with_tracker<R>(path: &Path, f: impl FnOnce(&mut Tracker, &Path) -> R) -> Option<R> {
    let path = absolute(path);
    let mut all = trackers();
    let t = all.iter_mut().find(|t| path.starts_with(&t.root))?;
    Some(f(t, &path))
}

impl Tracker {
    /// Records, before `path` is first changed after its last fsync, how long it was.
    fn dirty_entry(&mut self, path: &Path) -> &mut Dirty {
        self.dirty
            .entry(path.to_path_buf())
            .or_insert_with(|| Dirty {
                durable_len: fs::metadata(path).map_or(0, |m| m.len()),
                saved: Vec::new(),
            })
    }

    /// Saves the bytes in `from..to` that were durable before this change.
    fn save_range(&mut self, path: &Path, from: u64, to: u64) -> io::Result<()> {
        let current_len = fs::metadata(path)?.len();
        let dirty = self.dirty_entry(path);
        let to = to.min(dirty.durable_len).min(current_len);
        if from < to {
            // Read through a handle of our own: the caller's may be write-only.
            let mut old = vec![0; (to - from) as usize];
            File::open(path)?.read_exact_at(&mut old, from)?;
            dirty.saved.push((from, old));
        }
        Ok(())
    }

    fn next_trash_path(&mut self) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.trash)?;
        self.next_trash += 1;
        Ok(self.trash.join(self.next_trash.to_string()))
    }

    /// Renames every record under `from` (a file or a tree) to live under `to`.
    fn move_dirty(&mut self, from: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self
            .dirty
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in moved {
            let d = self.dirty.remove(&p).expect("listed");
            let rest = p.strip_prefix(from).expect("under from");
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.dirty.insert(new, d);
        }
    }

    fn push_dir_op(&mut self, path: &Path, op: DirOp) {
        let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        self.dir_ops.push((parent, op));
    }

    fn synced_dir(&mut self, dir: &Path) {
        let mut kept = Vec::with_capacity(self.dir_ops.len());
        for (parent, op) in self.dir_ops.drain(..) {
            if parent != dir {
                kept.push((parent, op));
            } else if let DirOp::Removed { trash, .. } = &op {
                // The removal is durable: the file is gone for good.
                let _ = remove_any(trash);
                let trash = trash.clone();
                self.dirty.retain(|p, _| !p.starts_with(&trash));
            } else if let DirOp::Renamed {
                displaced: Some(trash),
                ..
            } = &op
            {
                let _ = remove_any(trash);
                let trash = trash.clone();
                self.dirty.retain(|p, _| !p.starts_with(&trash));
            }
        }
        self.dir_ops = kept;
    }

    fn revert(&mut self) -> io::Result<PowerCutReport> {
        let mut report = PowerCutReport::default();
        for (path, dirty) in self.dirty.drain() {
            if !path.exists() {
                continue;
            }
            let file = OpenOptions::new().write(true).open(&path)?;
            let len_now = file.metadata()?.len();
            report.bytes_lost += len_now.saturating_sub(dirty.durable_len);
            for (at, old) in dirty.saved.iter().rev() {
                file.write_all_at(old, *at)?;
                report.bytes_lost += old.len() as u64;
            }
            file.set_len(dirty.durable_len)?;
            report.files_reverted += 1;
        }
        for (_, op) in self.dir_ops.drain(..).rev() {
            report.dir_ops_undone += 1;
            match op {
                DirOp::Created(path) => remove_any(&path)?,
                DirOp::Renamed {
                    from,
                    to,
                    displaced,
                } => {
                    fs::rename(&to, &from)?;
                    if let Some(trash) = displaced {
                        fs::rename(&trash, &to)?;
                    }
                }
                DirOp::Removed { path, trash } => fs::rename(&trash, &path)?,
            }
        }
        Ok(report)
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `file.write_all_at(buf, offset)`.
pub fn write_all_at(file: &File, path: &Path, buf: &[u8], offset: u64) -> io::Result<()> {
    if tracking() {
        let end = offset + buf.len() as u64;
        if let Some(r) = with_tracker(path, |t, p| t.save_range(p, offset, end)) {
            r?;
        }
    }
    file.write_all_at(buf, offset)
}

/// `file.write_all(buf)` on a file opened for appending.
pub fn append(file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()> {
    if tracking() {
        with_tracker(path, |t, p| {
            t.dirty_entry(p);
        });
    }
    file.write_all(buf)
}

/// `file.set_len(len)`.
pub fn set_len(file: &File, path: &Path, len: u64) -> io::Result<()> {
    if tracking() {
        if let Some(r) = with_tracker(path, |t, p| t.save_range(p, len, u64::MAX)) {
            r?;
        }
    }
    file.set_len(len)
}

/// `file.sync_data()`: the file's data is durable (its directory entry is not).
pub fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    let len_before = tracked_len(file);
    crate::fsync_stats::timed(|| file.sync_data())?;
    synced_file(path, len_before);
    Ok(())
}

/// `file.sync_all()`.
pub fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    let len_before = tracked_len(file);
    crate::fsync_stats::timed(|| file.sync_all())?;
    synced_file(path, len_before);
    Ok(())
}

/// Under tracking, the file's length as an fsync starts.
fn tracked_len(file: &File) -> Option<u64> {
    tracking().then(|| file.metadata().ok().map(|m| m.len()))?
}

/// An fsync makes durable what was written before it started. Bytes another thread appended
/// while it ran may still be lost, so they stay recorded as not durable (no broker path does
/// that today; a pipelined flush was tried, see BENCHMARKS.md, and the model stays strict).
fn synced_file(path: &Path, len_before: Option<u64>) {
    if tracking() {
        with_tracker(path, |t, p| {
            let len_now = fs::metadata(p).map_or(0, |m| m.len());
            match (len_before, t.dirty.get_mut(p)) {
                (Some(before), Some(dirty)) if len_now > before => {
                    dirty.durable_len = dirty.durable_len.max(before);
                    dirty.saved.retain(|(from, _)| *from >= before);
                }
                _ => {
                    t.dirty.remove(p);
                }
            }
        });
    }
}

/// fsyncs a directory, making its created, renamed and removed entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir_file = File::open(dir)?;
    crate::fsync_stats::timed(|| dir_file.sync_all())?;
    if tracking() {
        // Not only the tracker under which `dir` lies: the parent of a tracked root holds
        // the root's own entry.
        let dir = absolute(dir);
        for t in trackers().iter_mut() {
            t.synced_dir(&dir);
        }
    }
    Ok(())
}

/// `options.open(path)`, recording the file as created if it did not exist.
pub fn open(options: &OpenOptions, path: &Path) -> io::Result<File> {
    if !tracking() {
        return options.open(path);
    }
    let existed = path.exists();
    let file = options.open(path)?;
    if !existed {
        with_tracker(path, |t, p| {
            t.push_dir_op(p, DirOp::Created(p.to_path_buf()));
            t.dirty.insert(p.to_path_buf(), Dirty::default());
        });
    }
    Ok(file)
}

/// `File::create(path)`: created, or cut to nothing (the cut is undone by a power cut).
pub fn create(path: &Path) -> io::Result<File> {
    if tracking() && path.exists() {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        set_len(&file, path, 0)?;
        return Ok(file);
    }
    open(
        OpenOptions::new().write(true).create(true).truncate(true),
        path,
    )
}

/// `fs::write(path, bytes)`: not fsynced.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = create(path)?;
    write_all_at(&file, path, bytes, 0)
}

/// `fs::rename(from, to)`.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    if !tracking() {
        return fs::rename(from, to);
    }
    let outcome = with_tracker(to, |t, to| -> io::Result<()> {
        let from = absolute(from);
        let displaced = if to.exists() {
            let trash = t.next_trash_path()?;
            fs::rename(to, &trash)?;
            t.move_dirty(to, &trash);
            Some(trash)
        } else {
            None
        };
        fs::rename(&from, to)?;
        t.move_dirty(&from, to);
        t.push_dir_op(
            to,
            DirOp::Renamed {
                from,
                to: to.to_path_buf(),
                displaced,
            },
        );
        Ok(())
    });
    outcome.unwrap_or_else(|| fs::rename(from, to))
}

/// `fs::remove_file(path)`.
pub fn remove_file(path: &Path) -> io::Result<()> {
    remove(path, |p| fs::remove_file(p))
}

/// `fs::remove_dir_all(path)`.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    remove(path, |p| fs::remove_dir_all(p))
}

fn remove(path: &Path, untracked: fn(&Path) -> io::Result<()>) -> io::Result<()> {
    if !tracking() {
        return untracked(path);
    }
    let outcome = with_tracker(path, |t, p| -> io::Result<()> {
        fs::symlink_metadata(p)?;
        let trash = t.next_trash_path()?;
        fs::rename(p, &trash)?;
        t.move_dirty(p, &trash);
        t.push_dir_op(
            p,
            DirOp::Removed {
                path: p.to_path_buf(),
                trash,
            },
        );
        Ok(())
    });
    outcome.unwrap_or_else(|| untracked(path))
}

/// `fs::create_dir_all(path)`, each directory it creates recorded in its parent.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    if !tracking() {
        return fs::create_dir_all(path);
    }
    let path = absolute(path);
    let missing = missing_dirs(&path);
    fs::create_dir_all(&path)?;
    for dir in missing.into_iter().rev() {
        with_tracker(&dir, |t, p| {
            t.push_dir_op(p, DirOp::Created(p.to_path_buf()))
        });
    }
    Ok(())
}

/// `path` and those of its ancestors that do not exist yet, deepest first.
fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut at = path;
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    missing
}

/// `create_dir_all`, then the creation made durable: each directory it created is fsynced
/// into its parent, so a power cut cannot take away a directory whose files were fsynced.
pub fn create_dir_all_durable(path: &Path) -> io::Result<()> {
    let path = absolute(path);
    let missing = missing_dirs(&path);
    create_dir_all(&path)?;
    for dir in missing.iter().rev() {
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
