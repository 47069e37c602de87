//! Start-up: the coordinator's state read back from `__consumer_offsets`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::{Duration, Instant};
use tracing::info;

use super::consumer_group::{Group, GroupState, Member};
use super::coordinator::{GroupCoordinator, Inner};
use super::offsets_log::{self, GroupLog, GroupStore, LogContents};
use super::requests::GroupConfig;
use super::store::StoreRecord;
use crate::clock::Clock;
use crate::partition_handle::PartitionHandle;

/// The task that performs a coordinator's writes.
pub type StoreTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

impl GroupCoordinator {
    /// Reads the stored state back: offsets, and stable groups with their members (which keep
    /// their generation, so consumers carry on without a rebalance after a broker restart).
    /// Also returns the task that performs the coordinator's writes; the caller spawns it.
    pub fn open(
        partition: Arc<PartitionHandle>,
        config: GroupConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(GroupCoordinator, StoreTask), String> {
        let contents = offsets_log::load(partition.reader())?;
        Ok(Self::from_log(
            GroupLog::Local(partition),
            contents,
            config,
            clock,
        ))
    }

    /// The coordinator of the groups whose state is in `log`, which holds `contents`. Also
    /// returns the task that performs the coordinator's writes; the caller spawns it.
    pub fn from_log(
        log: GroupLog,
        contents: LogContents,
        config: GroupConfig,
        clock: Arc<dyn Clock>,
    ) -> (GroupCoordinator, StoreTask) {
        let in_log =
            contents.records.len() + contents.pending.values().map(Vec::len).sum::<usize>();
        let (store, store_task) =
            GroupStore::new(log, in_log as u64, config.compaction_min_records);
        let now = Instant::now();
        let wall = clock.now_ms();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut latest: BTreeMap<Vec<u8>, (i64, StoreRecord)> = BTreeMap::new();
        for (offset, record) in contents.records {
            latest.insert(record.key().to_vec(), (offset, record));
        }
        for (log_offset, record) in latest.into_values() {
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
                        .apply_committed_offset(topic, partition, v, log_offset);
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
                            awaiting_join: false,
                            awaiting_sync: false,
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
        (
            GroupCoordinator {
                inner: Mutex::new(Inner {
                    groups,
                    waiters: Default::default(),
                    store,
                    pending_txn: contents.pending,
                }),
                config,
                clock,
            },
            Box::pin(store_task),
        )
    }
}
