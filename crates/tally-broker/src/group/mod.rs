//! The group coordinator of the classic consumer-group protocol (Kafka's `GroupCoordinator`):
//! membership and rebalances (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) with generation
//! fencing and static members, committed offsets, and their durable record in
//! `__consumer_offsets` (see `store`).

mod coordinator;
mod group;
pub mod store;

pub use coordinator::{
    CommitRequest, GroupConfig, GroupCoordinator, GroupDescription, JoinRequest, JoinResult,
    MemberDescription,
};
pub use group::GroupState;
