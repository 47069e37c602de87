//! The group coordinator's runtime: it holds every group's state (one map behind one lock,
//! never held across an await or a write), asks `machine.rs` what each request or timer does,
//! and performs the effects: answers to parked requests, writes to `__consumer_offsets`
//! (queued under the lock, so the log's order is the decisions' order), and timers. An answer
//! that depends on a write (the members' SyncGroup after the leader's assignment) is sent only
//! when the write is stored, by a task of its own, so a leader that disconnects cannot leave
//! the others waiting.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tally_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

use super::consumer_group::Group;
use super::machine::{self, AfterWrite, Answer, Effects, JoinDecision, SyncDecision};
use super::offsets_log::GroupStore;
pub(super) use super::requests::*;
use super::store::StoreRecord;
use crate::clock::Clock;
use crate::partition_handle::AppendResult;
use tally_partition::AppendError;

/// The Kafka error for a failed write of group state (Kafka's `GroupMetadataManager`
/// mapping): a storage failure sends the client to find the coordinator again; a record the
/// log refuses as too large is the commit's fault.
pub(super) fn store_error(e: &AppendError, commit: bool) -> i16 {
    let mapped = match e.error_code() {
        ResponseError::KafkaStorageError | ResponseError::NotLeaderOrFollower => {
            ResponseError::NotCoordinator
        }
        ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge if commit => {
            ResponseError::InvalidCommitOffsetSize
        }
        ResponseError::UnknownTopicOrPartition | ResponseError::NotEnoughReplicas => {
            ResponseError::CoordinatorNotAvailable
        }
        _ => ResponseError::UnknownServerError,
    };
    code(mapped)
}

/// For writes no request waits on (a group became empty, a static member was replaced): a
/// failure is logged, and the next change of the group writes it again.
fn log_failure(rx: oneshot::Receiver<AppendResult>, group_id: &str) {
    let group_id = group_id.to_string();
    tokio::spawn(async move {
        if let Ok(Err(e)) = rx.await {
            warn!(group = %group_id, error = %e, "could not store group metadata");
        }
    });
}

pub(super) fn code(e: ResponseError) -> i16 {
    e.code()
}

type JoinWaiter = oneshot::Sender<Result<JoinResult, i16>>;
type SyncWaiter = oneshot::Sender<Result<SyncResult, i16>>;

/// Requests parked in JoinGroup and SyncGroup, by (group, member): the runtime's side of the
/// machine's `awaiting_join` and `awaiting_sync`.
#[derive(Default)]
pub(super) struct Waiters {
    joins: HashMap<(String, String), JoinWaiter>,
    syncs: HashMap<(String, String), SyncWaiter>,
}

impl Waiters {
    fn deliver(&mut self, group_id: &str, answer: Answer) {
        match answer {
            Answer::Join { member_id, result } => {
                if let Some(w) = self.joins.remove(&(group_id.to_string(), member_id)) {
                    let _ = w.send(result);
                }
            }
            Answer::Sync { member_id, result } => {
                if let Some(w) = self.syncs.remove(&(group_id.to_string(), member_id)) {
                    let _ = w.send(result);
                }
            }
        }
    }
}

pub(super) struct Inner {
    pub(super) groups: HashMap<String, Group>,
    pub(super) waiters: Waiters,
    pub(super) store: GroupStore,
    /// Offsets committed inside transactions whose marker has not come yet, by producer id,
    /// each with its record's log offset (TxnOffsetCommit).
    pub(super) pending_txn: HashMap<i64, Vec<(i64, StoreRecord)>>,
}

pub struct GroupCoordinator {
    pub(super) inner: Mutex<Inner>,
    pub(super) config: GroupConfig,
    pub(super) clock: Arc<dyn Clock>,
}

/// Slack on top of a member's rebalance timeout before its parked join gives up by itself.
const JOIN_SLACK: Duration = Duration::from_secs(5);
/// How long a parked SyncGroup waits for the leader's assignment at most.
const SYNC_WAIT: Duration = Duration::from_secs(300);

impl GroupCoordinator {
    /// This node stops coordinating these groups (cluster mode: it lost the leadership of
    /// their `__consumer_offsets` partition). Parked JoinGroup and SyncGroup requests are
    /// answered NOT_COORDINATOR, so their members find the new coordinator at once.
    pub fn resign(&self) {
        let mut inner = self.inner.lock();
        let not_coordinator = code(ResponseError::NotCoordinator);
        for (_, w) in inner.waiters.joins.drain() {
            let _ = w.send(Err(not_coordinator));
        }
        for (_, w) in inner.waiters.syncs.drain() {
            let _ = w.send(Err(not_coordinator));
        }
    }

    /// Performs a decision's effects on group `group_id`, under the lock: answers first, then
    /// the writes are queued (in decision order), then the timer is set.
    pub(super) fn apply(self: &Arc<Self>, inner: &mut Inner, group_id: &str, effects: Effects) {
        for answer in effects.answers {
            inner.waiters.deliver(group_id, answer);
        }
        for write in effects.writes {
            let rx = inner.store.write(&write.records, self.clock.now_ms());
            match write.then {
                AfterWrite::Nothing => log_failure(rx, group_id),
                AfterWrite::AnswerSyncs { generation } => {
                    let (this, id) = (Arc::clone(self), group_id.to_string());
                    tokio::spawn(async move {
                        let result = rx.await.unwrap_or_else(|_| {
                            Err(AppendError::Offline("the group store has stopped".into()))
                        });
                        this.assignment_stored(&id, generation, result);
                    });
                }
            }
        }
        if let Some(at) = effects.wake_at {
            let (this, id) = (Arc::clone(self), group_id.to_string());
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                this.wake(&id);
            });
        }
    }

    /// A group's timer: the same as the periodic tick, for this group only.
    fn wake(self: &Arc<Self>, group_id: &str) {
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return;
        };
        let (expired, effects) =
            machine::tick(group, &self.config, Instant::now(), self.clock.now_ms());
        if !expired.is_empty() {
            info!(group = group_id, members = ?expired, "session expired");
        }
        self.apply(&mut inner, group_id, effects);
    }

    fn assignment_stored(self: &Arc<Self>, group_id: &str, generation: i32, result: AppendResult) {
        let result = result.map(|_| ()).map_err(|e| {
            warn!(group = group_id, error = %e, "could not store the group's assignment");
            store_error(&e, false)
        });
        let stored = result.is_ok();
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return;
        };
        let effects =
            machine::assignment_stored(group, generation, result, &self.config, Instant::now());
        if stored && !effects.answers.is_empty() {
            info!(
                group = group_id,
                generation, "rebalance: assignment stored, group stable"
            );
        }
        self.apply(&mut inner, group_id, effects);
    }

    pub async fn join(self: &Arc<Self>, request: JoinRequest) -> Result<JoinResult, (i16, String)> {
        machine::check_join(&request, &self.config).map_err(|e| (e, String::new()))?;
        let rx = {
            let mut inner = self.inner.lock();
            let now_ms = self.clock.now_ms();
            let group = inner
                .groups
                .entry(request.group_id.clone())
                .or_insert_with(|| Group::new(request.group_id.clone(), now_ms));
            let generation_before = group.generation;
            let new_member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
            let decision = machine::join(
                group,
                &request,
                new_member_id,
                &self.config,
                Instant::now(),
                now_ms,
            );
            let generation = group.generation;
            let (member_id, effects) = match decision {
                JoinDecision::Refused(e, member_id) => return Err((e, member_id)),
                JoinDecision::Parked { member_id, effects } => (member_id, effects),
            };
            let (tx, rx) = oneshot::channel();
            let key = (request.group_id.clone(), member_id);
            if let Some(superseded) = inner.waiters.joins.insert(key, tx) {
                // The same member joined again before its earlier join was answered.
                let _ = superseded.send(Err(code(ResponseError::UnknownMemberId)));
            }
            if generation != generation_before {
                info!(group = %request.group_id, generation, "rebalance: members joined");
            }
            self.apply(&mut inner, &request.group_id, effects);
            rx
        };
        let limit = Duration::from_millis(
            request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64,
        ) + JOIN_SLACK;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(e))) => Err((e, String::new())),
            _ => Err((code(ResponseError::UnknownMemberId), String::new())),
        }
    }

    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncResult, i16> {
        let rx = {
            let mut inner = self.inner.lock();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return Err(code(ResponseError::UnknownMemberId));
            };
            let now = Instant::now();
            let effects =
                match machine::sync(group, generation, member_id, instance_id, assignments, now) {
                    SyncDecision::Answer(answer) => return answer,
                    SyncDecision::Parked(effects) => effects,
                };
            let (tx, rx) = oneshot::channel();
            let key = (group_id.to_string(), member_id.to_string());
            if let Some(superseded) = inner.waiters.syncs.insert(key, tx) {
                let _ = superseded.send(Err(code(ResponseError::RebalanceInProgress)));
            }
            self.apply(&mut inner, group_id, effects);
            rx
        };
        match tokio::time::timeout(SYNC_WAIT, rx).await {
            Ok(Ok(result)) => result,
            _ => Err(code(ResponseError::RebalanceInProgress)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let mut inner = self.inner.lock();
        match inner.groups.get_mut(group_id) {
            Some(group) => {
                machine::heartbeat(group, generation, member_id, instance_id, Instant::now())
            }
            None => code(ResponseError::UnknownMemberId),
        }
    }

    /// Removes members; per member: 0, UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.
    pub fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<i16>, i16> {
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(code(ResponseError::UnknownMemberId));
        };
        let now_ms = self.clock.now_ms();
        let (results, effects) =
            machine::leave(group, members, &self.config, Instant::now(), now_ms);
        if results.contains(&0) {
            info!(group = group_id, "member left");
        }
        self.apply(&mut inner, group_id, effects);
        Ok(results)
    }
}
