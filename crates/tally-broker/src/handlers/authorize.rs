//! Kafka's per-API authorization, applied to a decoded request before its handler when the
//! authorizer is on. A request is either refused whole (the answer is built here) or passed
//! on without the topics, groups or ids the principal may not touch, and a [`Fixup`] then
//! adds their refusals (TOPIC_AUTHORIZATION_FAILED and the like) to the handler's answer, so
//! nothing refused reaches a partition. Metadata hides the topics the principal may not
//! describe.
//!
//! Rules (Kafka's operations table): Produce needs Write on the topic (and on the
//! transactional id); Fetch needs Read; ListOffsets, OffsetForLeaderEpoch and Metadata need
//! Describe; CreateTopics needs Create on the cluster or the topic; DeleteTopics needs
//! Delete; InitProducerId needs Write on its transactional id, or for an idempotent producer
//! IdempotentWrite on the cluster or Write on any topic (KIP-679); JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup and OffsetCommit need Read on the group (OffsetCommit also Read on
//! each topic), OffsetFetch Describe on the group (and shows only topics it may describe); the SCRAM APIs need Describe or Alter on the cluster. The other
//! APIs' rules are in `authorize_admin.rs`; the answers' refusals in `authorize_fixup.rs`.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub(super) const TOPIC_DENIED: i16 = 29;
pub(super) const GROUP_DENIED: i16 = 30;
pub(super) const CLUSTER_DENIED: i16 = 31;
pub(super) const TXN_ID_DENIED: i16 = 53;

/// What to add to the handler's answer for what was taken out of the request.
#[derive(Debug, Default)]
pub enum Fixup {
    #[default]
    None,
    /// Topics and their partitions refused, in the answer of the request's API.
    Topics(Vec<(String, Vec<i32>)>, i16),
    /// Metadata: hide every topic the principal may not describe, and add these refusals.
    Metadata(Vec<String>),
    /// Groups (OffsetFetch v8, DescribeGroups, DeleteGroups) or transactional ids
    /// (DescribeTransactions) refused.
    Groups(Vec<String>),
    /// DescribeConfigs: (resource type, name, error) of each resource refused.
    Configs(Vec<(i8, String, i16)>),
    /// ListGroups, ListTransactions: list only what the principal may describe.
    Visible,
    /// DeleteTopics: topics refused by name, and by id only.
    DeleteTopics(Vec<(String, Vec<i32>)>, Vec<uuid::Uuid>),
}

/// The request's verdict: served (perhaps reduced), refused with an answer, or refused by
/// closing the connection (an API without a rule yet, for anyone but a super user).
pub enum Verdict {
    Serve(RequestKind, Fixup),
    Refuse(ResponseKind),
    Close(String),
}

struct Who<'a> {
    broker: &'a Broker,
    ctx: &'a RequestContext,
}

impl Who<'_> {
    fn may(&self, op: Operation, t: ResourceType, name: &str) -> bool {
        self.broker
            .acls
            .allows(&self.ctx.principal, self.ctx.host(), op, t, name)
    }
    fn may_topic(&self, op: Operation, name: &str) -> bool {
        self.may(op, ResourceType::Topic, name)
    }
    fn may_cluster(&self, op: Operation) -> bool {
        self.may(op, ResourceType::Cluster, CLUSTER_NAME)
    }
}

/// Splits `items` into the allowed and the refused (name and partitions).
fn split<T>(
    items: Vec<T>,
    allowed: impl Fn(&T) -> bool,
    refusal: impl Fn(&T) -> (String, Vec<i32>),
) -> (Vec<T>, Vec<(String, Vec<i32>)>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for item in items {
        if allowed(&item) {
            kept.push(item);
        } else {
            refused.push(refusal(&item));
        }
    }
    (kept, refused)
}

/// A group of rules: the request's verdict, or the request for the next group.
enum Rule {
    Decided(Verdict),
    Next(RequestKind),
}

pub fn check(broker: &Broker, ctx: &RequestContext, request: RequestKind) -> Verdict {
    if !broker.acls.enabled() {
        return Verdict::Serve(request, Fixup::None);
    }
    let who = Who { broker, ctx };
    let rules = [data_path, topics_and_producers, groups_and_users];
    let mut request = request;
    for rule in rules {
        match rule(&who, request) {
            Rule::Decided(verdict) => return verdict,
            Rule::Next(other) => request = other,
        }
    }
    super::authorize_admin::check(broker, ctx, request)
}

/// Produce, Fetch, ListOffsets, OffsetForLeaderEpoch, Metadata.
fn data_path(who: &Who<'_>, request: RequestKind) -> Rule {
    use Operation::*;
    let topics = |refused: Vec<(String, Vec<i32>)>, code: i16| Fixup::Topics(refused, code);
    Rule::Decided(match request {
        RequestKind::Produce(mut r) => {
            if let Some(id) = &r.transactional_id {
                if !who.may(Write, ResourceType::TransactionalId, id) {
                    let refused = r
                        .topic_data
                        .iter()
                        .map(|t| {
                            (
                                t.name.to_string(),
                                t.partition_data.iter().map(|p| p.index).collect(),
                            )
                        })
                        .collect();
                    r.topic_data.clear();
                    return Rule::Decided(Verdict::Serve(
                        RequestKind::Produce(r),
                        topics(refused, TXN_ID_DENIED),
                    ));
                }
            }
            let (kept, refused) = split(
                std::mem::take(&mut r.topic_data),
                |t| who.may_topic(Write, &t.name),
                |t| {
                    (
                        t.name.to_string(),
                        t.partition_data.iter().map(|p| p.index).collect(),
                    )
                },
            );
            r.topic_data = kept;
            Verdict::Serve(RequestKind::Produce(r), topics(refused, TOPIC_DENIED))
        }
        RequestKind::Fetch(mut r) => {
            let (kept, refused) = split(
                std::mem::take(&mut r.topics),
                |t| who.may_topic(Read, &t.topic),
                |t| {
                    (
                        t.topic.to_string(),
                        t.partitions.iter().map(|p| p.partition).collect(),
                    )
                },
            );
            r.topics = kept;
            Verdict::Serve(RequestKind::Fetch(r), topics(refused, TOPIC_DENIED))
        }
        RequestKind::ListOffsets(mut r) => {
            let (kept, refused) = split(
                std::mem::take(&mut r.topics),
                |t| who.may_topic(Describe, &t.name),
                |t| {
                    (
                        t.name.to_string(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                },
            );
            r.topics = kept;
            Verdict::Serve(RequestKind::ListOffsets(r), topics(refused, TOPIC_DENIED))
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let (kept, refused) = split(
                std::mem::take(&mut r.topics),
                |t| who.may_topic(Describe, &t.topic),
                |t| {
                    (
                        t.topic.to_string(),
                        t.partitions.iter().map(|p| p.partition).collect(),
                    )
                },
            );
            r.topics = kept;
            Verdict::Serve(
                RequestKind::OffsetForLeaderEpoch(r),
                topics(refused, TOPIC_DENIED),
            )
        }
        RequestKind::Metadata(mut r) => {
            let mut refused = Vec::new();
            if let Some(list) = r.topics.take() {
                let (kept, denied): (Vec<_>, Vec<_>) = list
                    .into_iter()
                    .partition(|t| t.name.as_ref().is_some_and(|n| who.may_topic(Describe, n)));
                refused = denied
                    .into_iter()
                    .filter_map(|t| t.name.map(|n| n.to_string()))
                    .collect();
                let creatable = who.may_cluster(Create)
                    || kept
                        .iter()
                        .all(|t| t.name.as_ref().is_some_and(|n| who.may_topic(Create, n)));
                r.allow_auto_topic_creation &= creatable;
                r.topics = Some(kept);
            }
            Verdict::Serve(RequestKind::Metadata(r), Fixup::Metadata(refused))
        }
        other => return Rule::Next(other),
    })
}

/// CreateTopics, DeleteTopics, InitProducerId.
fn topics_and_producers(who: &Who<'_>, request: RequestKind) -> Rule {
    use Operation::*;
    let topics = |refused: Vec<(String, Vec<i32>)>, code: i16| Fixup::Topics(refused, code);
    Rule::Decided(match request {
        RequestKind::CreateTopics(mut r) => {
            let cluster = who.may_cluster(Create);
            let (kept, refused) = split(
                std::mem::take(&mut r.topics),
                |t| cluster || who.may_topic(Create, &t.name),
                |t| (t.name.to_string(), vec![]),
            );
            r.topics = kept;
            Verdict::Serve(RequestKind::CreateTopics(r), topics(refused, TOPIC_DENIED))
        }
        RequestKind::DeleteTopics(mut r) => {
            let name = |n: &Option<TopicName>| n.as_ref().map_or(String::new(), |n| n.to_string());
            let (kept, mut refused) = split(
                std::mem::take(&mut r.topic_names),
                |n| who.may_topic(Delete, n),
                |n| (n.to_string(), vec![]),
            );
            r.topic_names = kept;
            // v6 may name a topic by id only: authorize the name the id has (an id nobody
            // can resolve here is for super users only).
            let resolved = |t: &delete_topics_request::DeleteTopicState| {
                t.name.as_ref().map(|n| n.to_string()).or_else(|| {
                    who.broker
                        .topics
                        .get_by_id(t.topic_id)
                        .map(|topic| topic.name.clone())
                })
            };
            let (kept, denied): (Vec<_>, Vec<_>) =
                std::mem::take(&mut r.topics).into_iter().partition(|t| {
                    who.broker.acls.is_super_user(&who.ctx.principal)
                        || resolved(t).is_some_and(|n| who.may_topic(Delete, &n))
                });
            r.topics = kept;
            let mut by_id = Vec::new();
            for t in denied {
                match &t.name {
                    Some(n) => refused.push((n.to_string(), vec![])),
                    None => by_id.push(t.topic_id),
                }
            }
            let _ = name;
            Verdict::Serve(
                RequestKind::DeleteTopics(r),
                Fixup::DeleteTopics(refused, by_id),
            )
        }
        RequestKind::InitProducerId(r) => {
            let allowed = match &r.transactional_id {
                Some(id) => who.may(Write, ResourceType::TransactionalId, id),
                None => {
                    who.may_cluster(IdempotentWrite)
                        || who.broker.acls.allows_any(
                            &who.ctx.principal,
                            who.ctx.host(),
                            Write,
                            ResourceType::Topic,
                        )
                }
            };
            if allowed {
                return Rule::Decided(Verdict::Serve(RequestKind::InitProducerId(r), Fixup::None));
            }
            let code = if r.transactional_id.is_some() {
                TXN_ID_DENIED
            } else {
                CLUSTER_DENIED
            };
            Verdict::Refuse(ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ))
        }
        other => return Rule::Next(other),
    })
}

/// The group APIs, the SCRAM APIs, and what everyone may send.
fn groups_and_users(who: &Who<'_>, request: RequestKind) -> Rule {
    use Operation::*;
    let topics = |refused: Vec<(String, Vec<i32>)>, code: i16| Fixup::Topics(refused, code);
    Rule::Decided(match request {
        RequestKind::JoinGroup(r) if !who.may(Read, ResourceType::Group, &r.group_id) => {
            Verdict::Refuse(ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_generation_id(-1),
            ))
        }
        RequestKind::SyncGroup(r) if !who.may(Read, ResourceType::Group, &r.group_id) => {
            Verdict::Refuse(ResponseKind::SyncGroup(
                SyncGroupResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::Heartbeat(r) if !who.may(Read, ResourceType::Group, &r.group_id) => {
            Verdict::Refuse(ResponseKind::Heartbeat(
                HeartbeatResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::LeaveGroup(r) if !who.may(Read, ResourceType::Group, &r.group_id) => {
            Verdict::Refuse(ResponseKind::LeaveGroup(
                LeaveGroupResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::OffsetCommit(r) if !who.may(Read, ResourceType::Group, &r.group_id) => {
            // Refused before the coordinator sees it: no group is created or touched.
            use offset_commit_response::{
                OffsetCommitResponsePartition, OffsetCommitResponseTopic,
            };
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(GROUP_DENIED)
                                })
                                .collect(),
                        )
                })
                .collect();
            Verdict::Refuse(ResponseKind::OffsetCommit(
                OffsetCommitResponse::default().with_topics(topics),
            ))
        }
        RequestKind::OffsetCommit(mut r) => {
            let (kept, refused) = split(
                std::mem::take(&mut r.topics),
                |t| who.may_topic(Read, &t.name),
                |t| {
                    (
                        t.name.to_string(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                },
            );
            r.topics = kept;
            Verdict::Serve(RequestKind::OffsetCommit(r), topics(refused, TOPIC_DENIED))
        }
        RequestKind::OffsetFetch(r)
            if r.groups.is_empty() && !who.may(Describe, ResourceType::Group, &r.group_id) =>
        {
            Verdict::Refuse(ResponseKind::OffsetFetch(
                OffsetFetchResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::OffsetFetch(mut r) => {
            let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.groups)
                .into_iter()
                .partition(|g| who.may(Describe, ResourceType::Group, &g.group_id));
            r.groups = kept;
            let denied = denied.into_iter().map(|g| g.group_id.to_string()).collect();
            Verdict::Serve(RequestKind::OffsetFetch(r), Fixup::Groups(denied))
        }
        RequestKind::DescribeUserScramCredentials(_) if !who.may_cluster(Describe) => {
            Verdict::Refuse(ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default()
                    .with_error_code(CLUSTER_DENIED)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "Cluster authorization failed",
                    ))),
            ))
        }
        RequestKind::AlterUserScramCredentials(r) if !who.may_cluster(Alter) => {
            let users = r
                .upsertions
                .iter()
                .map(|u| u.name.clone())
                .chain(r.deletions.iter().map(|d| d.name.clone()));
            Verdict::Refuse(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .map(|user| {
                            alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                                .with_user(user)
                                .with_error_code(CLUSTER_DENIED)
                        })
                        .collect(),
                ),
            ))
        }
        // Served with their own checks, or harmless to everyone.
        r @ (RequestKind::JoinGroup(_)
        | RequestKind::SyncGroup(_)
        | RequestKind::Heartbeat(_)
        | RequestKind::LeaveGroup(_)
        | RequestKind::DescribeUserScramCredentials(_)
        | RequestKind::AlterUserScramCredentials(_)
        | RequestKind::ApiVersions(_)
        | RequestKind::FindCoordinator(_)
        | RequestKind::CreateAcls(_)
        | RequestKind::DescribeAcls(_)
        | RequestKind::DeleteAcls(_)) => Verdict::Serve(r, Fixup::None),
        other => return Rule::Next(other),
    })
}

pub(super) fn api_name(request: &RequestKind) -> String {
    let debug = format!("{request:?}");
    debug.split('(').next().unwrap_or("this API").to_string()
}

/// May the principal do `operation` on the resource? (What the answers' fixups ask.)
pub fn may(
    broker: &Broker,
    ctx: &RequestContext,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    Who { broker, ctx }.may(operation, resource_type, name)
}
