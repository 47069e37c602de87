//! The group coordinator of the classic consumer-group protocol (Kafka's `GroupCoordinator`):
//! membership and rebalances (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with generation
//! fencing and static members, committed offsets, and their durable record in
//! `__consumer_offsets` (see `store`).

mod consumer_group;
mod coordinator;
mod offsets_log;
pub mod store;

pub use consumer_group::GroupState;
pub use coordinator::{
    CommitRequest, GroupConfig, GroupCoordinator, GroupDescription, GroupOffsets, JoinRequest,
    JoinResult, MemberDescription,
};
