//! The coordinator: every group's state behind one lock, never held across an await. A join
//! or sync that must wait for other members parks a oneshot sender in the member and awaits
//! the receiver; whoever completes the rebalance (another member's request, or the tick when a
//! deadline passes) answers everyone.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tally_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

use super::consumer_group::{Group, GroupState, Member};
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
pub(super) fn log_failure(rx: oneshot::Receiver<AppendResult>, group_id: &str) {
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

pub(super) struct Inner {
    pub(super) groups: HashMap<String, Group>,
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

impl GroupCoordinator {
    /// Queues the group's metadata record; the receiver gets the write's answer.
    pub(super) fn persist_group(
        &self,
        inner: &mut Inner,
        group_id: &str,
    ) -> oneshot::Receiver<AppendResult> {
        let records: Vec<StoreRecord> = inner
            .groups
            .get(group_id)
            .map(|group| StoreRecord::Group {
                group: group_id.to_string(),
                value: Some(group.to_stored()),
            })
            .into_iter()
            .collect();
        inner.store.write(&records, self.clock.now_ms())
    }

    pub(super) fn prepare_rebalance(&self, group: &mut Group, now: Instant) {
        if group.state == GroupState::PreparingRebalance {
            return;
        }
        // A sync still waiting for the leader's assignment will never get it.
        for m in &mut group.members {
            if let Some(waiter) = m.sync_waiter.take() {
                let _ = waiter.send(Err(code(ResponseError::RebalanceInProgress)));
            }
        }
        let delay = if group.state == GroupState::Empty {
            Duration::from_millis(self.config.initial_rebalance_delay_ms)
        } else {
            group
                .members
                .iter()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default()
        };
        group.state = GroupState::PreparingRebalance;
        group.assignment_pending = false;
        group.rebalance_deadline = Some(now + delay);
    }

    /// Completes the join phase if every member has rejoined (after any initial delay), or
    /// the deadline has passed (members that did not rejoin are removed).
    pub(super) fn maybe_complete_join(
        &self,
        inner: &mut Inner,
        group_id: &str,
        now: Instant,
        force: bool,
    ) {
        let Some(group) = inner.groups.get_mut(group_id) else {
            return;
        };
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = group.rebalance_deadline.is_none_or(|d| now >= d);
        let all_joined = group.members.iter().all(|m| m.join_waiter.is_some());
        let in_initial_delay = group.generation == 0 || group.leader.is_none();
        if !(force || deadline_passed || (all_joined && !in_initial_delay)) {
            return;
        }
        group.members.retain(|m| m.join_waiter.is_some());
        group.generation += 1;
        group.rebalance_deadline = None;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol = None;
            group.leader = None;
            group.empty_since_ms = self.clock.now_ms();
            log_failure(self.persist_group(inner, group_id), group_id);
            return;
        }
        group.protocol = group.select_protocol();
        if group
            .leader
            .as_ref()
            .is_none_or(|l| group.member(l).is_none())
        {
            group.leader = Some(group.members[0].id.clone());
        }
        group.state = GroupState::CompletingRebalance;
        let protocol = group.protocol.clone().unwrap_or_default();
        let leader = group.leader.clone().unwrap_or_default();
        let everyone = group.member_metadata(&protocol);
        let (generation, protocol_type) = (group.generation, group.protocol_type.clone());
        for m in &mut group.members {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(waiter) = m.join_waiter.take() {
                let _ = waiter.send(Ok(JoinResult {
                    generation,
                    protocol_type: protocol_type.clone(),
                    protocol: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
        info!(group = group_id, generation, members = group.members.len(), %protocol, "rebalance: members joined");
    }

    pub async fn join(&self, request: JoinRequest) -> Result<JoinResult, (i16, String)> {
        let now = Instant::now();
        if request.group_id.is_empty() {
            return Err((code(ResponseError::InvalidGroupId), String::new()));
        }
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err((code(ResponseError::InvalidSessionTimeout), String::new()));
        }
        let rx = {
            let mut inner = self.inner.lock();
            let group = inner
                .groups
                .entry(request.group_id.clone())
                .or_insert_with(|| Group::new(request.group_id.clone(), self.clock.now_ms()));
            if !group.supports(&request.protocol_type, &request.protocols) {
                return Err((
                    code(ResponseError::InconsistentGroupProtocol),
                    String::new(),
                ));
            }
            let mut member_id = request.member_id.clone();
            let mut static_replaced = false;
            if member_id.is_empty() {
                // Static member rejoining under a new member id: replaces (fences) the old one.
                let replaced = request
                    .group_instance_id
                    .as_deref()
                    .and_then(|i| group.member_by_instance(i))
                    .map(|m| m.id.clone());
                member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
                if let Some(old) = replaced {
                    static_replaced = true;
                    if let Some(m) = group.member_mut(&old) {
                        if let Some(w) = m.join_waiter.take() {
                            let _ = w.send(Err(code(ResponseError::FencedInstanceId)));
                        }
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(Err(code(ResponseError::FencedInstanceId)));
                        }
                        m.id = member_id.clone();
                    }
                    if group.leader.as_deref() == Some(old.as_str()) {
                        group.leader = Some(member_id.clone());
                    }
                } else if request.require_known_member_id && request.group_instance_id.is_none() {
                    group.pending.insert(
                        member_id.clone(),
                        now + Duration::from_millis(request.session_timeout_ms as u64),
                    );
                    return Err((code(ResponseError::MemberIdRequired), member_id));
                }
            } else if group.member(&member_id).is_none() {
                if group.pending.remove(&member_id).is_none() {
                    return Err((code(ResponseError::UnknownMemberId), String::new()));
                }
            } else if let Some(instance) = &request.group_instance_id {
                if group
                    .member_by_instance(instance)
                    .is_some_and(|m| m.id != member_id)
                {
                    return Err((code(ResponseError::FencedInstanceId), String::new()));
                }
            }
            let (tx, rx) = oneshot::channel();
            let is_new = group.member(&member_id).is_none();
            let changed = group
                .member(&member_id)
                .is_some_and(|m| m.protocols != request.protocols);
            let is_leader = group.leader.as_deref() == Some(member_id.as_str());
            let member = Member {
                id: member_id.clone(),
                instance_id: request.group_instance_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                session_timeout: Duration::from_millis(request.session_timeout_ms as u64),
                rebalance_timeout: Duration::from_millis(
                    request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64,
                ),
                protocols: request.protocols.clone(),
                assignment: Bytes::new(),
                last_seen: now,
                join_waiter: Some(tx),
                sync_waiter: None,
            };
            match group.member_mut(&member_id) {
                Some(existing) => {
                    member_assign(existing, member);
                }
                None => group.members.push(member),
            }
            if group.protocol_type.is_none() {
                group.protocol_type = Some(request.protocol_type.clone());
            }
            // A follower rejoining a stable group unchanged gets the current generation. So
            // does a static member restarting under a new member id (KIP-345), leader or not,
            // as long as the group's protocol stays the same (its metadata may differ: a new
            // process owns nothing yet); its SyncGroup then returns the assignment it had.
            let keeps_generation = group.state == GroupState::Stable
                && !is_new
                && if static_replaced {
                    group.select_protocol() == group.protocol
                } else {
                    !changed && !is_leader
                };
            match group.state {
                GroupState::Stable if keeps_generation => {
                    let protocol = group.protocol.clone().unwrap_or_default();
                    // The leader's JoinGroup always lists the members (JoinGroup v9's
                    // SkipAssignment is not advertised); its SyncGroup in a stable group
                    // returns the current assignment whatever it computes.
                    let members = if is_leader {
                        group.member_metadata(&protocol)
                    } else {
                        Vec::new()
                    };
                    let m = group.member_mut(&member_id).expect("member");
                    let waiter = m.join_waiter.take().expect("waiter");
                    let result = JoinResult {
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        leader: group.leader.clone().unwrap_or_default(),
                        member_id: member_id.clone(),
                        members,
                    };
                    let _ = waiter.send(Ok(result));
                    if static_replaced {
                        let rx = self.persist_group(&mut inner, &request.group_id);
                        log_failure(rx, &request.group_id);
                    }
                }
                _ => {
                    self.prepare_rebalance(group, now);
                }
            }
            let group_id = request.group_id.clone();
            self.maybe_complete_join(&mut inner, &group_id, now, false);
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
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncResult, i16> {
        let (rx, write) = {
            let mut inner = self.inner.lock();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return Err(code(ResponseError::UnknownMemberId));
            };
            if let Some(instance) = instance_id {
                if group
                    .member_by_instance(instance)
                    .is_some_and(|m| m.id != member_id)
                {
                    return Err(code(ResponseError::FencedInstanceId));
                }
            }
            if group.member(member_id).is_none() {
                return Err(code(ResponseError::UnknownMemberId));
            }
            if generation != group.generation {
                return Err(code(ResponseError::IllegalGeneration));
            }
            match group.state {
                GroupState::Empty | GroupState::Dead => {
                    return Err(code(ResponseError::UnknownMemberId))
                }
                GroupState::PreparingRebalance => {
                    return Err(code(ResponseError::RebalanceInProgress))
                }
                GroupState::Stable => {
                    let m = group.member(member_id).expect("member");
                    return Ok(SyncResult {
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        assignment: m.assignment.clone(),
                    });
                }
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            let m = group.member_mut(member_id).expect("member");
            m.sync_waiter = Some(tx);
            m.last_seen = Instant::now();
            let mut write = None;
            if group.leader.as_deref() == Some(member_id) && !group.assignment_pending {
                let assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in &mut group.members {
                    m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                }
                // The assignment is answered only once it is in the log (Kafka stores the
                // group before it propagates the assignment).
                group.assignment_pending = true;
                write = Some(self.persist_group(&mut inner, group_id));
            }
            (rx, write)
        };
        if let Some(write) = write {
            let result = write.await.unwrap_or_else(|_| {
                Err(AppendError::Offline("the group store has stopped".into()))
            });
            self.complete_sync(group_id, generation, result);
        }
        match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(result)) => result,
            _ => Err(code(ResponseError::RebalanceInProgress)),
        }
    }

    /// After the leader's assignment was written (or not): propagate it, or the error, to
    /// every member waiting in SyncGroup, if the group is still in that rebalance.
    fn complete_sync(&self, group_id: &str, generation: i32, result: AppendResult) {
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return;
        };
        if group.generation != generation
            || group.state != GroupState::CompletingRebalance
            || !group.assignment_pending
        {
            return;
        }
        group.assignment_pending = false;
        match result {
            Ok(_) => {
                group.state = GroupState::Stable;
                let (pt, p) = (group.protocol_type.clone(), group.protocol.clone());
                for m in &mut group.members {
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(Ok(SyncResult {
                            protocol_type: pt.clone(),
                            protocol: p.clone(),
                            assignment: m.assignment.clone(),
                        }));
                    }
                }
                info!(
                    group = group_id,
                    generation, "rebalance: assignment stored, group stable"
                );
            }
            Err(e) => {
                warn!(group = group_id, error = %e, "could not store the group's assignment");
                let error = store_error(&e, false);
                for m in &mut group.members {
                    m.assignment = Bytes::new();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(Err(error));
                    }
                }
                self.prepare_rebalance(group, Instant::now());
            }
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
        let Some(group) = inner.groups.get_mut(group_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if let Some(instance) = instance_id {
            if group
                .member_by_instance(instance)
                .is_some_and(|m| m.id != member_id)
            {
                return code(ResponseError::FencedInstanceId);
            }
        }
        let state = group.state;
        let current = group.generation;
        let Some(m) = group.member_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if generation != current {
            return code(ResponseError::IllegalGeneration);
        }
        match state {
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            _ => 0,
        }
    }

    /// Removes members; per member: 0, UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.
    pub fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<i16>, i16> {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(code(ResponseError::UnknownMemberId));
        };
        let mut results = Vec::new();
        let mut removed = false;
        for (member_id, instance) in members {
            let id = match (&instance, member_id.is_empty()) {
                (Some(i), _) => match group.member_by_instance(i) {
                    Some(m) if member_id.is_empty() || m.id == member_id => Some(m.id.clone()),
                    Some(_) => {
                        results.push(code(ResponseError::FencedInstanceId));
                        continue;
                    }
                    None => None,
                },
                (None, false) => group.member(&member_id).map(|m| m.id.clone()),
                (None, true) => None,
            };
            let Some(id) = id else {
                results.push(code(ResponseError::UnknownMemberId));
                continue;
            };
            if let Some(pos) = group.members.iter().position(|m| m.id == id) {
                let m = group.members.remove(pos);
                if let Some(w) = m.join_waiter {
                    let _ = w.send(Err(code(ResponseError::UnknownMemberId)));
                }
                if let Some(w) = m.sync_waiter {
                    let _ = w.send(Err(code(ResponseError::UnknownMemberId)));
                }
                removed = true;
            }
            results.push(0);
        }
        if removed {
            info!(group = group_id, "member left");
            self.after_removal(&mut inner, group_id, now);
        }
        Ok(results)
    }

    pub(super) fn after_removal(&self, inner: &mut Inner, group_id: &str, now: Instant) {
        let Some(group) = inner.groups.get_mut(group_id) else {
            return;
        };
        if group.members.is_empty() {
            if group.state != GroupState::Empty {
                group.state = GroupState::Empty;
                group.generation += 1;
                group.protocol = None;
                group.leader = None;
                group.rebalance_deadline = None;
                group.empty_since_ms = self.clock.now_ms();
                log_failure(self.persist_group(inner, group_id), group_id);
            }
        } else {
            self.prepare_rebalance(group, now);
            self.maybe_complete_join(inner, group_id, now, false);
        }
    }
}

/// Updates a rejoining member in place, keeping its position (leader order).
fn member_assign(existing: &mut Member, new: Member) {
    existing.instance_id = new.instance_id;
    existing.client_id = new.client_id;
    existing.client_host = new.client_host;
    existing.session_timeout = new.session_timeout;
    existing.rebalance_timeout = new.rebalance_timeout;
    existing.protocols = new.protocols;
    existing.last_seen = new.last_seen;
    if let Some(w) = existing.join_waiter.take() {
        let _ = w.send(Err(code(ResponseError::UnknownMemberId)));
    }
    existing.join_waiter = new.join_waiter;
}
