//! The Raft RPC frames: `[u32 frame length][u32 header length][header JSON][payload]`.
//!
//! AppendEntries carries its entries as the batches a log store would write (a client's batch
//! as stored; blank and membership entries as their control batches), concatenated as in a
//! segment file, so a follower gets the bytes it writes and JSON never carries records. A
//! snapshot's data is the payload of its frame.

use std::io;

use bytes::{Bytes, BytesMut};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tally_protocol::BatchHeader;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::entry_codec::{decode_entry, encode_entry};
use crate::type_config::{LogId, SnapshotMeta, TallyRaft, Vote};

/// Larger frames are refused: a peer that sends one is broken or not a Tally node.
pub(crate) const MAX_FRAME_BYTES: usize = 256 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    Append {
        group: String,
        vote: Vote,
        prev_log_id: Option<LogId>,
        leader_commit: Option<LogId>,
        /// The raft index of the first entry in the payload.
        first_index: u64,
    },
    Vote {
        group: String,
        request: VoteRequest<TallyRaft>,
    },
    /// Would the node grant this vote? Nothing changes on it (see `group_driver.rs`: a replica
    /// whose log cannot win must not keep raising the term over the one that can).
    PreVote {
        group: String,
        request: VoteRequest<TallyRaft>,
    },
    /// A snapshot: its state is the payload, and `SnapshotChunk` frames with its records
    /// `[log_start_offset, end_offset)` follow on the same connection, then `SnapshotEnd`,
    /// which alone is answered (see `snapshot_transfer.rs`).
    Snapshot {
        group: String,
        vote: Vote,
        meta: SnapshotMeta,
        log_start_offset: i64,
        end_offset: i64,
    },
    /// Whole batches of the snapshot's records, in order; they are the payload.
    SnapshotChunk,
    SnapshotEnd,
    /// A request for whatever serves `group` on the node (the controller's leader takes
    /// proposals from the other nodes); the payload is the request's bytes.
    Forward {
        group: String,
    },
    /// A leader hands its group over to the request's target, which elects itself at once
    /// (without it the target would wait for an election timeout that a driven group, whose
    /// leader's node still answers pings, never reaches).
    TransferLeader {
        group: String,
        request: TransferLeaderRequest<TallyRaft>,
    },
    /// Is the node there? One per peer and heartbeat interval, for all its groups at once
    /// (see `liveness.rs`).
    Ping {
        from: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Append(AppendEntriesResponse<TallyRaft>),
    Vote(VoteResponse<TallyRaft>),
    Snapshot(SnapshotResponse<TallyRaft>),
    TransferLeader(TransferLeaderResponse<TallyRaft>),
    /// The answer to a forwarded request; its bytes are the payload.
    Forwarded,
    /// The answer to a ping: the node's incarnation, new each time its Raft listener starts,
    /// so a peer that restarted between two pings is seen as having come back.
    Pong {
        incarnation: u64,
        /// The groups hosted there whose Raft core has stopped (a fatal storage error, or
        /// shut down while the node runs on). The node answers for them no more than a dead
        /// node would, so their followers elect as if its pings had stopped. Absent from a
        /// node of an earlier version: none.
        #[serde(default)]
        stopped: Vec<String>,
    },
    /// The node could not serve the request (no such group, Raft stopped).
    Error(String),
}

fn bad(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// An AppendEntries request as a header and its entries' batches.
pub(crate) fn encode_append(
    group: &str,
    rpc: &AppendEntriesRequest<TallyRaft>,
) -> io::Result<(Request, Vec<Bytes>)> {
    let mut parts = Vec::with_capacity(rpc.entries.len() * 2);
    for entry in &rpc.entries {
        let encoded = encode_entry(entry, 0).map_err(bad)?;
        parts.push(Bytes::from(encoded.head));
        if !encoded.tail.is_empty() {
            parts.push(encoded.tail);
        }
    }
    let header = Request::Append {
        group: group.to_string(),
        vote: rpc.vote,
        prev_log_id: rpc.prev_log_id,
        leader_commit: rpc.leader_commit,
        first_index: rpc.entries.first().map_or(0, |e| e.log_id.index),
    };
    Ok((header, parts))
}

/// The AppendEntries request of a header and payload from [`encode_append`].
pub(crate) fn decode_append(
    vote: Vote,
    prev_log_id: Option<LogId>,
    leader_commit: Option<LogId>,
    first_index: u64,
    mut payload: Bytes,
) -> io::Result<AppendEntriesRequest<TallyRaft>> {
    // openraft trusts its peers here (a debug assertion in its follower): the entries must
    // start right after `prev_log_id`, and a frame that says otherwise is refused.
    let expected = prev_log_id.map_or(0, |p| p.index + 1);
    if !payload.is_empty() && first_index != expected {
        return Err(bad(format!(
            "entries start at index {first_index}, not after the previous log id ({expected})"
        )));
    }
    let mut entries = Vec::new();
    let mut index = first_index;
    while !payload.is_empty() {
        let header = BatchHeader::parse(&payload).map_err(bad)?;
        let size = header.size_in_bytes();
        if size > payload.len() {
            return Err(bad("an entry's batch runs past the frame"));
        }
        entries.push(decode_entry(index, payload.split_to(size)).map_err(bad)?);
        index += 1;
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })
}

/// Writes one frame: the header as JSON, then the payload parts.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin, H: Serialize>(
    w: &mut W,
    header: &H,
    payload: &[Bytes],
) -> io::Result<()> {
    let json = serde_json::to_vec(header).map_err(bad)?;
    let payload_len: usize = payload.iter().map(|p| p.len()).sum();
    let frame_len = 4 + json.len() + payload_len;
    if frame_len > MAX_FRAME_BYTES {
        return Err(bad(format!("frame of {frame_len} bytes")));
    }
    let mut head = Vec::with_capacity(8 + json.len());
    head.extend_from_slice(&(frame_len as u32).to_be_bytes());
    head.extend_from_slice(&(json.len() as u32).to_be_bytes());
    head.extend_from_slice(&json);
    w.write_all(&head).await?;
    for p in payload {
        w.write_all(p).await?;
    }
    w.flush().await
}

/// Reads one frame: its header and payload. `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, H: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> io::Result<Option<(H, Bytes)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let frame_len = u32::from_be_bytes(len) as usize;
    if !(4..=MAX_FRAME_BYTES).contains(&frame_len) {
        return Err(bad(format!("frame length {frame_len}")));
    }
    // Read into spare capacity, not a zeroed buffer: zeroing each AppendEntries' megabytes
    // cost a follower as much as reading them.
    let mut frame = BytesMut::with_capacity(frame_len);
    while frame.len() < frame_len {
        let want = (frame_len - frame.len()) as u64;
        if (&mut *r).take(want).read_buf(&mut frame).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    let mut frame = frame.freeze();
    let json_len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    if json_len > frame_len - 4 {
        return Err(bad(format!(
            "header length {json_len} in a frame of {frame_len}"
        )));
    }
    let _ = frame.split_to(4);
    let json = frame.split_to(json_len);
    let header = serde_json::from_slice(&json).map_err(bad)?;
    Ok(Some((header, frame)))
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use tally_testkit::BatchSpec;

    use super::*;
    use crate::type_config::{Entry, RaftBatch};

    #[tokio::test]
    async fn append_entries_round_trip_through_a_frame() {
        let entries = vec![
            Entry::new_blank(LogId::new_term_index(4, 7)),
            Entry::new_normal(
                LogId::new_term_index(4, 8),
                RaftBatch(BatchSpec::new(3, 0, 0, 4).encode()),
            ),
        ];
        let rpc = AppendEntriesRequest::<TallyRaft> {
            vote: Vote::new_committed(4, 2),
            prev_log_id: Some(LogId::new_term_index(3, 6)),
            entries: entries.clone(),
            leader_commit: Some(LogId::new_term_index(3, 5)),
        };
        let (header, parts) = encode_append("t-0", &rpc).unwrap();
        let mut buf = Vec::new();
        write_frame(&mut buf, &header, &parts).await.unwrap();
        let (header, payload): (Request, Bytes) = read_frame(&mut &buf[..]).await.unwrap().unwrap();
        let Request::Append {
            group,
            vote,
            prev_log_id,
            leader_commit,
            first_index,
        } = header
        else {
            panic!("not an append");
        };
        assert_eq!(group, "t-0");
        let back = decode_append(vote, prev_log_id, leader_commit, first_index, payload).unwrap();
        assert_eq!(back.vote, rpc.vote);
        assert_eq!(back.prev_log_id, rpc.prev_log_id);
        assert_eq!(back.leader_commit, rpc.leader_commit);
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.entries[0], entries[0]);
        assert_eq!(back.entries[1].log_id, entries[1].log_id);
    }

    #[test]
    fn entries_that_do_not_follow_the_previous_log_id_or_are_not_batches_are_refused() {
        // As a leader sends it: its term in the leader epoch.
        let mut batch = BatchSpec::new(3, 0, 0, 1).encode().to_vec();
        tally_protocol::record_batch::set_partition_leader_epoch(&mut batch, 2);
        let batch = Bytes::from(batch);
        let vote = Vote::new_committed(2, 1);
        let prev = Some(LogId::new_term_index(2, 9));
        assert!(decode_append(vote, prev, None, 10, batch.clone()).is_ok());
        assert!(decode_append(vote, prev, None, 11, batch.clone()).is_err());
        assert!(decode_append(vote, None, None, 1, batch.clone()).is_err());
        assert!(decode_append(vote, prev, None, 10, batch.slice(..30)).is_err());
        assert!(
            decode_append(vote, prev, None, 99, Bytes::new()).is_ok(),
            "a heartbeat"
        );
    }

    #[tokio::test]
    async fn a_frame_too_large_or_too_short_is_refused() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes());
        let r: io::Result<Option<(Request, Bytes)>> = read_frame(&mut &buf[..]).await;
        assert!(r.is_err());
        let mut buf = Vec::new();
        buf.extend_from_slice(&8u32.to_be_bytes());
        buf.extend_from_slice(&100u32.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        let r: io::Result<Option<(Request, Bytes)>> = read_frame(&mut &buf[..]).await;
        assert!(r.is_err());
        let r: io::Result<Option<(Request, Bytes)>> = read_frame(&mut &[][..]).await;
        assert!(matches!(r, Ok(None)));
    }
}
