//! The transaction coordinator (KIP-98, with KIP-890's defences: part 1's verification and
//! part 2's epoch bump on every commit and abort, transaction version 2): per
//! transactional id, a producer id and epoch, the partitions of the open transaction and its
//! state, kept in the internal topic `__transaction_state`.
//!
//! `machine` decides (pure functions of the current metadata and a request), `coordinator`
//! performs (writes the decision, applies it once written, answers, sends the markers),
//! `txn_log` (writes, start-up read, compaction), `store` and `log_record` read and write
//! the topic.

pub mod coordinator;
pub mod log_record;
pub mod machine;
pub mod metadata;
pub mod store;
pub mod txn_log;

pub use coordinator::{OffsetsMarkerHook, TxnConfig, TxnCoordinator};
pub use machine::{EndRequest, TxnError};
pub use metadata::{TxnMetadata, TxnState};

/// The internal topic holding the coordinator's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
