//! The data directory itself: an exclusive lock so two brokers never share it, and
//! `meta.properties` with the cluster id (generated once) and the node id.

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use tally_log::storage;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("cannot use data directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another tally broker")]
    Locked(PathBuf),
    #[error(
        "data directory {path} belongs to node.id {found}, but this broker is node.id {configured}"
    )]
    NodeIdMismatch {
        path: PathBuf,
        found: i32,
        configured: i32,
    },
}

/// Holds the directory lock for as long as the broker runs.
pub struct DataDir {
    pub cluster_id: String,
    _lock: File,
}

impl DataDir {
    pub fn open(path: &Path, node_id: i32) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        storage::create_dir_all(path).map_err(io)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A data directory created now must not vanish at a power cut.
            storage::sync_dir(parent).map_err(io)?;
        }
        let lock = storage::open(
            OpenOptions::new().create(true).truncate(false).write(true),
            &path.join(".lock"),
        )
        .map_err(io)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(DataDirError::Locked(path.to_path_buf()));
        }
        let meta_path = path.join("meta.properties");
        let mut cluster_id = None;
        if let Ok(text) = fs::read_to_string(&meta_path) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("cluster.id=") {
                    cluster_id = Some(v.trim().to_string());
                }
                if let Some(v) = line.strip_prefix("node.id=") {
                    let found: i32 = v.trim().parse().unwrap_or(-1);
                    if found != node_id {
                        return Err(DataDirError::NodeIdMismatch {
                            path: path.to_path_buf(),
                            found,
                            configured: node_id,
                        });
                    }
                }
            }
        }
        let cluster_id = match cluster_id {
            Some(id) => id,
            None => {
                let id = new_cluster_id();
                let tmp = path.join("meta.properties.tmp");
                let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
                let file = storage::create(&tmp).map_err(io)?;
                storage::write_all_at(&file, &tmp, text.as_bytes(), 0).map_err(io)?;
                storage::sync_all(&file, &tmp).map_err(io)?;
                storage::rename(&tmp, &meta_path).map_err(io)?;
                storage::sync_dir(path).map_err(io)?;
                id
            }
        };
        Ok(DataDir {
            cluster_id,
            _lock: lock,
        })
    }
}

/// Kafka's cluster ids are a UUID in URL-safe base64 without padding (22 characters).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataDir::open(dir.path(), 0).unwrap();
        assert_eq!(a.cluster_id.len(), 22);
        assert!(matches!(
            DataDir::open(dir.path(), 0),
            Err(DataDirError::Locked(_))
        ));
        let id = a.cluster_id.clone();
        drop(a);
        let b = DataDir::open(dir.path(), 0).unwrap();
        assert_eq!(b.cluster_id, id);
        drop(b);
        assert!(matches!(
            DataDir::open(dir.path(), 4),
            Err(DataDirError::NodeIdMismatch { .. })
        ));
    }
}
