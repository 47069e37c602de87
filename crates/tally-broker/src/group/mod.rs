//! The group coordinator of the classic consumer-group protocol (Kafka's `GroupCoordinator`):
//! membership and rebalances (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with generation
//! fencing and static members, committed offsets, and their durable record in
//! `__consumer_offsets` (see `store`).

mod consumer_group;
mod coordinator;
mod housekeeping;
mod load;
mod offsets;
mod offsets_log;
mod requests;
pub mod store;

pub use consumer_group::GroupState;
pub use coordinator::GroupCoordinator;
pub use requests::{
    CommitRequest, GroupConfig, GroupDescription, GroupOffsets, JoinRequest, JoinResult,
    MemberDescription,
};
