//! Early writeback: the writer hands each written chunk to one background thread that asks
//! the kernel to start writing it to disk (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, as
//! RocksDB's `bytes_per_sync` does). Left to itself, the kernel lets gigabytes of dirty pages
//! pile up and then stalls every writer for hundreds of milliseconds while it catches up.
//! The call itself can wait while the disk's queue is full, which is why it runs here and not
//! on a partition's writer. It is only a hint: durability comes from fsync, never from this.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock};

struct Chunk {
    file: Arc<File>,
    from: u64,
    len: u64,
}

static QUEUE: OnceLock<Option<Sender<Chunk>>> = OnceLock::new();

fn queue() -> Option<&'static Sender<Chunk>> {
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Chunk>();
            std::thread::Builder::new()
                .name("tally-writeback".into())
                .spawn(move || {
                    for chunk in rx {
                        // SAFETY: a plain syscall on a descriptor kept open by `chunk.file`.
                        unsafe {
                            libc::sync_file_range(
                                chunk.file.as_raw_fd(),
                                chunk.from as libc::off64_t,
                                chunk.len as libc::off64_t,
                                libc::SYNC_FILE_RANGE_WRITE,
                            );
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Asks for bytes `from..from + len` of `file` to be written back soon; never waits.
pub(crate) fn start(file: &Arc<File>, from: u64, len: u64) {
    if let Some(q) = queue() {
        let _ = q.send(Chunk {
            file: Arc::clone(file),
            from,
            len,
        });
    }
}
