//! Which peer nodes answer: one ping per peer every heartbeat interval, for all the groups two
//! nodes share.
//!
//! Why: openraft keeps each group alive on its own, a heartbeat to each follower every
//! interval and a timer per replica ticking about fifty times a second. With 1,000 partitions
//! that was half a core per idle node (BENCHMARKS.md). Redpanda shares heartbeats between the
//! groups of a pair of nodes; so do we: partition groups run without openraft's timers, and
//! the group driver (`group_driver.rs`) elects a new leader where the leader's node stopped
//! answering these pings. Each ping goes through the same transport and addresses as the
//! groups' own traffic, so a cut link or a paused process stops both.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::BufStream;
use tokio::time::Instant;

use super::transport::{RaftStream, RaftTransport};
use super::wire::{read_frame, write_frame, Reply, Request};

/// What this node knows of one peer.
#[derive(Debug, Clone, Default)]
struct PeerState {
    /// When the peer last answered a ping.
    heard_at: Option<Instant>,
    /// What it answered with (it changes when the peer restarts).
    incarnation: Option<u64>,
    /// The groups whose Raft core had stopped there, as of its last answer.
    stopped: BTreeSet<String>,
}

/// A peer's answer to a ping.
#[derive(Debug)]
pub(crate) struct Pong {
    pub(crate) incarnation: u64,
    pub(crate) stopped: Vec<String>,
}

/// When each peer last answered, shared by the pinger, the group driver and the broker (which
/// counts a caught-up follower of an idle partition in sync while its node answers).
#[derive(Debug, Default)]
pub struct Liveness {
    peers: Mutex<BTreeMap<u64, PeerState>>,
    /// Peers that came back (answered after a silence, or restarted) and that the group
    /// driver has not yet looked at.
    returned: Mutex<Vec<u64>>,
    /// This node's groups whose Raft core has stopped, as the group driver last saw them:
    /// what this node's pongs name (see `Reply::Pong`).
    stopped_here: Mutex<Vec<String>>,
}

impl Liveness {
    pub fn new() -> Arc<Liveness> {
        Arc::default()
    }

    /// How long ago `node` last answered a ping; `None` if it never has.
    pub fn last_heard(&self, node: u64) -> Option<Duration> {
        let heard_at = self.peers.lock().get(&node)?.heard_at?;
        Some(heard_at.elapsed())
    }

    /// Whether `node` answered a ping within `within`.
    pub fn heard_within(&self, node: u64, within: Duration) -> bool {
        self.last_heard(node).is_some_and(|d| d <= within)
    }

    /// Whether `node` said, in its last answer, that its replica of `group` has stopped: a
    /// leader there is as good as gone, however well the node answers.
    pub fn group_stopped(&self, node: u64, group: &str) -> bool {
        self.peers
            .lock()
            .get(&node)
            .is_some_and(|peer| peer.stopped.contains(group))
    }

    /// Records an answer from `node`. A peer that had been silent for longer than
    /// `silent_after`, or that answers with a new incarnation, came back: its groups' leaders
    /// here must reach it once (it may hold a stale leader or lag behind an idle group).
    fn record(&self, node: u64, pong: Pong, silent_after: Duration) {
        let Pong {
            incarnation,
            stopped,
        } = pong;
        let now = Instant::now();
        let mut peers = self.peers.lock();
        let peer = peers.entry(node).or_default();
        let came_back = peer
            .heard_at
            .is_none_or(|t| now.duration_since(t) > silent_after)
            || peer.incarnation != Some(incarnation);
        peer.heard_at = Some(now);
        peer.incarnation = Some(incarnation);
        peer.stopped = stopped.into_iter().collect();
        drop(peers);
        if came_back {
            self.returned.lock().push(node);
        }
    }

    /// Records which of this node's groups have stopped (the driver, at each look).
    pub(crate) fn set_stopped_here(&self, groups: Vec<String>) {
        *self.stopped_here.lock() = groups;
    }

    /// This node's stopped groups, for a pong.
    pub(crate) fn stopped_here(&self) -> Vec<String> {
        self.stopped_here.lock().clone()
    }

    /// The peers that came back since the last call.
    pub(crate) fn take_returned(&self) -> Vec<u64> {
        std::mem::take(&mut *self.returned.lock())
    }
}

/// A connection to one peer, kept between pings and opened again after any failure.
struct Link {
    addr: String,
    stream: Option<BufStream<RaftStream>>,
}

impl Link {
    async fn ping(
        &mut self,
        transport: &dyn RaftTransport,
        from: u64,
        timeout: Duration,
    ) -> io::Result<Pong> {
        let result = tokio::time::timeout(timeout, self.ping_inner(transport, from)).await;
        let result = result
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "ping timed out")));
        if result.is_err() {
            // A late answer must not be read as the next ping's.
            self.stream = None;
        }
        result
    }

    async fn ping_inner(&mut self, transport: &dyn RaftTransport, from: u64) -> io::Result<Pong> {
        if self.stream.is_none() {
            self.stream = Some(BufStream::new(transport.connect(&self.addr).await?));
        }
        let stream = self.stream.as_mut().expect("connected");
        write_frame(stream, &Request::Ping { from }, &[]).await?;
        match read_frame::<_, Reply>(stream).await? {
            Some((
                Reply::Pong {
                    incarnation,
                    stopped,
                },
                _,
            )) => Ok(Pong {
                incarnation,
                stopped,
            }),
            Some((other, _)) => Err(io::Error::other(format!("unexpected reply {other:?}"))),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection",
            )),
        }
    }
}

/// Pings this node's peers.
pub(crate) struct Pinger {
    node_id: u64,
    transport: Arc<dyn RaftTransport>,
    links: BTreeMap<u64, Link>,
}

impl Pinger {
    pub(crate) fn new(node_id: u64, transport: Arc<dyn RaftTransport>) -> Pinger {
        Pinger {
            node_id,
            transport,
            links: BTreeMap::new(),
        }
    }

    /// Pings every peer in `peers` (node id to address) at once, each answer or failure
    /// within `timeout`, and records the answers in `liveness`.
    pub(crate) async fn ping_all(
        &mut self,
        peers: &BTreeMap<u64, String>,
        liveness: &Liveness,
        timeout: Duration,
        silent_after: Duration,
    ) {
        self.links
            .retain(|id, link| peers.get(id) == Some(&link.addr));
        for (id, addr) in peers {
            if *id != self.node_id && !self.links.contains_key(id) {
                let link = Link {
                    addr: addr.clone(),
                    stream: None,
                };
                self.links.insert(*id, link);
            }
        }
        let (from, transport) = (self.node_id, &*self.transport);
        let pings = self
            .links
            .iter_mut()
            .map(|(id, link)| async move { (*id, link.ping(transport, from, timeout).await) });
        for (id, answer) in futures_util::future::join_all(pings).await {
            match answer {
                Ok(pong) => liveness.record(id, pong, silent_after),
                Err(e) => tracing::trace!(node = id, error = %e, "a ping went unanswered"),
            }
        }
    }
}
