//! The group coordinator's decisions, as a state machine per group (the rules of Kafka's
//! classic `GroupCoordinator`): each function takes one group's state, a request or the
//! passing of time, and returns what must happen as [`Effects`]: answers to members parked in
//! JoinGroup or SyncGroup, records to write, a time to be woken at. No I/O, no channels, no
//! clock (the time is an argument): the runtime (`coordinator.rs`) performs the effects and
//! answers a request that depends on a write only once the write is stored.

use bytes::Bytes;
use tally_protocol::ResponseError;
use tokio::time::{Duration, Instant};

use super::consumer_group::{Group, GroupState, Member};
pub(crate) use super::effects::*;
pub(crate) use super::offset_rules::{check_commit, expired_offsets};
use super::requests::{GroupConfig, JoinRequest, JoinResult, SyncResult};
use super::store::StoreRecord;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn store_group(group: &Group, then: AfterWrite) -> Write {
    Write {
        records: vec![StoreRecord::Group {
            group: group.id.clone(),
            value: Some(group.to_stored()),
        }],
        then,
    }
}

/// The checks that need no group: a request that fails them changes nothing.
pub(crate) fn check_join(request: &JoinRequest, config: &GroupConfig) -> Result<(), i16> {
    if request.group_id.is_empty() {
        return Err(code(ResponseError::InvalidGroupId));
    }
    if request.session_timeout_ms < config.min_session_timeout_ms
        || request.session_timeout_ms > config.max_session_timeout_ms
    {
        return Err(code(ResponseError::InvalidSessionTimeout));
    }
    Ok(())
}

/// JoinGroup. `new_member_id` is the id a member joining without one gets.
pub(crate) fn join(
    group: &mut Group,
    request: &JoinRequest,
    new_member_id: String,
    config: &GroupConfig,
    now: Instant,
    now_ms: i64,
) -> JoinDecision {
    let refuse = |e: ResponseError| JoinDecision::Refused(code(e), String::new());
    if !group.supports(&request.protocol_type, &request.protocols) {
        return refuse(ResponseError::InconsistentGroupProtocol);
    }
    let mut effects = Effects::default();
    let mut member_id = request.member_id.clone();
    let mut static_replaced = false;
    if member_id.is_empty() {
        // Static member rejoining under a new member id: replaces (fences) the old one.
        let replaced = request
            .group_instance_id
            .as_deref()
            .and_then(|i| group.member_by_instance(i))
            .map(|m| m.id.clone());
        member_id = new_member_id;
        if let Some(old) = replaced {
            static_replaced = true;
            if let Some(m) = group.member_mut(&old) {
                answer_parked(m, Err(code(ResponseError::FencedInstanceId)), &mut effects);
                m.id = member_id.clone();
            }
            if group.leader.as_deref() == Some(old.as_str()) {
                group.leader = Some(member_id.clone());
            }
        } else if request.require_known_member_id && request.group_instance_id.is_none() {
            let session = Duration::from_millis(request.session_timeout_ms as u64);
            group.pending.insert(member_id.clone(), now + session);
            return JoinDecision::Refused(code(ResponseError::MemberIdRequired), member_id);
        }
    } else if group.member(&member_id).is_none() {
        if group.pending.remove(&member_id).is_none() {
            return refuse(ResponseError::UnknownMemberId);
        }
    } else if let Some(instance) = &request.group_instance_id {
        if group
            .member_by_instance(instance)
            .is_some_and(|m| m.id != member_id)
        {
            return refuse(ResponseError::FencedInstanceId);
        }
    }
    let is_new = group.member(&member_id).is_none();
    let changed = group
        .member(&member_id)
        .is_some_and(|m| m.protocols != request.protocols);
    let is_leader = group.leader.as_deref() == Some(member_id.as_str());
    upsert_member(group, &member_id, request, now);
    if group.protocol_type.is_none() {
        group.protocol_type = Some(request.protocol_type.clone());
    }
    // A follower rejoining a stable group unchanged gets the current generation. So does a
    // static member restarting under a new member id (KIP-345), leader or not, as long as the
    // group's protocol stays the same (its metadata may differ: a new process owns nothing
    // yet); its SyncGroup then returns the assignment it had.
    let keeps_generation = group.state == GroupState::Stable
        && !is_new
        && if static_replaced {
            group.select_protocol() == group.protocol
        } else {
            !changed && !is_leader
        };
    if keeps_generation {
        let protocol = group.protocol.clone().unwrap_or_default();
        // The leader's JoinGroup always lists the members (JoinGroup v9's SkipAssignment is
        // not advertised); its SyncGroup in a stable group returns the current assignment
        // whatever it computes.
        let members = if is_leader {
            group.member_metadata(&protocol)
        } else {
            Vec::new()
        };
        let result = JoinResult {
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            leader: group.leader.clone().unwrap_or_default(),
            member_id: member_id.clone(),
            members,
        };
        group.member_mut(&member_id).expect("member").awaiting_join = false;
        effects.answers.push(Answer::Join {
            member_id: member_id.clone(),
            result: Ok(result),
        });
        if static_replaced {
            effects.writes.push(store_group(group, AfterWrite::Nothing));
        }
    } else {
        prepare_rebalance(group, config, now, &mut effects);
    }
    maybe_complete_join(group, now, now_ms, &mut effects);
    JoinDecision::Parked { member_id, effects }
}

/// Adds the joining member, or updates it in place (keeping its position: leader order, and
/// its assignment), parked in JoinGroup.
fn upsert_member(group: &mut Group, member_id: &str, request: &JoinRequest, now: Instant) {
    let session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
    let rebalance_timeout =
        Duration::from_millis(request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64);
    match group.member_mut(member_id) {
        Some(m) => {
            m.instance_id = request.group_instance_id.clone();
            m.client_id = request.client_id.clone();
            m.client_host = request.client_host.clone();
            m.session_timeout = session_timeout;
            m.rebalance_timeout = rebalance_timeout;
            m.protocols = request.protocols.clone();
            m.last_seen = now;
            m.awaiting_join = true;
        }
        None => group.members.push(Member {
            id: member_id.to_string(),
            instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout,
            rebalance_timeout,
            protocols: request.protocols.clone(),
            assignment: Bytes::new(),
            last_seen: now,
            awaiting_join: true,
            awaiting_sync: false,
        }),
    }
}

/// Answers whatever the member has parked with `error` (it was fenced or removed).
fn answer_parked(m: &mut Member, error: Result<(), i16>, effects: &mut Effects) {
    let Err(e) = error else { return };
    if std::mem::take(&mut m.awaiting_join) {
        effects.answers.push(Answer::Join {
            member_id: m.id.clone(),
            result: Err(e),
        });
    }
    if std::mem::take(&mut m.awaiting_sync) {
        effects.answers.push(Answer::Sync {
            member_id: m.id.clone(),
            result: Err(e),
        });
    }
}

fn prepare_rebalance(group: &mut Group, config: &GroupConfig, now: Instant, effects: &mut Effects) {
    if group.state == GroupState::PreparingRebalance {
        return;
    }
    // A sync still waiting for the leader's assignment will never get it.
    for m in &mut group.members {
        if std::mem::take(&mut m.awaiting_sync) {
            effects.answers.push(Answer::Sync {
                member_id: m.id.clone(),
                result: Err(code(ResponseError::RebalanceInProgress)),
            });
        }
    }
    let delay = if group.state == GroupState::Empty {
        Duration::from_millis(config.initial_rebalance_delay_ms)
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
    effects.wake_at = Some(now + delay);
}

/// Completes the join phase if every member has rejoined (after any initial delay), or the
/// deadline has passed (members that did not rejoin are removed).
fn maybe_complete_join(group: &mut Group, now: Instant, now_ms: i64, effects: &mut Effects) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    let deadline_passed = group.rebalance_deadline.is_none_or(|d| now >= d);
    let all_joined = group.members.iter().all(|m| m.awaiting_join);
    let in_initial_delay = group.generation == 0 || group.leader.is_none();
    if !(deadline_passed || (all_joined && !in_initial_delay)) {
        return;
    }
    group.members.retain(|m| m.awaiting_join);
    group.generation += 1;
    group.rebalance_deadline = None;
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.protocol = None;
        group.leader = None;
        group.empty_since_ms = now_ms;
        effects.writes.push(store_group(group, AfterWrite::Nothing));
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
        m.awaiting_join = false;
        effects.answers.push(Answer::Join {
            member_id: m.id.clone(),
            result: Ok(JoinResult {
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
            }),
        });
    }
}

/// The checks every request of a member makes: a static member's instance id names this
/// member, and the member exists.
fn check_member(group: &Group, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
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
    Ok(())
}

/// SyncGroup. The leader's assignment is written; every member parked in SyncGroup is
/// answered only when it is stored ([`assignment_stored`]).
pub(crate) fn sync(
    group: &mut Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    assignments: Vec<(String, Bytes)>,
    now: Instant,
) -> SyncDecision {
    if let Err(e) = check_member(group, member_id, instance_id) {
        return SyncDecision::Answer(Err(e));
    }
    if generation != group.generation {
        return SyncDecision::Answer(Err(code(ResponseError::IllegalGeneration)));
    }
    match group.state {
        GroupState::Empty | GroupState::Dead => {
            return SyncDecision::Answer(Err(code(ResponseError::UnknownMemberId)))
        }
        GroupState::PreparingRebalance => {
            return SyncDecision::Answer(Err(code(ResponseError::RebalanceInProgress)))
        }
        GroupState::Stable => {
            let m = group.member(member_id).expect("member");
            return SyncDecision::Answer(Ok(SyncResult {
                protocol_type: group.protocol_type.clone(),
                protocol: group.protocol.clone(),
                assignment: m.assignment.clone(),
            }));
        }
        GroupState::CompletingRebalance => {}
    }
    let m = group.member_mut(member_id).expect("member");
    m.awaiting_sync = true;
    m.last_seen = now;
    let mut effects = Effects::default();
    if group.leader.as_deref() == Some(member_id) && !group.assignment_pending {
        let assignments: std::collections::HashMap<String, Bytes> =
            assignments.into_iter().collect();
        for m in &mut group.members {
            m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
        }
        // Kafka stores the group before it propagates the assignment.
        group.assignment_pending = true;
        effects.writes.push(store_group(
            group,
            AfterWrite::AnswerSyncs {
                generation: group.generation,
            },
        ));
    }
    SyncDecision::Parked(effects)
}

/// The leader's assignment of `generation` was written (`Ok`) or not (`Err`: the Kafka error
/// for the failure): answer every parked sync, if the group is still in that rebalance. On
/// failure the group rebalances again.
pub(crate) fn assignment_stored(
    group: &mut Group,
    generation: i32,
    result: Result<(), i16>,
    config: &GroupConfig,
    now: Instant,
) -> Effects {
    let mut effects = Effects::default();
    if group.generation != generation
        || group.state != GroupState::CompletingRebalance
        || !group.assignment_pending
    {
        return effects;
    }
    group.assignment_pending = false;
    match result {
        Ok(()) => {
            group.state = GroupState::Stable;
            for m in &mut group.members {
                if std::mem::take(&mut m.awaiting_sync) {
                    effects.answers.push(Answer::Sync {
                        member_id: m.id.clone(),
                        result: Ok(SyncResult {
                            protocol_type: group.protocol_type.clone(),
                            protocol: group.protocol.clone(),
                            assignment: m.assignment.clone(),
                        }),
                    });
                }
            }
        }
        Err(error) => {
            for m in &mut group.members {
                m.assignment = Bytes::new();
                answer_parked(m, Err(error), &mut effects);
            }
            prepare_rebalance(group, config, now, &mut effects);
        }
    }
    effects
}

pub(crate) fn heartbeat(
    group: &mut Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    now: Instant,
) -> i16 {
    if let Err(e) = check_member(group, member_id, instance_id) {
        return e;
    }
    let (state, current) = (group.state, group.generation);
    group.member_mut(member_id).expect("member").last_seen = now;
    if generation != current {
        return code(ResponseError::IllegalGeneration);
    }
    match state {
        GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
        GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
        _ => 0,
    }
}

/// LeaveGroup: per member (member id, instance id) 0, UNKNOWN_MEMBER_ID or
/// FENCED_INSTANCE_ID.
pub(crate) fn leave(
    group: &mut Group,
    members: Vec<(String, Option<String>)>,
    config: &GroupConfig,
    now: Instant,
    now_ms: i64,
) -> (Vec<i16>, Effects) {
    let mut effects = Effects::default();
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
        removed |= remove_member(group, &id, &mut effects);
        results.push(0);
    }
    if removed {
        after_removal(group, config, now, now_ms, &mut effects);
    }
    (results, effects)
}

fn remove_member(group: &mut Group, id: &str, effects: &mut Effects) -> bool {
    let Some(pos) = group.members.iter().position(|m| m.id == id) else {
        return false;
    };
    let mut m = group.members.remove(pos);
    answer_parked(&mut m, Err(code(ResponseError::UnknownMemberId)), effects);
    true
}

fn after_removal(
    group: &mut Group,
    config: &GroupConfig,
    now: Instant,
    now_ms: i64,
    effects: &mut Effects,
) {
    if group.members.is_empty() {
        if group.state != GroupState::Empty {
            group.state = GroupState::Empty;
            group.generation += 1;
            group.protocol = None;
            group.leader = None;
            group.rebalance_deadline = None;
            group.empty_since_ms = now_ms;
            effects.writes.push(store_group(group, AfterWrite::Nothing));
        }
    } else {
        prepare_rebalance(group, config, now, effects);
        maybe_complete_join(group, now, now_ms, effects);
    }
}

/// The passing of time: member ids handed out but never used expire, members whose session
/// expired are removed, and a join phase past its deadline completes. Returns the ids of the
/// members whose session expired, with the effects.
pub(crate) fn tick(
    group: &mut Group,
    config: &GroupConfig,
    now: Instant,
    now_ms: i64,
) -> (Vec<String>, Effects) {
    let mut effects = Effects::default();
    group.pending.retain(|_, until| *until > now);
    let preparing = group.state == GroupState::PreparingRebalance;
    let expired: Vec<String> = group
        .members
        .iter()
        .filter(|m| !(preparing && m.awaiting_join) && m.last_seen + m.session_timeout < now)
        .map(|m| m.id.clone())
        .collect();
    if !expired.is_empty() {
        for id in &expired {
            remove_member(group, id, &mut effects);
        }
        after_removal(group, config, now, now_ms, &mut effects);
    }
    maybe_complete_join(group, now, now_ms, &mut effects);
    (expired, effects)
}
