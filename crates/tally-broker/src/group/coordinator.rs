//! The coordinator: every group's state behind one lock, never held across an await. A join
//! or sync that must wait for other members parks a oneshot sender in the member and awaits
//! the receiver; whoever completes the rebalance (another member's request, or the tick when a
//! deadline passes) answers everyone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tally_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};
use tracing::{info, warn};

use super::consumer_group::{Group, GroupState, Member};
use super::offsets_log::{self, GroupStore};
use super::store::{latest, CommittedOffset, StoreRecord};
use crate::clock::Clock;
use crate::partition_handle::{AppendResult, PartitionHandle};
use tally_partition::AppendError;

/// The Kafka error for a failed write of group state (Kafka's `GroupMetadataManager`
/// mapping): a storage failure sends the client to find the coordinator again; a record the
/// log refuses as too large is the commit's fault.
fn store_error(e: &AppendError, commit: bool) -> i16 {
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

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long a new (empty) group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `offsets.retention.minutes`, in ms: offsets of a group empty this long are deleted.
    pub offsets_retention_ms: i64,
    pub offset_metadata_max_bytes: usize,
}

pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

#[derive(Debug, Clone)]
pub struct SyncResult {
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

/// Committed offsets by topic: (topic, [(partition, offset if any)]).
pub type GroupOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

pub struct CommitRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// (topic, partition, offset, leader epoch, metadata)
    pub offsets: Vec<(String, i32, i64, i32, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

struct Inner {
    groups: HashMap<String, Group>,
    store: GroupStore,
}

pub struct GroupCoordinator {
    inner: Mutex<Inner>,
    config: GroupConfig,
    clock: Arc<dyn Clock>,
}

/// Slack on top of a member's rebalance timeout before its parked join gives up by itself.
const JOIN_SLACK: Duration = Duration::from_secs(5);

impl GroupCoordinator {
    /// Reads the stored state back: offsets, and stable groups with their members (which keep
    /// their generation, so consumers carry on without a rebalance after a broker restart).
    /// Also returns the task that performs the coordinator's writes; the caller spawns it.
    pub fn open(
        partition: Arc<PartitionHandle>,
        config: GroupConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<
        (
            GroupCoordinator,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        String,
    > {
        let records = offsets_log::load(partition.reader())?;
        let (store, store_task) = GroupStore::new(partition, records.len() as u64);
        let now = Instant::now();
        let wall = clock.now_ms();
        let mut groups: HashMap<String, Group> = HashMap::new();
        for record in latest(records).into_values() {
            match record {
                StoreRecord::Offset {
                    group,
                    topic,
                    partition,
                    value: Some(v),
                } => {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, wall))
                        .offsets
                        .insert((topic, partition), v);
                }
                StoreRecord::Group {
                    group,
                    value: Some(g),
                } => {
                    let entry = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, wall));
                    entry.protocol_type = Some(g.protocol_type).filter(|t| !t.is_empty());
                    entry.generation = g.generation;
                    entry.protocol = g.protocol.clone();
                    entry.leader = g.leader;
                    entry.members = g
                        .members
                        .into_iter()
                        .map(|m| Member {
                            id: m.member_id,
                            instance_id: m.group_instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            session_timeout: Duration::from_millis(
                                m.session_timeout_ms.max(0) as u64
                            ),
                            rebalance_timeout: Duration::from_millis(
                                m.rebalance_timeout_ms.max(0) as u64
                            ),
                            protocols: g
                                .protocol
                                .iter()
                                .map(|p| (p.clone(), m.subscription.clone()))
                                .collect(),
                            assignment: m.assignment,
                            last_seen: now,
                            join_waiter: None,
                            sync_waiter: None,
                        })
                        .collect();
                    entry.state = if entry.members.is_empty() {
                        GroupState::Empty
                    } else {
                        GroupState::Stable
                    };
                }
                _ => {}
            }
        }
        info!(groups = groups.len(), "loaded consumer groups");
        Ok((
            GroupCoordinator {
                inner: Mutex::new(Inner { groups, store }),
                config,
                clock,
            },
            store_task,
        ))
    }

    /// Queues the group's metadata record; the receiver gets the write's answer.
    fn persist_group(&self, inner: &mut Inner, group_id: &str) -> oneshot::Receiver<AppendResult> {
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

    fn prepare_rebalance(&self, group: &mut Group, now: Instant) {
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
    fn maybe_complete_join(&self, inner: &mut Inner, group_id: &str, now: Instant, force: bool) {
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

    fn after_removal(&self, inner: &mut Inner, group_id: &str, now: Instant) {
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

    /// Stores offsets; per offset an error code (0 on success). Answers only after the
    /// offsets are in the log; memory changes only then, and only to what the log says.
    pub async fn commit(
        &self,
        request: CommitRequest,
        topic_exists: impl Fn(&str, i32) -> bool,
    ) -> Vec<i16> {
        let (results, records, rx) = match self.queue_commit(&request, topic_exists) {
            Ok(queued) => queued,
            Err(results) => return results,
        };
        let result = rx
            .await
            .unwrap_or_else(|_| Err(AppendError::Offline("the group store has stopped".into())));
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                warn!(group = %request.group_id, error = %e, "could not store committed offsets");
                let error = store_error(&e, true);
                return results
                    .into_iter()
                    .map(|c| if c == 0 { error } else { c })
                    .collect();
            }
        };
        let mut inner = self.inner.lock();
        let now = self.clock.now_ms();
        let group = inner
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(request.group_id.clone(), now));
        for (i, r) in records.into_iter().enumerate() {
            if let StoreRecord::Offset {
                topic,
                partition,
                value: Some(v),
                ..
            } = r
            {
                // Completions can arrive out of log order: the later record in the log wins.
                group.apply_committed_offset(topic, partition, v, outcome.base_offset + i as i64);
            }
        }
        results
    }

    /// Checks a commit and queues its records under the lock (which orders the log). `Err`:
    /// the answer, with nothing written.
    #[allow(clippy::type_complexity)]
    fn queue_commit(
        &self,
        request: &CommitRequest,
        topic_exists: impl Fn(&str, i32) -> bool,
    ) -> Result<(Vec<i16>, Vec<StoreRecord>, oneshot::Receiver<AppendResult>), Vec<i16>> {
        let mut inner = self.inner.lock();
        let now = self.clock.now_ms();
        let fail_all = |e: ResponseError| Err(vec![e.code(); request.offsets.len()]);
        let group = inner.groups.get_mut(&request.group_id);
        let simple = request.generation < 0 && request.member_id.is_empty();
        match group {
            None if !simple => return fail_all(ResponseError::IllegalGeneration),
            None => {}
            Some(g) => {
                if simple {
                    if g.state != GroupState::Empty {
                        return fail_all(ResponseError::UnknownMemberId);
                    }
                } else {
                    if let Some(instance) = &request.group_instance_id {
                        if g.member_by_instance(instance)
                            .is_some_and(|m| m.id != request.member_id)
                        {
                            return fail_all(ResponseError::FencedInstanceId);
                        }
                    }
                    let current = g.generation;
                    let state = g.state;
                    let Some(m) = g.member_mut(&request.member_id) else {
                        return fail_all(ResponseError::UnknownMemberId);
                    };
                    m.last_seen = Instant::now();
                    if request.generation != current {
                        return fail_all(ResponseError::IllegalGeneration);
                    }
                    if state == GroupState::CompletingRebalance {
                        return fail_all(ResponseError::RebalanceInProgress);
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(request.offsets.len());
        let mut records = Vec::new();
        for (topic, partition, offset, epoch, metadata) in &request.offsets {
            if !topic_exists(topic, *partition) {
                results.push(code(ResponseError::UnknownTopicOrPartition));
            } else if metadata
                .as_ref()
                .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes)
            {
                results.push(code(ResponseError::OffsetMetadataTooLarge));
            } else {
                results.push(0);
                records.push(StoreRecord::Offset {
                    group: request.group_id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(CommittedOffset {
                        offset: *offset,
                        leader_epoch: *epoch,
                        metadata: metadata.clone(),
                        commit_timestamp_ms: now,
                    }),
                });
            }
        }
        let rx = inner.store.write(&records, now);
        Ok((results, records, rx))
    }

    /// Committed offsets of `group_id` for the given partitions (all when `None`).
    pub fn fetch(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> GroupOffsets {
        let inner = self.inner.lock();
        let group = inner.groups.get(group_id);
        match partitions {
            Some(list) => list
                .into_iter()
                .map(|(topic, ps)| {
                    let found = ps
                        .into_iter()
                        .map(|p| {
                            (
                                p,
                                group.and_then(|g| g.offsets.get(&(topic.clone(), p)).cloned()),
                            )
                        })
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                if let Some(g) = group {
                    for ((t, p), v) in &g.offsets {
                        by_topic
                            .entry(t.clone())
                            .or_default()
                            .push((*p, Some(v.clone())));
                    }
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// (group id, protocol type, state) of every group, optionally only in these states.
    pub fn list(&self, states: &[String]) -> Vec<(String, String, &'static str)> {
        let inner = self.inner.lock();
        let mut out: Vec<(String, String, &'static str)> = inner
            .groups
            .values()
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        out.sort();
        out
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let inner = self.inner.lock();
        match inner.groups.get(group_id) {
            None => GroupDescription {
                group_id: group_id.to_string(),
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
            Some(g) => {
                let protocol = g.protocol.clone().unwrap_or_default();
                GroupDescription {
                    group_id: group_id.to_string(),
                    state: g.state.name(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocol: protocol.clone(),
                    members: g
                        .members
                        .iter()
                        .map(|m| MemberDescription {
                            member_id: m.id.clone(),
                            group_instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: m.metadata_for(&protocol),
                            assignment: m.assignment.clone(),
                        })
                        .collect(),
                }
            }
        }
    }

    /// Deletes empty groups and their offsets; NON_EMPTY_GROUP or GROUP_ID_NOT_FOUND otherwise.
    /// A group is gone from memory only once its tombstones are in the log.
    pub async fn delete_groups(&self, ids: &[String]) -> Vec<i16> {
        let queued: Vec<Result<oneshot::Receiver<AppendResult>, i16>> = {
            let inner = self.inner.lock();
            let now = self.clock.now_ms();
            ids.iter()
                .map(|id| {
                    let Some(g) = inner.groups.get(id) else {
                        return Err(code(ResponseError::GroupIdNotFound));
                    };
                    if g.state != GroupState::Empty {
                        return Err(code(ResponseError::NonEmptyGroup));
                    }
                    Ok(inner.store.write(&g.tombstones(), now))
                })
                .collect()
        };
        let mut codes = Vec::with_capacity(ids.len());
        for (id, queued) in ids.iter().zip(queued) {
            let rx = match queued {
                Ok(rx) => rx,
                Err(c) => {
                    codes.push(c);
                    continue;
                }
            };
            match rx.await {
                Ok(Ok(_)) => {
                    let mut inner = self.inner.lock();
                    if inner
                        .groups
                        .get(id)
                        .is_some_and(|g| g.state == GroupState::Empty)
                    {
                        inner.groups.remove(id);
                    }
                    codes.push(0);
                }
                Ok(Err(e)) => codes.push(store_error(&e, false)),
                Err(_) => codes.push(code(ResponseError::CoordinatorNotAvailable)),
            }
        }
        codes
    }

    /// Deletes committed offsets of partitions the group is not consuming (OffsetDelete).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed: impl Fn(&GroupDescription, &str) -> bool,
    ) -> Result<Vec<i16>, i16> {
        let description = self.describe(group_id);
        let (results, records, rx) = {
            let inner = self.inner.lock();
            let Some(group) = inner.groups.get(group_id) else {
                return Err(code(ResponseError::GroupIdNotFound));
            };
            let mut records = Vec::new();
            let results: Vec<i16> = partitions
                .iter()
                .map(|(t, p)| {
                    if group.state != GroupState::Empty && subscribed(&description, t) {
                        return code(ResponseError::GroupSubscribedToTopic);
                    }
                    if group.offsets.contains_key(&(t.clone(), *p)) {
                        records.push(StoreRecord::Offset {
                            group: group_id.to_string(),
                            topic: t.clone(),
                            partition: *p,
                            value: None,
                        });
                    }
                    0
                })
                .collect();
            let rx = inner.store.write(&records, self.clock.now_ms());
            (results, records, rx)
        };
        let outcome = match rx.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => return Err(store_error(&e, false)),
            Err(_) => return Err(code(ResponseError::CoordinatorNotAvailable)),
        };
        let mut inner = self.inner.lock();
        if let Some(group) = inner.groups.get_mut(group_id) {
            for (i, r) in records.into_iter().enumerate() {
                if let StoreRecord::Offset {
                    topic, partition, ..
                } = r
                {
                    let key = (topic, partition);
                    let at = outcome.base_offset + i as i64;
                    if group.offset_positions.get(&key).is_none_or(|p| *p < at) {
                        group.offsets.remove(&key);
                        group.offset_positions.insert(key, at);
                    }
                }
            }
        }
        Ok(results)
    }

    /// Periodic work: expire sessions, finish rebalances past their deadline, expire pending
    /// member ids and the offsets of long-empty groups, compact the store.
    pub async fn tick(&self) {
        let expiring = self.tick_locked();
        for (id, rx) in expiring {
            if let Ok(Ok(_)) = rx.await {
                let mut inner = self.inner.lock();
                if inner
                    .groups
                    .get(&id)
                    .is_some_and(|g| g.state == GroupState::Empty)
                {
                    info!(group = %id, "offsets expired (offsets.retention.minutes)");
                    inner.groups.remove(&id);
                }
            }
        }
    }

    /// The part of `tick` under the lock; returns the groups whose offsets expired, with the
    /// answer of their tombstones' write.
    fn tick_locked(&self) -> Vec<(String, oneshot::Receiver<AppendResult>)> {
        let now = Instant::now();
        let wall = self.clock.now_ms();
        let mut expiring = Vec::new();
        let mut inner = self.inner.lock();
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let Some(group) = inner.groups.get_mut(&id) else {
                continue;
            };
            group.pending.retain(|_, until| *until > now);
            let preparing = group.state == GroupState::PreparingRebalance;
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|m| {
                    !(preparing && m.join_waiter.is_some()) && m.last_seen + m.session_timeout < now
                })
                .map(|m| m.id.clone())
                .collect();
            if !expired.is_empty() {
                for member_id in &expired {
                    if let Some(pos) = group.members.iter().position(|m| &m.id == member_id) {
                        let m = group.members.remove(pos);
                        if let Some(w) = m.sync_waiter {
                            let _ = w.send(Err(code(ResponseError::UnknownMemberId)));
                        }
                        if let Some(w) = m.join_waiter {
                            let _ = w.send(Err(code(ResponseError::UnknownMemberId)));
                        }
                    }
                }
                info!(group = %id, members = ?expired, "session expired");
                self.after_removal(&mut inner, &id, now);
            }
            self.maybe_complete_join(&mut inner, &id, now, false);
            let Some(group) = inner.groups.get(&id) else {
                continue;
            };
            if group.state == GroupState::Empty
                && !group.offsets.is_empty()
                && wall
                    - group.empty_since_ms.max(
                        group
                            .offsets
                            .values()
                            .map(|o| o.commit_timestamp_ms)
                            .max()
                            .unwrap_or(0),
                    )
                    > self.config.offsets_retention_ms
            {
                let records = group.tombstones();
                expiring.push((id.clone(), inner.store.write(&records, wall)));
            }
        }
        let live = inner
            .groups
            .values()
            .map(|g| g.offsets.len() as u64 + 1)
            .sum::<u64>();
        inner.store.maybe_compact(live, wall);
        expiring
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
