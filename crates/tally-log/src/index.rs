//! Sparse indexes of one segment, kept in memory and written next to the segment when it
//! becomes inactive (roll) and at clean shutdown. The active segment's saved indexes are
//! trusted only below the recovery point; past it they are rebuilt by the start-up scan.

use std::fs;
use std::path::Path;

use crate::storage;

/// (offset relative to the segment base, byte position) every `index.interval.bytes` bytes.
#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn append(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|&(r, p)| r < relative_offset && p < position));
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch starting at or before `relative_offset` (0 if none).
    pub fn floor_position(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(r, _)| r <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Keeps the entries of batches starting below `relative_offset`; returns the last one.
    pub fn retain_below(&mut self, relative_offset: u32) -> Option<(u32, u32)> {
        self.entries.retain(|&(r, _)| r < relative_offset);
        self.entries.last().copied()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * 8);
        for &(r, p) in &self.entries {
            buf.extend_from_slice(&r.to_be_bytes());
            buf.extend_from_slice(&p.to_be_bytes());
        }
        write_file(path, &buf)
    }

    /// Loads an index written by [`OffsetIndex::save`]; `None` if missing or not sane for a
    /// segment of `segment_size` bytes (then the caller rebuilds it by scanning).
    pub fn load(path: &Path, segment_size: u64) -> Option<OffsetIndex> {
        let bytes = fs::read(path).ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        let mut entries = Vec::with_capacity(bytes.len() / 8);
        for chunk in bytes.chunks_exact(8) {
            let r = u32::from_be_bytes(chunk[0..4].try_into().ok()?);
            let p = u32::from_be_bytes(chunk[4..8].try_into().ok()?);
            if u64::from(p) >= segment_size {
                return None;
            }
            if let Some(&(lr, lp)) = entries.last() {
                if r <= lr || p <= lp {
                    return None;
                }
            }
            entries.push((r, p));
        }
        Some(OffsetIndex { entries })
    }
}

/// (max timestamp so far, relative offset of the batch that reached it), appended when the
/// maximum grows at an index interval; used by ListOffsets by timestamp.
#[derive(Debug, Default, Clone)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| timestamp > t) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset from which a scan for the first batch with max timestamp >= `timestamp`
    /// may start: every batch before the returned entry has a smaller timestamp.
    pub fn floor_offset(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Keeps the entries whose batch lies below `relative_offset`. Entries are appended at
    /// offset-index points, so those kept are exactly the ones written at or before the
    /// offset-index entry for `relative_offset`.
    pub fn retain_below(&mut self, relative_offset: u32) {
        self.entries.retain(|&(_, r)| r < relative_offset);
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * 12);
        for &(t, r) in &self.entries {
            buf.extend_from_slice(&t.to_be_bytes());
            buf.extend_from_slice(&r.to_be_bytes());
        }
        write_file(path, &buf)
    }

    pub fn load(path: &Path, max_relative_offset: u32) -> Option<TimeIndex> {
        let bytes = fs::read(path).ok()?;
        if bytes.len() % 12 != 0 {
            return None;
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / 12);
        for chunk in bytes.chunks_exact(12) {
            let t = i64::from_be_bytes(chunk[0..8].try_into().ok()?);
            let r = u32::from_be_bytes(chunk[8..12].try_into().ok()?);
            if r > max_relative_offset {
                return None;
            }
            if let Some(&(lt, _)) = entries.last() {
                if t <= lt {
                    return None;
                }
            }
            entries.push((t, r));
        }
        Some(TimeIndex { entries })
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves a half index behind
/// under the real name.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let f = storage::create(&tmp)?;
        storage::write_all_at(&f, &tmp, bytes, 0)?;
        storage::sync_data(&f, &tmp)?;
    }
    crate::failpoint::hit("index.save.before_rename");
    storage::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_floor() {
        let mut idx = OffsetIndex::default();
        assert_eq!(idx.floor_position(10), 0);
        idx.append(5, 100);
        idx.append(9, 300);
        assert_eq!(idx.floor_position(4), 0);
        assert_eq!(idx.floor_position(5), 100);
        assert_eq!(idx.floor_position(8), 100);
        assert_eq!(idx.floor_position(100), 300);
    }

    #[test]
    fn time_index_floor_is_strictly_below() {
        let mut idx = TimeIndex::default();
        idx.maybe_append(10, 0);
        idx.maybe_append(10, 4);
        idx.maybe_append(20, 7);
        idx.maybe_append(30, 9);
        assert_eq!(idx.floor_offset(5), 0);
        assert_eq!(idx.floor_offset(20), 0);
        assert_eq!(idx.floor_offset(21), 7);
        assert_eq!(idx.floor_offset(1000), 9);
        assert_eq!(idx.last(), Some((30, 9)));
    }

    #[test]
    fn save_and_load_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let mut idx = OffsetIndex::default();
        idx.append(1, 10);
        idx.append(2, 20);
        idx.save(&p).unwrap();
        let loaded = OffsetIndex::load(&p, 100).unwrap();
        assert_eq!(loaded.entries, idx.entries);
        assert!(
            OffsetIndex::load(&p, 15).is_none(),
            "position beyond segment"
        );
        fs::write(&p, [1, 2, 3]).unwrap();
        assert!(OffsetIndex::load(&p, 100).is_none());
        let t = dir.path().join("x.timeindex");
        let mut ti = TimeIndex::default();
        ti.maybe_append(5, 1);
        ti.save(&t).unwrap();
        assert_eq!(TimeIndex::load(&t, 1).unwrap().entries, ti.entries);
        assert!(TimeIndex::load(&t, 0).is_none());
    }
}
