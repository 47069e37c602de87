//! A small file replaced whole and durably: written to a temporary file, fsynced, renamed over
//! the old one, and the directory fsynced. Readers see the old file or the new one, never a
//! mix, and after the call returns the new one survives a power cut.

use std::path::Path;

use tally_log::storage;

/// Replaces `path` with `bytes`. `visible` runs as soon as the new file is in place, also
/// when the directory's fsync then fails (the error is still returned): memory then holds
/// what the file holds, never the old state beside a new file.
pub fn write_durably(path: &Path, bytes: &[u8], visible: impl FnOnce()) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let f = storage::create(&tmp)?;
        storage::write_all_at(&f, &tmp, bytes, 0)?;
        storage::sync_all(&f, &tmp)?;
    }
    storage::rename(&tmp, path)?;
    visible();
    if let Some(dir) = path.parent() {
        storage::sync_dir(dir)?;
    }
    Ok(())
}
