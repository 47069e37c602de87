//! The group coordinator of the classic consumer-group protocol (Kafka's `GroupCoordinator`):
//! membership and rebalances (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with generation
//! fencing and static members, committed offsets, and their durable record in
//! `__consumer_offsets` (see `store`), including offsets committed inside transactions
//! (`txn_offsets`).

mod consumer_group;
mod coordinator;
mod housekeeping;
mod load;
mod offsets;
mod offsets_log;
mod requests;
pub mod store;
mod txn_offsets;

pub use consumer_group::GroupState;
pub use coordinator::GroupCoordinator;
pub use offsets_log::TxnProducer;
pub use requests::{
    CommitRequest, GroupConfig, GroupDescription, GroupOffsets, JoinRequest, JoinResult,
    MemberDescription,
};
