//! One group's state: members, generation, protocol, leader, committed offsets. Plain data:
//! `machine.rs` changes it, the runtime (`coordinator.rs`) holds the parked requests.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::time::{Duration, Instant};

use super::store::{CommittedOffset, StoreRecord, StoredGroup, StoredMember};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's names, as ListGroups and DescribeGroups report them.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// (protocol name, subscription metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_seen: Instant,
    /// Parked in JoinGroup until the join phase completes (the runtime holds the request).
    pub awaiting_join: bool,
    /// Parked in SyncGroup until the leader's assignment is stored.
    pub awaiting_sync: bool,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// In join order: the first member becomes leader when there is none.
    pub members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, waiting for the member to join with them.
    pub pending: HashMap<String, Instant>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    pub rebalance_deadline: Option<Instant>,
    /// Wall-clock ms when the group last became empty (offsets expire from then).
    pub empty_since_ms: i64,
    /// The leader's assignment is being written; members are answered when it is stored.
    pub assignment_pending: bool,
    /// Log offset of the record behind each committed offset written since start, so a
    /// commit whose write completes late never overwrites a later one.
    pub offset_positions: HashMap<(String, i32), i64>,
}

impl Group {
    pub fn new(id: String, now_ms: i64) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            offsets: BTreeMap::new(),
            rebalance_deadline: None,
            empty_since_ms: now_ms,
            assignment_pending: false,
            offset_positions: HashMap::new(),
        }
    }

    /// Records a committed offset stored at `log_offset`, unless a later record of the same
    /// partition is already applied.
    pub fn apply_committed_offset(
        &mut self,
        topic: String,
        partition: i32,
        value: CommittedOffset,
        log_offset: i64,
    ) {
        let key = (topic, partition);
        if self
            .offset_positions
            .get(&key)
            .is_some_and(|at| *at > log_offset)
        {
            return;
        }
        self.offset_positions.insert(key.clone(), log_offset);
        self.offsets.insert(key, value);
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// Every member with its metadata for `protocol`: what the leader's JoinGroup lists.
    pub fn member_metadata(&self, protocol: &str) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(protocol),
                )
            })
            .collect()
    }

    /// The records that delete the group and its committed offsets from the offsets log.
    pub fn tombstones(&self) -> Vec<StoreRecord> {
        let mut records: Vec<StoreRecord> = self
            .offsets
            .keys()
            .map(|(t, p)| StoreRecord::Offset {
                group: self.id.clone(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect();
        records.push(StoreRecord::Group {
            group: self.id.clone(),
            value: None,
        });
        records
    }

    pub fn member_by_instance(&self, instance: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in &self.members {
            if let Some((name, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        // Most votes; ties go to the earlier candidate (the first member's preference).
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes
            .iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| (*c).clone())
    }

    /// Whether a member with these protocols could join (shares one with every member).
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != protocol_type)
        {
            return false;
        }
        protocols.iter().any(|(p, _)| {
            self.members
                .iter()
                .all(|m| m.protocols.iter().any(|(q, _)| q == p))
        })
    }

    pub fn to_stored(&self) -> StoredGroup {
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: self
                        .protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}
