//! A node's Raft listener: peers' requests for every group on this node, each connection on
//! its own task, requests on a connection answered in order.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::BufStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::liveness::Liveness;
use super::snapshot_transfer::{self, Incoming};
use super::transport::{RaftStream, RaftTransport, TokioTcp};
use super::wire::{decode_append, read_frame, write_frame, Reply, Request};
use crate::local_network::PartitionRaft;
use crate::log_store::SegmentLogStore;

/// Each group's replica, and the AppendEntries requests it was sent (heartbeats included:
/// what an idle group costs).
type Groups = Arc<Mutex<BTreeMap<String, ServedGroup>>>;

/// One group's replica as the listener serves it.
#[derive(Clone)]
struct ServedGroup {
    raft: PartitionRaft,
    /// Where a snapshot sent to the replica is staged.
    store: SegmentLogStore,
    appends: Arc<AtomicU64>,
}
type Forwarders = Arc<Mutex<BTreeMap<String, Arc<dyn ForwardHandler>>>>;

/// Serves requests forwarded to this node for a group (see `forward`).
pub trait ForwardHandler: Send + Sync + 'static {
    fn handle(&self, request: Bytes) -> Pin<Box<dyn Future<Output = Bytes> + Send>>;
}

/// What a connection's task serves.
#[derive(Clone, Default)]
struct Served {
    groups: Groups,
    forwarders: Forwarders,
    /// Answered to pings (see `Reply::Pong`).
    incarnation: Arc<AtomicU64>,
    /// Where pongs take this node's stopped groups from (the group driver's last look).
    liveness: Arc<Mutex<Option<Arc<Liveness>>>>,
}

pub struct RaftServer {
    local_addr: SocketAddr,
    served: Served,
    accept: JoinHandle<()>,
    /// Set on drop: every connection's task ends, so a restarted node on the same port is
    /// not shadowed by its predecessor's connections.
    closed: watch::Sender<bool>,
}

impl RaftServer {
    /// Listens on `addr` (TCP) and serves the groups registered later.
    pub async fn bind(addr: &str) -> io::Result<RaftServer> {
        RaftServer::bind_on(&*TokioTcp::shared(), addr).await
    }

    /// `bind` on another transport (the simulation's network).
    pub async fn bind_on(transport: &dyn RaftTransport, addr: &str) -> io::Result<RaftServer> {
        let mut listener = transport.bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let served = Served::default();
        let shared = served.clone();
        let (closed, closed_rx) = watch::channel(false);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let served = shared.clone();
                let mut closed = closed_rx.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        result = serve(stream, served) => {
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "raft connection closed");
                            }
                        }
                        _ = closed.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Ok(RaftServer {
            local_addr,
            served,
            accept,
            closed,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `group`'s replica on this node: its Raft, and its log store, into which the
    /// snapshots it is sent are staged.
    pub fn register(&self, group: impl Into<String>, raft: PartitionRaft, store: SegmentLogStore) {
        let served = ServedGroup {
            raft,
            store,
            appends: Arc::default(),
        };
        self.served.groups.lock().insert(group.into(), served);
    }

    pub fn unregister(&self, group: &str) {
        self.served.groups.lock().remove(group);
    }

    /// Sets what pings are answered with: a value this node has not used before.
    pub fn set_incarnation(&self, incarnation: u64) {
        self.served
            .incarnation
            .store(incarnation, Ordering::Relaxed);
    }

    /// Pongs name the groups `liveness` records as stopped on this node.
    pub fn answer_pings_with(&self, liveness: Arc<Liveness>) {
        *self.served.liveness.lock() = Some(liveness);
    }

    /// AppendEntries requests `group` was sent since it was registered, heartbeats included.
    pub fn append_requests(&self, group: &str) -> u64 {
        self.served
            .groups
            .lock()
            .get(group)
            .map_or(0, |g| g.appends.load(Ordering::Relaxed))
    }

    /// Serves requests that other nodes forward for `group` (`forward`).
    pub fn register_forward(&self, group: impl Into<String>, handler: Arc<dyn ForwardHandler>) {
        self.served.forwarders.lock().insert(group.into(), handler);
    }
}

impl Drop for RaftServer {
    /// Stops accepting and ends every open connection.
    fn drop(&mut self) {
        self.accept.abort();
        self.closed.send_replace(true);
    }
}

async fn serve(stream: RaftStream, served: Served) -> io::Result<()> {
    let mut stream = BufStream::new(stream);
    while let Some((request, payload)) = read_frame::<_, Request>(&mut stream).await? {
        if let Request::Forward { group } = &request {
            let handler = served.forwarders.lock().get(group).cloned();
            match handler {
                Some(h) => {
                    let answer = h.handle(payload).await;
                    write_frame(&mut stream, &Reply::Forwarded, &[answer]).await?;
                }
                None => {
                    let reply = Reply::Error(format!("nothing serves group {group} on this node"));
                    write_frame(&mut stream, &reply, &[]).await?;
                }
            }
            continue;
        }
        if let Request::Ping { .. } = request {
            let incarnation = served.incarnation.load(Ordering::Relaxed);
            let stopped = served
                .liveness
                .lock()
                .as_ref()
                .map_or_else(Vec::new, |l| l.stopped_here());
            let pong = Reply::Pong {
                incarnation,
                stopped,
            };
            write_frame(&mut stream, &pong, &[]).await?;
            continue;
        }
        if let Request::Snapshot {
            group,
            vote,
            meta,
            log_start_offset,
            end_offset,
        } = request
        {
            let Some(target) = served.groups.lock().get(&group).cloned() else {
                let reply = Reply::Error(format!("no replica of group {group} on this node"));
                write_frame(&mut stream, &reply, &[]).await?;
                // The snapshot's records follow: nothing else on this connection can be read.
                return Ok(());
            };
            let incoming = Incoming {
                vote,
                meta,
                log_start_offset,
                end_offset,
                state: payload,
            };
            match snapshot_transfer::receive(&mut stream, incoming, &target.raft, &target.store)
                .await
            {
                Ok(reply) => write_frame(&mut stream, &reply, &[]).await?,
                Err(e) => {
                    let reply = Reply::Error(format!("group {group}: snapshot: {e}"));
                    let _ = write_frame(&mut stream, &reply, &[]).await;
                    return Err(e);
                }
            }
            continue;
        }
        let reply = handle(request, payload, &served.groups).await;
        write_frame(&mut stream, &reply, &[]).await?;
    }
    Ok(())
}

async fn handle(request: Request, payload: Bytes, groups: &Groups) -> Reply {
    let group = match &request {
        Request::Append { group, .. }
        | Request::Vote { group, .. }
        | Request::PreVote { group, .. }
        | Request::Snapshot { group, .. }
        | Request::TransferLeader { group, .. }
        | Request::Forward { group } => group.clone(),
        Request::Ping { .. } | Request::SnapshotChunk | Request::SnapshotEnd => {
            return Reply::Error("not a request on its own".into())
        }
    };
    let Some(ServedGroup { raft, appends, .. }) = groups.lock().get(&group).cloned() else {
        return Reply::Error(format!("no replica of group {group} on this node"));
    };
    match request {
        Request::Append {
            vote,
            prev_log_id,
            leader_commit,
            first_index,
            ..
        } => {
            appends.fetch_add(1, Ordering::Relaxed);
            match decode_append(vote, prev_log_id, leader_commit, first_index, payload) {
                Ok(rpc) => match raft.append_entries(rpc).await {
                    Ok(resp) => Reply::Append(resp),
                    Err(e) => Reply::Error(e.to_string()),
                },
                Err(e) => Reply::Error(e.to_string()),
            }
        }
        Request::Vote { request, .. } => match raft.vote(request).await {
            Ok(resp) => Reply::Vote(resp),
            Err(e) => Reply::Error(e.to_string()),
        },
        Request::PreVote { request, .. } => match raft.pre_vote(request).await {
            Ok(resp) => Reply::Vote(resp),
            Err(e) => Reply::Error(e.to_string()),
        },
        Request::TransferLeader { request, .. } => {
            match raft.handle_transfer_leader(request).await {
                Ok(resp) => Reply::TransferLeader(resp),
                Err(e) => Reply::Error(e.to_string()),
            }
        }
        Request::Forward { .. }
        | Request::Ping { .. }
        | Request::Snapshot { .. }
        | Request::SnapshotChunk
        | Request::SnapshotEnd => Reply::Error(format!("group {group}: not forwarded")),
    }
}
