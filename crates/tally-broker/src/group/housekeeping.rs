//! What the coordinator does besides membership and commits: listing and describing groups,
//! deleting them, and the periodic tick (session expiry, rebalance deadlines, offset
//! retention, compaction of the log).

use std::sync::Arc;

use tally_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::info;

use super::consumer_group::GroupState;
use super::coordinator::{
    code, store_error, GroupCoordinator, GroupDescription, MemberDescription,
};
use super::machine;
use super::store::StoreRecord;
use crate::partition_handle::AppendResult;

impl GroupCoordinator {
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
                generation: 0,
                members: Vec::new(),
            },
            Some(g) => {
                let protocol = g.protocol.clone().unwrap_or_default();
                GroupDescription {
                    group_id: group_id.to_string(),
                    state: g.state.name(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocol: protocol.clone(),
                    generation: g.generation,
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
        type Queued = Result<(Vec<StoreRecord>, oneshot::Receiver<AppendResult>), i16>;
        let queued: Vec<Queued> = {
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
                    // Offsets a transaction holds pending for the group go too: were they
                    // applied by a later COMMIT, memory would disagree with the log.
                    let mut records = g.tombstones();
                    for r in super::txn_offsets::pending_tombstones(&inner, id) {
                        if !records.iter().any(|t| t.key() == r.key()) {
                            records.push(r);
                        }
                    }
                    let rx = inner.store.write(&records, now);
                    Ok((records, rx))
                })
                .collect()
        };
        let mut codes = Vec::with_capacity(ids.len());
        for (id, queued) in ids.iter().zip(queued) {
            let (records, rx) = match queued {
                Ok(queued) => queued,
                Err(c) => {
                    codes.push(c);
                    continue;
                }
            };
            match rx.await {
                Ok(Ok(outcome)) => {
                    let mut inner = self.inner.lock();
                    if inner
                        .groups
                        .get(id)
                        .is_some_and(|g| g.state == GroupState::Empty)
                    {
                        inner.groups.remove(id);
                    }
                    super::txn_offsets::drop_superseded(&mut inner, &records, outcome.base_offset);
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
    pub async fn tick(self: &Arc<Self>) {
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
    fn tick_locked(self: &Arc<Self>) -> Vec<(String, oneshot::Receiver<AppendResult>)> {
        let now = Instant::now();
        let wall = self.clock.now_ms();
        let mut expiring = Vec::new();
        let mut inner = self.inner.lock();
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let Some(group) = inner.groups.get_mut(&id) else {
                continue;
            };
            let (expired, effects) = machine::tick(group, &self.config, now, wall);
            if !expired.is_empty() {
                info!(group = %id, members = ?expired, "session expired");
            }
            let tombstones = machine::expired_offsets(group, &self.config, wall);
            // Not while a transaction holds offsets of the group pending (Kafka waits too).
            let tombstones = tombstones
                .filter(|_| super::txn_offsets::pending_tombstones(&inner, &id).is_empty());
            self.apply(&mut inner, &id, effects);
            if let Some(records) = tombstones {
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
