//! Raft traffic between brokers over TCP: one listener per node serves every group on it
//! (`RaftServer`), and each replica's Raft reaches its peers through `TcpNetworkFactory`.
//! Entries travel as the record batches the segment files hold (`wire.rs`).

mod raft_server;
mod tcp_network;
mod wire;

pub use raft_server::{ForwardHandler, RaftServer};
pub use tcp_network::{forward, PeerAddresses, TcpNetworkFactory};
