//! Raft traffic between brokers: one listener per node serves every group on it
//! (`RaftServer`), and each replica's Raft reaches its peers through `TcpNetworkFactory`.
//! Entries travel as the record batches the segment files hold (`wire.rs`), and a snapshot
//! carries the sender's retained log (`snapshot_transfer.rs`). The bytes go
//! over a `RaftTransport`: TCP in the broker, a simulated network in tally-sim.

mod liveness;
mod raft_server;
mod snapshot_transfer;
mod tcp_network;
mod transport;
mod wire;

pub use liveness::Liveness;
pub(crate) use liveness::Pinger;
pub use raft_server::{ForwardHandler, RaftServer};
pub use tcp_network::{forward, PeerAddresses, TcpNetworkFactory};
pub use transport::{NetFuture, RaftListener, RaftStream, RaftStreamIo, RaftTransport, TokioTcp};
