//! A consumer that is a member of a group (Kafka's classic group protocol): it subscribes to
//! topics, the group's leader assigns partitions with the range or cooperative-sticky
//! assignor, positions start from the group's committed offsets, and commits are automatic or
//! manual.
//!
//! Like Kafka's consumer, everything happens inside `poll`: a rebalance signalled by the
//! heartbeat is joined there, partitions are revoked and assigned there, and auto-commits are
//! sent there. The JoinGroup/SyncGroup exchange runs in a task of its own, so `poll` keeps its
//! timeout during a long rebalance and, with the cooperative protocol, keeps reading the
//! partitions it still owns while the group rebalances.
//!
//! Rebalance protocols follow Kafka's rule: cooperative only if every configured assignor is
//! cooperative, otherwise eager (every partition is revoked before joining).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::assignor::{Assignor, MemberSubscription, TopicPartition};
use crate::cluster::Cluster;
use crate::connection::BrokerConnection;
use crate::consumer::{Consumer, ConsumerConfig, OffsetReset};
use crate::consumer_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};
use crate::coordinator::{
    commit_offsets, fetch_offsets, find_coordinator, is_coordinator_error, Committer,
};
use crate::error::ClientError;
use crate::record::ConsumerRecord;

// Kafka error codes the membership logic reacts to.
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

/// Joins a rebalance may take before the member gives up (each is answered by the broker).
const MAX_JOIN_ATTEMPTS: usize = 50;

#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub consumer: ConsumerConfig,
    pub group_id: String,
    /// Static membership (KIP-345): a restart with the same id keeps the assignment without a
    /// rebalance, and closing does not leave the group (the session timeout does).
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: i32,
    /// How long the coordinator waits for members to rejoin (Kafka's `max.poll.interval.ms`).
    pub rebalance_timeout_ms: i32,
    pub heartbeat_interval_ms: u64,
    /// In order of preference; Kafka's default is range, then cooperative-sticky.
    pub assignors: Vec<Assignor>,
    pub enable_auto_commit: bool,
    pub auto_commit_interval_ms: u64,
}

impl GroupConsumerConfig {
    pub fn new(bootstrap: impl Into<String>, group_id: impl Into<String>) -> Self {
        GroupConsumerConfig {
            consumer: ConsumerConfig::new(bootstrap),
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            heartbeat_interval_ms: 3_000,
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }
}

/// A change of this member's partitions, reported to the rebalance listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Added by a rebalance (possibly none; reported after every completed rebalance).
    Assigned(Vec<TopicPartition>),
    /// Given up in a rebalance; with auto-commit their positions were committed first.
    Revoked(Vec<TopicPartition>),
    /// Taken away because the member was fenced or expired; nothing was committed.
    Lost(Vec<TopicPartition>),
}

pub type RebalanceListener = Box<dyn FnMut(&RebalanceEvent) + Send>;

/// Set by the heartbeat task, read by `poll`.
#[derive(Default)]
struct Signals {
    rejoin: AtomicBool,
    /// The coordinator no longer knows this generation: partitions are lost.
    fenced: AtomicBool,
    /// ... and no longer knows the member id either.
    unknown_member: AtomicBool,
    coordinator_lost: AtomicBool,
    fatal: Mutex<Option<ClientError>>,
}

struct JoinOutcome {
    generation: i32,
    protocol: String,
    assignment: Vec<TopicPartition>,
}

/// The member id the join ended with (it may change even when the join fails) and its result.
type JoinResult = (String, Result<JoinOutcome, ClientError>);

pub struct GroupConsumer {
    consumer: Consumer,
    config: GroupConsumerConfig,
    subscription: Vec<String>,
    coordinator: Option<Arc<BrokerConnection>>,
    member_id: String,
    generation: i32,
    protocol: Option<String>,
    owned: BTreeSet<TopicPartition>,
    /// Owned partitions whose starting position is not known yet (OffsetFetch pending).
    unpositioned: BTreeSet<TopicPartition>,
    /// Positions of revoked partitions not committed yet; the next commit includes them.
    revoked_positions: BTreeMap<TopicPartition, i64>,
    /// What this member last committed, to skip commits that change nothing.
    committed: BTreeMap<TopicPartition, i64>,
    signals: Arc<Signals>,
    heartbeat: Option<JoinHandle<()>>,
    join: Option<JoinHandle<JoinResult>>,
    retry_at: Instant,
    next_auto_commit: Instant,
    listener: Option<RebalanceListener>,
}

impl GroupConsumer {
    pub async fn new(config: GroupConsumerConfig) -> Result<GroupConsumer, ClientError> {
        if config.group_id.is_empty() {
            return Err(ClientError::Config("group_id must not be empty".into()));
        }
        if config.assignors.is_empty() {
            return Err(ClientError::Config(
                "at least one assignor is needed".into(),
            ));
        }
        if config.heartbeat_interval_ms >= config.session_timeout_ms.max(0) as u64 {
            return Err(ClientError::Config(
                "heartbeat_interval_ms must be lower than session_timeout_ms".into(),
            ));
        }
        let consumer = Consumer::new(config.consumer.clone()).await?;
        Ok(GroupConsumer {
            consumer,
            subscription: Vec::new(),
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            protocol: None,
            owned: BTreeSet::new(),
            unpositioned: BTreeSet::new(),
            revoked_positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            signals: Arc::new(Signals::default()),
            heartbeat: None,
            join: None,
            retry_at: Instant::now(),
            next_auto_commit: Instant::now()
                + Duration::from_millis(config.auto_commit_interval_ms),
            listener: None,
            config,
        })
    }

    /// Subscribes to these topics (replacing an earlier subscription); the group rebalances at
    /// the next `poll`.
    pub fn subscribe(&mut self, topics: &[&str]) {
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        self.subscription = topics;
        self.signals.rejoin.store(true, Ordering::SeqCst);
    }

    /// Called on every change of this member's partitions, from inside `poll` or `close`.
    pub fn on_rebalance(&mut self, listener: impl FnMut(&RebalanceEvent) + Send + 'static) {
        self.listener = Some(Box::new(listener));
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol (assignor) the group chose in the last rebalance.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The next offset `poll` reads from a partition this member owns.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.consumer.position(topic, partition)
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        self.consumer.cluster()
    }

    fn cooperative(&self) -> bool {
        self.config.assignors.iter().all(|a| a.is_cooperative())
    }

    fn emit(&mut self, event: RebalanceEvent) {
        debug!(group = %self.config.group_id, ?event, "rebalance");
        if let Some(listener) = self.listener.as_mut() {
            listener(&event);
        }
    }

    fn committer(&self) -> Committer {
        Committer {
            generation: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        }
    }

    async fn coordinator(&mut self) -> Result<Arc<BrokerConnection>, ClientError> {
        if let Some(c) = &self.coordinator {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let c = find_coordinator(self.consumer.cluster(), &self.config.group_id).await?;
        self.coordinator = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Records from the partitions this member owns, waiting up to `timeout`; takes part in
    /// rebalances and sends auto-commits as needed.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.subscription.is_empty() {
            return Err(ClientError::Config("subscribe before polling".into()));
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.absorb_signals()?;
            if self.join.is_none()
                && self.signals.rejoin.load(Ordering::SeqCst)
                && Instant::now() >= self.retry_at
            {
                self.start_join().await?;
            }
            if self.join.is_some() {
                // Without partitions there is nothing else to do than wait for the rebalance.
                let wait = if self.owned.is_empty() {
                    deadline.saturating_duration_since(Instant::now())
                } else {
                    Duration::ZERO
                };
                self.wait_join(wait).await?;
            } else {
                self.ensure_heartbeat().await;
            }
            self.position_new_partitions().await?;
            self.maybe_auto_commit().await;
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let slice = (deadline - now).min(Duration::from_millis(200));
            let records = self.consumer.poll(slice).await?;
            if !records.is_empty() {
                return Ok(records);
            }
        }
    }

    /// Applies what the heartbeat task found out.
    fn absorb_signals(&mut self) -> Result<(), ClientError> {
        if let Some(e) = self.signals.fatal.lock().expect("lock").take() {
            return Err(e);
        }
        if self.signals.coordinator_lost.swap(false, Ordering::SeqCst) {
            self.coordinator = None;
        }
        if self.signals.fenced.swap(false, Ordering::SeqCst) {
            if self.signals.unknown_member.swap(false, Ordering::SeqCst) {
                self.member_id.clear();
            }
            self.generation = -1;
            self.lose_all();
            self.signals.rejoin.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    fn lose_all(&mut self) {
        if self.owned.is_empty() {
            return;
        }
        let lost: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        self.consumer.remove_partitions(&lost);
        self.unpositioned.clear();
        self.emit(RebalanceEvent::Lost(lost));
    }

    async fn revoke(&mut self, partitions: Vec<TopicPartition>) {
        if partitions.is_empty() {
            return;
        }
        for tp in &partitions {
            if let Some(position) = self.consumer.position(&tp.0, tp.1) {
                if self.committed.get(tp) != Some(&position) {
                    self.revoked_positions.insert(tp.clone(), position);
                }
            }
        }
        if self.config.enable_auto_commit {
            if let Err(e) = self.commit_pending(&[]).await {
                warn!(group = %self.config.group_id, error = %e, "commit before revoking failed");
            }
        }
        self.consumer.remove_partitions(&partitions);
        for tp in &partitions {
            self.owned.remove(tp);
            self.unpositioned.remove(tp);
        }
        self.emit(RebalanceEvent::Revoked(partitions));
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    async fn start_join(&mut self) -> Result<(), ClientError> {
        self.stop_heartbeat();
        if !self.cooperative() && !self.owned.is_empty() {
            let all: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.revoke(all).await;
        }
        let coordinator = match self.coordinator().await {
            Ok(c) => c,
            Err(e) if e.is_retriable() => {
                debug!(error = %e, "group coordinator not reachable yet");
                self.retry_at = Instant::now() + Duration::from_millis(200);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.signals.rejoin.store(false, Ordering::SeqCst);
        let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        let metadata = encode_subscription(&self.subscription, &owned);
        let task = JoinTask {
            coordinator,
            cluster: Arc::clone(self.consumer.cluster()),
            group_id: self.config.group_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            member_id: self.member_id.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.rebalance_timeout_ms,
            protocols: self
                .config
                .assignors
                .iter()
                .map(|a| (a.name().to_string(), metadata.clone()))
                .collect(),
            timeout: self.config.consumer.client.request_timeout()
                + Duration::from_millis(self.config.rebalance_timeout_ms.max(0) as u64),
        };
        self.join = Some(tokio::spawn(task.run()));
        Ok(())
    }

    /// Waits up to `wait` for the pending join; applies it if it finished.
    async fn wait_join(&mut self, wait: Duration) -> Result<(), ClientError> {
        let Some(handle) = self.join.as_mut() else {
            return Ok(());
        };
        let Ok(joined) = tokio::time::timeout(wait, handle).await else {
            return Ok(());
        };
        self.join = None;
        let (member_id, result) =
            joined.map_err(|e| ClientError::Protocol(format!("the join task failed: {e}")))?;
        self.member_id = member_id;
        match result {
            Ok(outcome) => self.finish_join(outcome).await,
            Err(e)
                if e.is_retriable()
                    || matches!(&e, ClientError::Broker(err, _) if is_coordinator_error(err.code())) =>
            {
                debug!(error = %e, "join failed, retrying");
                self.coordinator = None;
                self.signals.rejoin.store(true, Ordering::SeqCst);
                self.retry_at = Instant::now() + Duration::from_millis(200);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn finish_join(&mut self, outcome: JoinOutcome) -> Result<(), ClientError> {
        self.generation = outcome.generation;
        self.protocol = Some(outcome.protocol);
        let new: BTreeSet<TopicPartition> = outcome
            .assignment
            .into_iter()
            .filter(|(t, _)| self.subscription.contains(t))
            .collect();
        let revoked: Vec<TopicPartition> = self.owned.difference(&new).cloned().collect();
        let added: Vec<TopicPartition> = new.difference(&self.owned).cloned().collect();
        if !revoked.is_empty() {
            self.revoke(revoked).await;
            // Cooperative: what was given up goes to its new owner in a follow-up rebalance.
            if self.cooperative() {
                self.signals.rejoin.store(true, Ordering::SeqCst);
            }
        }
        for tp in &added {
            self.owned.insert(tp.clone());
            self.unpositioned.insert(tp.clone());
        }
        self.emit(RebalanceEvent::Assigned(added));
        self.ensure_heartbeat().await;
        self.position_new_partitions().await
    }

    /// Starts the heartbeat of the current generation if it is not running.
    async fn ensure_heartbeat(&mut self) {
        if self.generation < 0 || self.heartbeat.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Ok(coordinator) = self.coordinator().await else {
            return;
        };
        let Ok(version) = coordinator.version(ApiKey::Heartbeat, 0, 4) else {
            return;
        };
        let mut request = HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        if version >= 3 {
            request.group_instance_id = self
                .config
                .group_instance_id
                .clone()
                .map(StrBytes::from_string);
        }
        let interval = Duration::from_millis(self.config.heartbeat_interval_ms);
        let timeout = self.config.consumer.client.request_timeout();
        let signals = Arc::clone(&self.signals);
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let code = match coordinator.send(&request, version, timeout).await {
                    Ok(r) => r.error_code,
                    Err(e) => {
                        debug!(error = %e, "heartbeat failed");
                        signals.coordinator_lost.store(true, Ordering::SeqCst);
                        return;
                    }
                };
                match code {
                    0 => continue,
                    REBALANCE_IN_PROGRESS => signals.rejoin.store(true, Ordering::SeqCst),
                    ILLEGAL_GENERATION => signals.fenced.store(true, Ordering::SeqCst),
                    UNKNOWN_MEMBER_ID => {
                        signals.unknown_member.store(true, Ordering::SeqCst);
                        signals.fenced.store(true, Ordering::SeqCst);
                    }
                    c if is_coordinator_error(c) => {
                        signals.coordinator_lost.store(true, Ordering::SeqCst)
                    }
                    c => {
                        *signals.fatal.lock().expect("lock") =
                            Some(ClientError::broker(c, Some("Heartbeat")));
                    }
                }
                return;
            }
        }));
    }

    /// Starting positions of newly assigned partitions: the committed offset, else the reset
    /// policy. Retried at the next poll if the coordinator cannot answer now.
    async fn position_new_partitions(&mut self) -> Result<(), ClientError> {
        if self.unpositioned.is_empty() {
            return Ok(());
        }
        let wanted: Vec<TopicPartition> = self.unpositioned.iter().cloned().collect();
        let committed = match self.fetch_committed(&wanted).await {
            Ok(c) => c,
            Err(e) if e.is_retriable() => {
                self.coordinator = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut positions = Vec::with_capacity(wanted.len());
        for tp in wanted {
            let position = match committed.get(&tp) {
                Some(&offset) => {
                    self.committed.insert(tp.clone(), offset);
                    offset
                }
                None => {
                    let target = match self.config.consumer.auto_offset_reset {
                        OffsetReset::Earliest => -2,
                        OffsetReset::Latest => -1,
                        OffsetReset::None => {
                            return Err(ClientError::Config(format!(
                                "no committed offset for {}-{} and auto_offset_reset is None",
                                tp.0, tp.1
                            )))
                        }
                    };
                    self.consumer.list_offset(&tp.0, tp.1, target).await?
                }
            };
            positions.push((tp.0, tp.1, position));
        }
        for (t, p, _) in &positions {
            self.unpositioned.remove(&(t.clone(), *p));
        }
        self.consumer.add_partitions(&positions);
        Ok(())
    }

    /// The group's committed offsets for these partitions (those that have one).
    pub async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        self.fetch_committed(partitions).await
    }

    async fn fetch_committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let coordinator = self.coordinator().await?;
        let timeout = self.config.consumer.client.request_timeout();
        fetch_offsets(
            &coordinator,
            &self.config.group_id,
            Some(partitions),
            timeout,
        )
        .await
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || Instant::now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit =
            Instant::now() + Duration::from_millis(self.config.auto_commit_interval_ms);
        if let Err(e) = self.commit_sync().await {
            debug!(error = %e, "auto-commit failed");
        }
    }

    /// Commits the position of every owned partition (the offset after the last record `poll`
    /// returned), and of partitions revoked since the last commit.
    pub async fn commit_sync(&mut self) -> Result<(), ClientError> {
        self.commit_pending(&[]).await
    }

    /// Commits these offsets (the next offset to read, as in Kafka), plus positions of
    /// partitions revoked since the last commit.
    pub async fn commit_offsets(
        &mut self,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit_pending(offsets).await
    }

    /// `explicit` empty: commit positions of owned partitions.
    async fn commit_pending(&mut self, explicit: &[(String, i32, i64)]) -> Result<(), ClientError> {
        let mut offsets: BTreeMap<TopicPartition, i64> = self.revoked_positions.clone();
        if explicit.is_empty() {
            for tp in &self.owned {
                if let Some(position) = self.consumer.position(&tp.0, tp.1) {
                    offsets.insert(tp.clone(), position);
                }
            }
        } else {
            for (t, p, o) in explicit {
                offsets.insert((t.clone(), *p), *o);
            }
        }
        offsets.retain(|tp, o| self.committed.get(tp) != Some(o));
        if offsets.is_empty() {
            return Ok(());
        }
        let list: Vec<(String, i32, i64)> = offsets
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect();
        let mut result = self.send_commit(&list).await;
        // A rebalance finishing under our feet: complete it, then commit with the new
        // generation (the partitions stay ours until this member rejoins again).
        if let Err(ClientError::Broker(e, _)) = &result {
            let code = e.code();
            if (code == ILLEGAL_GENERATION || code == REBALANCE_IN_PROGRESS) && self.join.is_some()
            {
                let wait = Duration::from_millis(self.config.rebalance_timeout_ms.max(0) as u64);
                // Boxed: applying the join may revoke partitions, which commits again.
                Box::pin(self.wait_join(wait)).await?;
                result = self.send_commit(&list).await;
            }
        }
        match &result {
            Ok(()) => {
                for (tp, o) in offsets {
                    self.revoked_positions.remove(&tp);
                    self.committed.insert(tp, o);
                }
            }
            Err(ClientError::Broker(e, _)) if self.join.is_none() => match e.code() {
                REBALANCE_IN_PROGRESS => self.signals.rejoin.store(true, Ordering::SeqCst),
                ILLEGAL_GENERATION => self.signals.fenced.store(true, Ordering::SeqCst),
                UNKNOWN_MEMBER_ID => {
                    self.signals.unknown_member.store(true, Ordering::SeqCst);
                    self.signals.fenced.store(true, Ordering::SeqCst);
                }
                FENCED_INSTANCE_ID => {}
                c if is_coordinator_error(c) => self.coordinator = None,
                _ => {}
            },
            Err(e) if e.is_retriable() => self.coordinator = None,
            Err(_) => {}
        }
        result
    }

    async fn send_commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), ClientError> {
        let coordinator = self.coordinator().await?;
        let timeout = self.config.consumer.client.request_timeout();
        commit_offsets(
            &coordinator,
            &self.config.group_id,
            &self.committer(),
            offsets,
            timeout,
        )
        .await
    }

    /// Commits (with auto-commit), revokes every partition and leaves the group. A static
    /// member does not leave: its session timeout ends its membership, so a restart within it
    /// keeps the assignment.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some(join) = self.join.take() {
            join.abort();
        }
        let commit = if self.config.enable_auto_commit {
            self.commit_sync().await
        } else {
            Ok(())
        };
        let all: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        if !all.is_empty() {
            self.consumer.remove_partitions(&all);
            self.owned.clear();
            self.emit(RebalanceEvent::Revoked(all));
        }
        self.stop_heartbeat();
        if self.config.group_instance_id.is_none() && !self.member_id.is_empty() {
            if let Err(e) = self.leave().await {
                debug!(error = %e, "LeaveGroup failed; the session timeout will remove us");
            }
        }
        commit
    }

    async fn leave(&mut self) -> Result<(), ClientError> {
        let coordinator = self.coordinator().await?;
        let version = coordinator.version(ApiKey::LeaveGroup, 0, 5)?;
        let member_id = StrBytes::from_string(self.member_id.clone());
        let mut request = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())));
        if version >= 3 {
            request.members = vec![MemberIdentity::default().with_member_id(member_id)];
        } else {
            request.member_id = member_id;
        }
        let response = coordinator
            .send(
                &request,
                version,
                self.config.consumer.client.request_timeout(),
            )
            .await?;
        match response.error_code {
            0 => Ok(()),
            c => Err(ClientError::broker(c, Some("LeaveGroup"))),
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        // The tasks hold the coordinator connection; without this they would outlive us.
        self.stop_heartbeat();
        if let Some(join) = self.join.take() {
            join.abort();
        }
    }
}

/// JoinGroup then SyncGroup, repeated until the member is in a stable generation; the leader
/// computes the assignment in between.
struct JoinTask {
    coordinator: Arc<BrokerConnection>,
    cluster: Arc<Cluster>,
    group_id: String,
    group_instance_id: Option<String>,
    member_id: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    /// Assignor name and subscription metadata, in order of preference.
    protocols: Vec<(String, bytes::Bytes)>,
    timeout: Duration,
}

impl JoinTask {
    async fn run(mut self) -> JoinResult {
        let result = self.join().await;
        (self.member_id, result)
    }

    async fn join(&mut self) -> Result<JoinOutcome, ClientError> {
        let join_version = self.coordinator.version(ApiKey::JoinGroup, 2, 9)?;
        let sync_version = self.coordinator.version(ApiKey::SyncGroup, 1, 5)?;
        let group = GroupId(StrBytes::from_string(self.group_id.clone()));
        let instance = self.group_instance_id.clone().map(StrBytes::from_string);
        for _ in 0..MAX_JOIN_ATTEMPTS {
            let mut request = JoinGroupRequest::default()
                .with_group_id(group.clone())
                .with_session_timeout_ms(self.session_timeout_ms)
                .with_rebalance_timeout_ms(self.rebalance_timeout_ms)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(
                    self.protocols
                        .iter()
                        .map(|(name, metadata)| {
                            JoinGroupRequestProtocol::default()
                                .with_name(StrBytes::from_string(name.clone()))
                                .with_metadata(metadata.clone())
                        })
                        .collect(),
                );
            if join_version >= 5 {
                request.group_instance_id = instance.clone();
            }
            let response = self
                .coordinator
                .send(&request, join_version, self.timeout)
                .await?;
            match response.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    self.member_id = response.member_id.to_string();
                    continue;
                }
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                REBALANCE_IN_PROGRESS => continue,
                code => return Err(ClientError::broker(code, Some("JoinGroup"))),
            }
            self.member_id = response.member_id.to_string();
            let protocol = response
                .protocol_name
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let assignments = if response.leader == response.member_id {
                self.assign(&protocol, &response.members).await?
            } else {
                Vec::new()
            };
            let mut sync = SyncGroupRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(response.generation_id)
                .with_member_id(response.member_id.clone())
                .with_assignments(assignments);
            if sync_version >= 3 {
                sync.group_instance_id = instance.clone();
            }
            if sync_version >= 5 {
                sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
                sync.protocol_name = Some(StrBytes::from_string(protocol.clone()));
            }
            let answer = self
                .coordinator
                .send(&sync, sync_version, self.timeout)
                .await?;
            match answer.error_code {
                0 => {
                    return Ok(JoinOutcome {
                        generation: response.generation_id,
                        protocol,
                        assignment: decode_assignment(&answer.assignment),
                    })
                }
                REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => continue,
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                code => return Err(ClientError::broker(code, Some("SyncGroup"))),
            }
        }
        Err(ClientError::Protocol(format!(
            "group {} did not stabilise after {MAX_JOIN_ATTEMPTS} joins",
            self.group_id
        )))
    }

    /// The leader's job: every member's subscription, the partition counts, the assignor.
    async fn assign(
        &self,
        protocol: &str,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>, ClientError> {
        let assignor = Assignor::from_name(protocol).ok_or_else(|| {
            ClientError::Unsupported(format!("the group chose the unknown assignor '{protocol}'"))
        })?;
        let subscriptions: BTreeMap<String, MemberSubscription> = members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    decode_subscription(&m.metadata).unwrap_or_default(),
                )
            })
            .collect();
        let topics: BTreeSet<String> = subscriptions
            .values()
            .flat_map(|s| s.topics.iter().cloned())
            .collect();
        let topics: Vec<String> = topics.into_iter().collect();
        let metadata = self.cluster.metadata(&topics, false).await?;
        let partitions: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.partitions.len() as i32)))
            .collect();
        let plan = assignor.assign(&subscriptions, &partitions);
        Ok(plan
            .into_iter()
            .map(|(member, tps)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(encode_assignment(&tps))
            })
            .collect())
    }
}
