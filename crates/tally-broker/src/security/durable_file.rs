//! A small file replaced whole and durably: written to a temporary file, fsynced, renamed over
//! the old one, and the directory fsynced. Readers see the old file or the new one, never a
//! mix, and after the call returns the new one survives a power cut.

use std::path::Path;

use tally_log::storage;

pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let f = storage::create(&tmp)?;
        storage::write_all_at(&f, &tmp, bytes, 0)?;
        storage::sync_all(&f, &tmp)?;
    }
    storage::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        storage::sync_dir(dir)?;
    }
    Ok(())
}
