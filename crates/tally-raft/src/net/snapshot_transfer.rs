//! A snapshot on the wire: a `Snapshot` frame with the state, `SnapshotChunk` frames with
//! the records `[sender's log start, snapshot end)` read from the sender's log as they are
//! sent (about 4 MiB each, whole batches), and `SnapshotEnd`. The receiver stages the records
//! as they arrive (`Stager`: CRC, contiguous offsets, the announced end) and answers once,
//! after openraft has installed the snapshot or refused it. Any failure closes the
//! connection; openraft sends the current snapshot again after a back-off.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use openraft::Snapshot;
use tokio::io::{AsyncRead, AsyncWrite};

use super::wire::{read_frame, write_frame, Reply, Request};
use crate::local_network::PartitionRaft;
use crate::log_store::SegmentLogStore;
use crate::snapshot_records::{
    next_offset_after, read_chunk, PartitionSnapshot, SnapshotRecords, Stager,
};
use crate::state_machine::snapshot_end_offset;
use crate::type_config::{CommittedLeaderId, Node, SnapshotMeta, Vote};

/// How long one frame of a transfer, or the install at its end, may take. The install copies
/// the records into the log, so it is given as long as a large partition needs.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(FRAME_TIMEOUT, f).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("snapshot {what} timed out"),
        )
    })?
}

/// Sends `snapshot` of `group` on `stream` and reads the answer.
pub(crate) async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    group: &str,
    vote: Vote,
    snapshot: Snapshot<CommittedLeaderId, u64, Node, PartitionSnapshot>,
) -> io::Result<Reply> {
    let PartitionSnapshot { state, records } = snapshot.snapshot;
    let SnapshotRecords::Local(source) = records else {
        return Err(io::Error::other("only a replica's own snapshot is sent"));
    };
    let end = snapshot_end_offset(&state)?;
    let start = source.log_reader().log_start_offset();
    if start > end {
        // Retention has passed this snapshot: openraft asks for the current one again.
        return Err(io::Error::other(format!(
            "the log starts at {start}, past the snapshot's end {end}"
        )));
    }
    let begin = Request::Snapshot {
        group: group.to_string(),
        vote,
        meta: snapshot.meta,
        log_start_offset: start,
        end_offset: end,
    };
    within("begin", write_frame(stream, &begin, &[Bytes::from(state)])).await?;
    let mut offset = start;
    while offset < end {
        let reader = source.clone();
        let chunk = source
            .io()
            .run(move || read_chunk(&reader, offset, end))
            .await??;
        offset = next_offset_after(&chunk)?;
        within(
            "chunk",
            write_frame(stream, &Request::SnapshotChunk, &[chunk]),
        )
        .await?;
    }
    within("end", write_frame(stream, &Request::SnapshotEnd, &[])).await?;
    match within("install", read_frame::<_, Reply>(stream)).await? {
        Some((reply, _)) => Ok(reply),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        )),
    }
}

/// What a `Snapshot` frame announced.
pub(crate) struct Incoming {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub log_start_offset: i64,
    pub end_offset: i64,
    pub state: Bytes,
}

/// Receives the records that follow a `Snapshot` frame on `stream`, stages them in `store`'s
/// directory and has `raft` install the snapshot. An error means the connection must close:
/// frames of the transfer may still be unread.
pub(crate) async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    incoming: Incoming,
    raft: &PartitionRaft,
    store: &SegmentLogStore,
) -> io::Result<Reply> {
    let io = store.io();
    let (dir, config) = (store.dir().to_path_buf(), store.log_config());
    let (start, end) = (incoming.log_start_offset, incoming.end_offset);
    let stager = io
        .run(move || Stager::begin(&dir, start, end, config))
        .await??;
    let mut guard = StagerGuard {
        stager: Some(stager),
        io,
    };
    loop {
        let frame = within("chunk", read_frame::<_, Request>(stream)).await?;
        match frame {
            Some((Request::SnapshotChunk, bytes)) => {
                let mut stager = guard.take();
                // Dropped on the pool when the push fails, which removes what was staged.
                guard.stager = Some(
                    io.run(move || stager.push(bytes).map(|()| stager))
                        .await??,
                );
            }
            Some((Request::SnapshotEnd, _)) => break,
            Some((other, _)) => {
                return Err(io::Error::other(format!(
                    "{other:?} in the middle of a snapshot"
                )));
            }
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
    let stager = guard.take();
    let staged = io.run(move || stager.finish()).await??;
    let leftover = staged.dir.clone();
    let snapshot = Snapshot {
        meta: incoming.meta,
        snapshot: PartitionSnapshot {
            state: incoming.state.to_vec(),
            records: SnapshotRecords::Staged(staged),
        },
    };
    let reply = match raft.install_full_snapshot(incoming.vote, snapshot).await {
        Ok(resp) => Reply::Snapshot(resp),
        Err(e) => Reply::Error(e.to_string()),
    };
    // Still there if openraft did not install it (not newer than what is committed here).
    io.run(move || {
        if leftover.exists() {
            let _ = std::fs::remove_dir_all(&leftover);
        }
    })
    .await?;
    Ok(reply)
}

/// Holds a transfer's `Stager` so that a transfer ending early, by an error or because its
/// task was cancelled, removes its staging directory on the blocking pool, not on the async
/// worker that dropped it.
struct StagerGuard {
    stager: Option<Stager>,
    io: crate::blocking_io::BlockingIo,
}

impl StagerGuard {
    fn take(&mut self) -> Stager {
        self.stager
            .take()
            .expect("the stager is held between steps")
    }
}

impl Drop for StagerGuard {
    fn drop(&mut self) {
        if let Some(stager) = self.stager.take() {
            self.io.detach(move || drop(stager));
        }
    }
}
