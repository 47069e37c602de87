//! `tally-sim` owns Tally's deterministic simulation: the real broker (real partition code on
//! a real temporary disk) and several real idempotent producers run in one process on
//! turmoil's simulated network. A seeded schedule injects faults: answers lost after the write
//! (a one-way partition from the broker), held messages, full partitions, and broker crashes
//! with restarts on the same data. An oracle records every send as acknowledged (with its
//! offset), failed, or of unknown fate. After healing, every producer must finish more sends
//! (liveness), and the stored data must satisfy the invariants:
//!
//! - no message is stored twice, and no sequence range of any producer is stored twice;
//! - every acknowledged message is at its acknowledged partition and offset;
//! - a producer's sequences within an epoch have no gaps, and offsets are contiguous;
//! - the high watermark, sampled all along, never goes back;
//! - a transactional producer's transactions (committed, aborted, or interrupted and then
//!   fenced by a new instance) are all or nothing for read_committed readers, each record
//!   once, every committed one whole and no aborted record ever visible.
//!
//! A second world runs a cluster (`--brokers 3`, `cluster.rs`): three brokers in cluster mode,
//! every partition a Raft group on all of them, Raft's traffic on the simulated network. Its
//! faults reach the brokers' links too (cut, one-way loss, held messages, a broker cut off
//! from the others), besides crashes, power cuts and the clients' faults; its oracle also
//! checks that no group ever has two leaders in one term (`leaders.rs`). Transactions do not
//! run in cluster mode yet, so it has no transactional producer.
//!
//! A failure names its seed and the command that replays it, and a run replays exactly (the
//! trace hash), a cluster's too. What that takes, besides turmoil's seeded network:
//! - every host's tokio runtime seeded by turmoil (`--cfg tokio_unstable`, set in
//!   `.cargo/config.toml`): tokio's own random choices decide the order in which tasks wake;
//! - openraft's election timeouts drawn from the seed (tally-raft's `SeededRuntime`);
//! - the brokers' file I/O on the simulated hosts' own tasks (`BlockingIo::Inline`), never on
//!   real threads that finish after a real time;
//! - topic ids from the seed, and the producers' record timestamps from the simulated clock;
//! - no iteration over a randomly seeded hash map where the order is seen (the client's maps
//!   are ordered: which node it sends to first, which connection it closes first).

mod checker;
mod cluster;
mod leaders;
mod oracle;
mod replica_agreement;
mod run;
mod single;
mod transport;
mod txn_producer;
mod world;

pub use cluster::run_cluster_seed;
pub use oracle::Oracle;
pub use single::run_seed;
pub use transport::{TurmoilRaftTransport, TurmoilTransport};
pub use world::{SimFailure, SimOptions, SimReport};
