//! Hands out producer ids from blocks of 1000 (as Kafka does). The end of the current block is
//! written durably before any id from it is used, so ids are never reused across restarts,
//! even after a crash.

use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tally_log::storage;

const BLOCK_SIZE: i64 = 1000;
const FILE_NAME: &str = "producer-id-block";

pub struct ProducerIdManager {
    path: PathBuf,
    /// (next id, end of the persisted block, exclusive).
    state: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    pub fn open(log_dir: &Path) -> std::io::Result<ProducerIdManager> {
        let path = log_dir.join(FILE_NAME);
        let end = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold a number", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        // Start after everything a previous run may have handed out.
        Ok(ProducerIdManager {
            path,
            state: Mutex::new((end, end)),
        })
    }

    pub fn next_producer_id(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock();
        if state.0 >= state.1 {
            let new_end = state.1 + BLOCK_SIZE;
            persist(&self.path, new_end)?;
            state.1 = new_end;
        }
        let id = state.0;
        state.0 += 1;
        Ok(id)
    }
}

fn persist(path: &Path, end: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let f = storage::create(&tmp)?;
        storage::write_all_at(&f, &tmp, format!("{end}\n").as_bytes(), 0)?;
        storage::sync_all(&f, &tmp)?;
    }
    tally_log::failpoint::hit("producer_ids.before_rename");
    storage::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        storage::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let m = ProducerIdManager::open(dir.path()).unwrap();
        let a: Vec<i64> = (0..5).map(|_| m.next_producer_id().unwrap()).collect();
        assert_eq!(a, vec![0, 1, 2, 3, 4]);
        drop(m);
        let m = ProducerIdManager::open(dir.path()).unwrap();
        let b = m.next_producer_id().unwrap();
        assert_eq!(b, 1000, "a restart skips the rest of the block");
        for _ in 0..1500 {
            m.next_producer_id().unwrap();
        }
        drop(m);
        let m = ProducerIdManager::open(dir.path()).unwrap();
        assert_eq!(m.next_producer_id().unwrap(), 3000);
    }
}
