//! One file per Kafka API. Each handler maps outcomes to Kafka error codes in one place (the
//! `error_code()` of the partition's or registry's error type) and never panics on input.

pub mod acls;
pub mod add_partitions_to_txn;
pub mod api_versions;
pub mod authorize;
pub mod authorize_admin;
pub mod authorize_fixup;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_producers;
pub mod describe_transactions;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl;
pub mod scram_credentials;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

/// What a handler knows about the request besides its body.
#[derive(Clone)]
pub struct RequestContext {
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    /// The client's address as Kafka reports it in DescribeGroups ("/127.0.0.1").
    pub client_host: String,
    /// Who the connection authenticated as ("User:NAME"; "User:ANONYMOUS" without SASL).
    pub principal: std::sync::Arc<str>,
    /// The name of the listener the connection came through (what Metadata advertises).
    pub listener: std::sync::Arc<str>,
}

impl RequestContext {
    /// The client's address without Kafka's leading '/' (what ACL hosts name).
    pub fn host(&self) -> &str {
        self.client_host
            .trim_start_matches('/')
            .trim_start_matches('[')
            .trim_end_matches(']')
    }
}

/// The wire form of an optional error.
pub fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

pub fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

/// The single leader epoch of every partition (one broker, never re-elected). Requests that
/// name a newer epoch get UNKNOWN_LEADER_EPOCH, as from a leader that has not caught up.
pub const LEADER_EPOCH: i32 = 0;

pub fn check_leader_epoch(current_leader_epoch: i32) -> Option<ResponseError> {
    // With one epoch that never changes, no request can carry an older one (which would be
    // FENCED_LEADER_EPOCH); -1 means the client does not know the epoch.
    (current_leader_epoch > LEADER_EPOCH).then_some(ResponseError::UnknownLeaderEpoch)
}

/// Authorized-operation bitfields reported when asked (no authorizer: everything allowed).
/// Bits are Kafka's AclOperation codes.
pub fn operations_bitfield(ops: &[u8]) -> i32 {
    ops.iter().fold(0, |acc, op| acc | (1 << op))
}

/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC_OPERATIONS: &[u8] = &[3, 4, 5, 6, 7, 8, 10, 11];
/// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
pub const CLUSTER_OPERATIONS: &[u8] = &[5, 7, 8, 9, 10, 11, 12];
