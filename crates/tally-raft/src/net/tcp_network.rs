//! A replica's links to its peers: one TCP connection per peer and Raft stream, opened when
//! first needed and again after any error. A request waits at most the RPC's deadline.
//!
//! A peer is reached at the address this node's configuration gives for it (its voters list,
//! as each Kafka node has its own `controller.quorum.voters`), and only when it gives none at
//! the address in the group's membership. So a node can reach its peers through addresses of
//! its own (a NAT, or the proxies of a network-partition test) while the membership, which
//! every replica shares, names where each node listens.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Snapshot};
use tokio::io::BufStream;

use super::snapshot_transfer;
use super::transport::{RaftStream, RaftTransport, TokioTcp};
use super::wire::{encode_append, read_frame, write_frame, Reply, Request};
use crate::state_machine::SnapshotData;
use crate::type_config::{CommittedLeaderId, Node, TallyRaft, Vote};

const CONNECT_TIMEOUT_MS: u64 = 1_000;

/// Where this node reaches its peers, by node id.
pub type PeerAddresses = Arc<BTreeMap<u64, String>>;

/// The network of one replica of group `group`: a peer is reached at its address in `peers`,
/// else at its node's `addr` in the membership.
pub struct TcpNetworkFactory {
    group: String,
    peers: PeerAddresses,
    transport: Arc<dyn RaftTransport>,
}

impl TcpNetworkFactory {
    pub fn new(group: impl Into<String>) -> TcpNetworkFactory {
        TcpNetworkFactory::with_peers(group, PeerAddresses::default())
    }

    pub fn with_peers(group: impl Into<String>, peers: PeerAddresses) -> TcpNetworkFactory {
        TcpNetworkFactory {
            group: group.into(),
            peers,
            transport: TokioTcp::shared(),
        }
    }

    /// The same links over another transport (the simulation's network).
    pub fn over(mut self, transport: Arc<dyn RaftTransport>) -> TcpNetworkFactory {
        self.transport = transport;
        self
    }
}

impl RaftNetworkFactory<TallyRaft> for TcpNetworkFactory {
    type Network = TcpConnection;

    async fn new_client(&mut self, target: u64, node: &Node) -> TcpConnection {
        TcpConnection {
            group: self.group.clone(),
            addr: self.peers.get(&target).unwrap_or(&node.addr).clone(),
            transport: Arc::clone(&self.transport),
            stream: None,
        }
    }
}

pub struct TcpConnection {
    group: String,
    addr: String,
    transport: Arc<dyn RaftTransport>,
    stream: Option<BufStream<RaftStream>>,
}

impl TcpConnection {
    /// Sends one request and reads its reply. Any failure drops the connection: the next
    /// request opens a new one, so a reply is never matched to the wrong request.
    async fn call(
        &mut self,
        header: &Request,
        payload: &[Bytes],
        timeout: Duration,
    ) -> io::Result<Reply> {
        let result = tokio::time::timeout(timeout, self.call_inner(header, payload)).await;
        let result = result.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "raft rpc timed out",
            ))
        });
        // A node that cannot serve the request (its replica stopped) may be replaced by a
        // restarted one on the same address: reconnect rather than ask the same task again.
        if !matches!(
            result,
            Ok(Reply::Append(_) | Reply::Vote(_) | Reply::Snapshot(_) | Reply::TransferLeader(_))
        ) {
            self.stream = None;
        }
        result
    }

    async fn call_inner(&mut self, header: &Request, payload: &[Bytes]) -> io::Result<Reply> {
        if self.stream.is_none() {
            let connect = self.transport.connect(&self.addr);
            let stream = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            self.stream = Some(BufStream::new(stream));
        }
        let stream = self.stream.as_mut().expect("connected");
        write_frame(stream, header, payload).await?;
        match read_frame::<_, Reply>(stream).await? {
            Some((reply, _)) => Ok(reply),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection",
            )),
        }
    }

    /// Sends a vote or pre-vote request; both are answered with a vote.
    async fn ask_vote(
        &mut self,
        header: Request,
        option: RPCOption,
    ) -> Result<VoteResponse<TallyRaft>, RPCError<TallyRaft>> {
        match self.call(&header, &[], option.hard_ttl()).await {
            Ok(Reply::Vote(resp)) => Ok(resp),
            Ok(other) => Err(RPCError::Unreachable(self.unreachable(unexpected(other)))),
            Err(e) => Err(RPCError::Unreachable(self.unreachable(e))),
        }
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> Unreachable<TallyRaft> {
        Unreachable::from_string(format!("{} ({}): {e}", self.addr, self.group))
    }
}

fn unexpected(reply: Reply) -> String {
    match reply {
        Reply::Error(e) => e,
        other => format!("unexpected reply {other:?}"),
    }
}

impl RaftNetworkV2<TallyRaft> for TcpConnection {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TallyRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TallyRaft>, RPCError<TallyRaft>> {
        let (header, parts) = encode_append(&self.group, &rpc)
            .map_err(|e| RPCError::Unreachable(self.unreachable(e)))?;
        match self.call(&header, &parts, option.hard_ttl()).await {
            Ok(Reply::Append(resp)) => Ok(resp),
            Ok(other) => Err(RPCError::Unreachable(self.unreachable(unexpected(other)))),
            Err(e) => Err(RPCError::Unreachable(self.unreachable(e))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TallyRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<TallyRaft>, RPCError<TallyRaft>> {
        let header = Request::Vote {
            group: self.group.clone(),
            request: rpc,
        };
        self.ask_vote(header, option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TallyRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<TallyRaft>, RPCError<TallyRaft>> {
        let header = Request::PreVote {
            group: self.group.clone(),
            request: rpc,
        };
        self.ask_vote(header, option).await
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TallyRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TallyRaft>, RPCError<TallyRaft>> {
        let header = Request::TransferLeader {
            group: self.group.clone(),
            request,
        };
        match self.call(&header, &[], option.hard_ttl()).await {
            Ok(Reply::TransferLeader(resp)) => Ok(resp),
            Ok(other) => Err(RPCError::Unreachable(self.unreachable(unexpected(other)))),
            Err(e) => Err(RPCError::Unreachable(self.unreachable(e))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<CommittedLeaderId, u64, Node, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TallyRaft>, StreamingError<TallyRaft>> {
        // A connection of its own, dropped afterwards: a transfer cut short leaves frames that
        // nothing else must read.
        self.stream = None;
        let transfer = async {
            let stream = tokio::time::timeout(
                Duration::from_millis(CONNECT_TIMEOUT_MS),
                self.transport.connect(&self.addr),
            )
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            let mut stream = BufStream::new(stream);
            snapshot_transfer::send(&mut stream, &self.group, vote, snapshot).await
        };
        let result = tokio::select! {
            result = transfer => result,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match result {
            Ok(Reply::Snapshot(resp)) => Ok(resp),
            Ok(other) => Err(StreamingError::Unreachable(
                self.unreachable(unexpected(other)),
            )),
            Err(e) => Err(StreamingError::Unreachable(self.unreachable(e))),
        }
    }
}

/// Sends `request` to whatever serves `group` at `addr` (its `ForwardHandler`) and returns
/// the answer's bytes. One connection per call: forwarding is for rare requests (a broker's
/// proposals to the controller's leader), not for the data path.
pub async fn forward(
    transport: &dyn RaftTransport,
    addr: &str,
    group: &str,
    request: Bytes,
    timeout: Duration,
) -> io::Result<Bytes> {
    let call = async {
        let mut stream = BufStream::new(transport.connect(addr).await?);
        let header = Request::Forward {
            group: group.to_string(),
        };
        write_frame(&mut stream, &header, &[request]).await?;
        match read_frame::<_, Reply>(&mut stream).await? {
            Some((Reply::Forwarded, answer)) => Ok(answer),
            Some((other, _)) => Err(io::Error::other(unexpected(other))),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection",
            )),
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "forwarded request timed out"))?
}
