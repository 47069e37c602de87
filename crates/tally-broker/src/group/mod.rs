//! The group coordinator of the classic consumer-group protocol (Kafka's `GroupCoordinator`):
//! membership and rebalances (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with generation
//! fencing and static members, committed offsets, and their durable record in
//! `__consumer_offsets` (see `store`), including offsets committed inside transactions
//! (`txn_offsets`).
//!
//! The same shape as the transaction coordinator: `machine` decides (per group, a pure state
//! machine returning effects), `coordinator` performs (answers, writes, timers). By concern:
//! membership in `machine` and `coordinator`, offsets in `offsets` and `txn_offsets`, listing
//! and deletion and expiry in `housekeeping`, the log in `store`, `offsets_log` and `load`.

mod consumer_group;
mod coordinator;
mod effects;
mod housekeeping;
mod load;
mod machine;
#[cfg(test)]
mod machine_tests;
mod offset_rules;
mod offsets;
mod offsets_compaction;
mod offsets_log;
mod requests;
pub mod store;
mod txn_offsets;

pub use consumer_group::GroupState;
pub use coordinator::GroupCoordinator;
pub use load::StoreTask;
pub use offsets_log::{load_replicated, GroupLog, TxnProducer};
pub use requests::{
    CommitRequest, GroupConfig, GroupDescription, GroupOffsets, JoinRequest, JoinResult,
    MemberDescription,
};
