//! What the group state machine (`machine.rs`) asks its runtime to do: answers to parked
//! requests, writes, a timer.

use tokio::time::Instant;

use super::requests::{JoinResult, SyncResult};
use super::store::StoreRecord;

/// An answer to a member parked in JoinGroup or SyncGroup.
#[derive(Debug)]
pub(crate) enum Answer {
    Join {
        member_id: String,
        result: Result<JoinResult, i16>,
    },
    Sync {
        member_id: String,
        result: Result<SyncResult, i16>,
    },
}

/// What follows a write once it is stored (or has failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterWrite {
    /// Nothing waits on it: a failure is logged, and the group's next change writes it again.
    Nothing,
    /// The leader's assignment of `generation`: the parked syncs are answered by
    /// [`assignment_stored`] with the write's outcome.
    AnswerSyncs { generation: i32 },
}

#[derive(Debug)]
pub(crate) struct Write {
    pub records: Vec<StoreRecord>,
    pub then: AfterWrite,
}

/// What the runtime must do after a decision, in this order: answers, writes, timer.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub answers: Vec<Answer>,
    pub writes: Vec<Write>,
    /// Wake the group (run [`tick`]) at this time: a rebalance deadline.
    pub wake_at: Option<Instant>,
}

/// What JoinGroup does.
#[derive(Debug)]
pub(crate) enum JoinDecision {
    /// Answered at once: an error code, and the member id MEMBER_ID_REQUIRED hands out.
    Refused(i16, String),
    /// The member, under this id, is parked until the join phase completes; the effects may
    /// already answer it.
    Parked { member_id: String, effects: Effects },
}

/// What SyncGroup does.
#[derive(Debug)]
pub(crate) enum SyncDecision {
    Answer(Result<SyncResult, i16>),
    /// Parked until the leader's assignment is stored.
    Parked(Effects),
}
