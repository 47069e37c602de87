//! The refusals added to a handler's answer for what `authorize::check` took out of its
//! request, and the filtering of lists (Metadata, ListGroups, ListTransactions) to what the
//! principal may describe.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authorize::{Fixup, GROUP_DENIED, TOPIC_DENIED, TXN_ID_DENIED};
use crate::security::acl::{Operation, ResourceType};

/// What the principal may do: (operation, resource type, name).
pub type May<'a> = &'a dyn Fn(Operation, ResourceType, &str) -> bool;

impl Fixup {
    /// Adds the refusals to the handler's answer, and hides from lists what `may` does not
    /// let the principal describe.
    pub fn apply(self, response: &mut ResponseKind, may: May<'_>) {
        let name = |n: &str| TopicName(StrBytes::from_string(n.to_string()));
        match (self, response) {
            (Fixup::None, _) => {}
            (Fixup::Topics(refused, code), ResponseKind::Produce(r)) => {
                r.responses.extend(refused.into_iter().map(|(t, ps)| {
                    TopicProduceResponse::default()
                        .with_name(name(&t))
                        .with_partition_responses(
                            ps.into_iter()
                                .map(|p| {
                                    PartitionProduceResponse::default()
                                        .with_index(p)
                                        .with_error_code(code)
                                        .with_base_offset(-1)
                                        .with_log_append_time_ms(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        )
                }))
            }
            (Fixup::Topics(refused, code), ResponseKind::Fetch(r)) => {
                r.responses.extend(refused.into_iter().map(|(t, ps)| {
                    FetchableTopicResponse::default()
                        .with_topic(name(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_high_watermark(-1)
                                        .with_last_stable_offset(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        )
                }))
            }
            (Fixup::Topics(refused, code), ResponseKind::ListOffsets(r)) => {
                r.topics.extend(refused.into_iter().map(|(t, ps)| {
                    ListOffsetsTopicResponse::default()
                        .with_name(name(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_timestamp(-1)
                                        .with_offset(-1)
                                })
                                .collect(),
                        )
                }))
            }
            (Fixup::Topics(refused, code), ResponseKind::OffsetForLeaderEpoch(r)) => {
                r.topics.extend(refused.into_iter().map(|(t, ps)| {
                    OffsetForLeaderTopicResult::default()
                        .with_topic(name(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    EpochEndOffset::default()
                                        .with_partition(p)
                                        .with_error_code(code)
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        )
                }))
            }
            (Fixup::Topics(refused, code), ResponseKind::OffsetCommit(r)) => {
                r.topics.extend(refused.into_iter().map(|(t, ps)| {
                    OffsetCommitResponseTopic::default()
                        .with_name(name(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                }))
            }
            (Fixup::Topics(refused, code), ResponseKind::CreateTopics(r)) => {
                r.topics.extend(refused.into_iter().map(|(t, _)| {
                    CreatableTopicResult::default()
                        .with_name(name(&t))
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Authorization failed.",
                        )))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                }))
            }
            (Fixup::DeleteTopics(refused, by_id), ResponseKind::DeleteTopics(r)) => {
                r.responses.extend(refused.into_iter().map(|(t, _)| {
                    DeletableTopicResult::default()
                        .with_name(Some(name(&t)))
                        .with_error_code(TOPIC_DENIED)
                }));
                r.responses.extend(by_id.into_iter().map(|id| {
                    DeletableTopicResult::default()
                        .with_topic_id(id)
                        .with_error_code(TOPIC_DENIED)
                }));
            }
            (Fixup::Metadata(refused), ResponseKind::Metadata(r)) => {
                r.topics.retain(|t| {
                    t.name
                        .as_ref()
                        .is_some_and(|n| may(Operation::Describe, ResourceType::Topic, n))
                });
                r.topics.extend(refused.into_iter().map(|t| {
                    MetadataResponseTopic::default()
                        .with_name(Some(name(&t)))
                        .with_error_code(TOPIC_DENIED)
                }));
            }
            (Fixup::Groups(refused), ResponseKind::OffsetFetch(r)) => {
                // Committed offsets only of topics the principal may describe.
                let seen = |t: &str| may(Operation::Describe, ResourceType::Topic, t);
                r.topics.retain(|t| seen(&t.name));
                for g in &mut r.groups {
                    g.topics.retain(|t| seen(&t.name));
                }
                r.groups.extend(refused.into_iter().map(|g| {
                    OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(g)))
                        .with_error_code(GROUP_DENIED)
                }))
            }
            (Fixup::Groups(refused), ResponseKind::DescribeGroups(r)) => {
                r.groups.extend(refused.into_iter().map(|g| {
                    DescribedGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(g)))
                        .with_error_code(GROUP_DENIED)
                }))
            }
            (Fixup::Groups(refused), ResponseKind::DeleteGroups(r)) => {
                r.results.extend(refused.into_iter().map(|g| {
                    DeletableGroupResult::default()
                        .with_group_id(GroupId(StrBytes::from_string(g)))
                        .with_error_code(GROUP_DENIED)
                }))
            }
            (Fixup::Groups(refused), ResponseKind::DescribeTransactions(r)) => {
                r.transaction_states.extend(refused.into_iter().map(|id| {
                    TransactionState::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                        .with_error_code(TXN_ID_DENIED)
                }))
            }
            (Fixup::Topics(refused, code), ResponseKind::CreatePartitions(r)) => {
                r.results.extend(refused.into_iter().map(|(t, _)| {
                    CreatePartitionsTopicResult::default()
                        .with_name(name(&t))
                        .with_error_code(code)
                }))
            }
            (Fixup::Topics(refused, code), ResponseKind::DescribeProducers(r)) => {
                r.topics.extend(refused.into_iter().map(|(t, ps)| {
                    TopicResponse::default()
                        .with_name(name(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    PartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                }))
            }
            (Fixup::Configs(refused), ResponseKind::DescribeConfigs(r)) => {
                r.results.extend(refused.into_iter().map(|(t, n, code)| {
                    DescribeConfigsResult::default()
                        .with_resource_type(t)
                        .with_resource_name(StrBytes::from_string(n))
                        .with_error_code(code)
                }))
            }
            (Fixup::Visible, ResponseKind::ListGroups(r)) => {
                r.groups
                    .retain(|g| may(Operation::Describe, ResourceType::Group, &g.group_id));
            }
            (Fixup::Visible, ResponseKind::ListTransactions(r)) => {
                r.transaction_states.retain(|t| {
                    may(
                        Operation::Describe,
                        ResourceType::TransactionalId,
                        &t.transactional_id,
                    )
                });
            }
            (fixup, _) => {
                tracing::error!(?fixup, "an authorization fixup does not fit its answer");
            }
        }
    }
}
