//! The authorization rules of the administrative and transactional APIs (the data path's are
//! in `authorize.rs`), from Kafka's operations table: DescribeConfigs needs DescribeConfigs
//! on the topic or the cluster; CreatePartitions needs Alter on the topic; DescribeGroups
//! Describe, DeleteGroups and OffsetDelete Delete on the group, ListGroups lists the groups
//! the principal may describe; DescribeProducers needs Read on the topic; DescribeCluster
//! Describe on the cluster; AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit
//! Write on the transactional id (and Write on the topics, Read on the group);
//! DescribeTransactions and ListTransactions Describe on the transactional id;
//! WriteTxnMarkers ClusterAction; DescribeQuorum and ListPartitionReassignments Describe,
//! AlterPartitionReassignments Alter on the cluster. An API without a rule here is for super
//! users only (fail closed).

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

use super::authorize::{Fixup, Verdict, CLUSTER_DENIED, GROUP_DENIED, TOPIC_DENIED, TXN_ID_DENIED};
use super::RequestContext;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

const OPERATION_NOT_ATTEMPTED: i16 = 55;
/// DescribeConfigs' resource types.
const CONFIG_TOPIC: i8 = 2;

pub fn check(broker: &Broker, ctx: &RequestContext, request: RequestKind) -> Verdict {
    use Operation::*;
    use ResourceType::{Cluster, Group, Topic, TransactionalId as TxnId};
    let may = |op: Operation, t: ResourceType, name: &str| {
        broker.acls.allows(&ctx.principal, ctx.host(), op, t, name)
    };
    match request {
        RequestKind::DescribeConfigs(mut r) => {
            let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.resources)
                .into_iter()
                .partition(|res| {
                    if res.resource_type == CONFIG_TOPIC {
                        may(DescribeConfigs, Topic, &res.resource_name)
                    } else {
                        may(DescribeConfigs, Cluster, CLUSTER_NAME)
                    }
                });
            r.resources = kept;
            let refused = refused
                .into_iter()
                .map(|res| {
                    let code = if res.resource_type == CONFIG_TOPIC {
                        TOPIC_DENIED
                    } else {
                        CLUSTER_DENIED
                    };
                    (res.resource_type, res.resource_name.to_string(), code)
                })
                .collect();
            Verdict::Serve(RequestKind::DescribeConfigs(r), Fixup::Configs(refused))
        }
        RequestKind::CreatePartitions(mut r) => {
            let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| may(Alter, Topic, &t.name));
            r.topics = kept;
            let refused = refused
                .into_iter()
                .map(|t| (t.name.to_string(), vec![]))
                .collect();
            Verdict::Serve(
                RequestKind::CreatePartitions(r),
                Fixup::Topics(refused, TOPIC_DENIED),
            )
        }
        RequestKind::DescribeGroups(mut r) => {
            let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.groups)
                .into_iter()
                .partition(|g| may(Describe, Group, g));
            r.groups = kept;
            let refused = refused.into_iter().map(|g| g.to_string()).collect();
            Verdict::Serve(RequestKind::DescribeGroups(r), Fixup::Groups(refused))
        }
        RequestKind::DeleteGroups(mut r) => {
            let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.groups_names)
                .into_iter()
                .partition(|g| may(Delete, Group, g));
            r.groups_names = kept;
            let refused = refused.into_iter().map(|g| g.to_string()).collect();
            Verdict::Serve(RequestKind::DeleteGroups(r), Fixup::Groups(refused))
        }
        RequestKind::ListGroups(r) => Verdict::Serve(RequestKind::ListGroups(r), Fixup::Visible),
        RequestKind::ListTransactions(r) => {
            Verdict::Serve(RequestKind::ListTransactions(r), Fixup::Visible)
        }
        RequestKind::OffsetDelete(r) if !may(Delete, Group, &r.group_id) => {
            Verdict::Refuse(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::DescribeProducers(mut r) => {
            let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| may(Read, Topic, &t.name));
            r.topics = kept;
            let refused = refused
                .into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect();
            Verdict::Serve(
                RequestKind::DescribeProducers(r),
                Fixup::Topics(refused, TOPIC_DENIED),
            )
        }
        RequestKind::DescribeCluster(_) if !may(Describe, Cluster, CLUSTER_NAME) => {
            Verdict::Refuse(ResponseKind::DescribeCluster(
                DescribeClusterResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::DescribeTransactions(mut r) => {
            let (kept, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.transactional_ids)
                .into_iter()
                .partition(|id| may(Describe, TxnId, id));
            r.transactional_ids = kept;
            let refused = refused.into_iter().map(|id| id.to_string()).collect();
            Verdict::Serve(RequestKind::DescribeTransactions(r), Fixup::Groups(refused))
        }
        RequestKind::EndTxn(r) if !may(Write, TxnId, &r.transactional_id) => {
            Verdict::Refuse(ResponseKind::EndTxn(
                EndTxnResponse::default()
                    .with_error_code(TXN_ID_DENIED)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !may(Write, TxnId, &r.transactional_id) {
                TXN_ID_DENIED
            } else if !may(Read, Group, &r.group_id) {
                GROUP_DENIED
            } else {
                return Verdict::Serve(RequestKind::AddOffsetsToTxn(r), Fixup::None);
            };
            Verdict::Refuse(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code),
            ))
        }
        RequestKind::TxnOffsetCommit(r) => {
            let whole = if !may(Write, TxnId, &r.transactional_id) {
                Some(TXN_ID_DENIED)
            } else if !may(Read, Group, &r.group_id) {
                Some(GROUP_DENIED)
            } else {
                None
            };
            let denied_topic = r.topics.iter().any(|t| !may(Read, Topic, &t.name));
            if whole.is_none() && !denied_topic {
                return Verdict::Serve(RequestKind::TxnOffsetCommit(r), Fixup::None);
            }
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    let code = whole.unwrap_or(if may(Read, Topic, &t.name) {
                        OPERATION_NOT_ATTEMPTED
                    } else {
                        TOPIC_DENIED
                    });
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Verdict::Refuse(ResponseKind::TxnOffsetCommit(
                TxnOffsetCommitResponse::default().with_topics(topics),
            ))
        }
        RequestKind::AddPartitionsToTxn(r) if r.transactions.is_empty() => {
            // The client's form (v0-v3): one transactional id, all partitions or none.
            let whole =
                (!may(Write, TxnId, &r.v3_and_below_transactional_id)).then_some(TXN_ID_DENIED);
            let denied_topic = r
                .v3_and_below_topics
                .iter()
                .any(|t| !may(Write, Topic, &t.name));
            if whole.is_none() && !denied_topic {
                return Verdict::Serve(RequestKind::AddPartitionsToTxn(r), Fixup::None);
            }
            let results = r
                .v3_and_below_topics
                .iter()
                .map(|t| {
                    let code = whole.unwrap_or(if may(Write, Topic, &t.name) {
                        OPERATION_NOT_ATTEMPTED
                    } else {
                        TOPIC_DENIED
                    });
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Verdict::Refuse(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        // The cluster's own APIs: Describe or Alter on the cluster, as in Kafka.
        RequestKind::DescribeQuorum(_) if !may(Describe, Cluster, CLUSTER_NAME) => {
            Verdict::Refuse(ResponseKind::DescribeQuorum(
                DescribeQuorumResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::ListPartitionReassignments(_) if !may(Describe, Cluster, CLUSTER_NAME) => {
            Verdict::Refuse(ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::AlterPartitionReassignments(_) if !may(Alter, Cluster, CLUSTER_NAME) => {
            Verdict::Refuse(ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        // The broker-to-broker form (v4+, verify_only) and the markers: brokers only.
        r @ (RequestKind::AddPartitionsToTxn(_) | RequestKind::WriteTxnMarkers(_))
            if !may(ClusterAction, Cluster, CLUSTER_NAME) =>
        {
            Verdict::Close(format!(
                "{} needs ClusterAction on the cluster",
                super::authorize::api_name(&r)
            ))
        }
        r @ (RequestKind::DescribeQuorum(_)
        | RequestKind::ListPartitionReassignments(_)
        | RequestKind::AlterPartitionReassignments(_)
        | RequestKind::OffsetDelete(_)
        | RequestKind::DescribeCluster(_)
        | RequestKind::EndTxn(_)
        | RequestKind::AddPartitionsToTxn(_)
        | RequestKind::WriteTxnMarkers(_)) => Verdict::Serve(r, Fixup::None),
        other if broker.acls.is_super_user(&ctx.principal) => Verdict::Serve(other, Fixup::None),
        other => Verdict::Close(format!(
            "{} is served to super users only while the authorizer is on",
            super::authorize::api_name(&other)
        )),
    }
}
