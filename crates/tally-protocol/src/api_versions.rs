//! The table of API versions Tally advertises in ApiVersions.
//!
//! This is our own table rather than `kafka_protocol`'s `valid_versions()`: clients pick
//! min(their max, our max), so every version listed here must be one the broker really serves.
//! The test below decodes a request at every advertised version to keep the two in step.

use kafka_protocol::messages::ApiKey;

/// An advertised (min, max) range for one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: ApiKey,
    pub min: i16,
    pub max: i16,
}

impl ApiRange {
    const fn new(api_key: ApiKey, min: i16, max: i16) -> ApiRange {
        ApiRange { api_key, min, max }
    }
}

/// Produce v0-2 are advertised (Kafka 4 does so too, KAFKA-18659: old librdkafka gates
/// compression on seeing Produce v0) but answered with UNSUPPORTED_VERSION.
pub const PRODUCE_MIN_IMPLEMENTED: i16 = 3;

/// Every API the broker serves, with the versions it advertises.
pub const ADVERTISED_APIS: &[ApiRange] = &[
    // v12 is transaction version 2: the broker adds a transactional batch's partition to the
    // transaction (KIP-890 part 2). v13 names topics by id, not served.
    ApiRange::new(ApiKey::Produce, 0, 12),
    ApiRange::new(ApiKey::Fetch, 4, 12),
    ApiRange::new(ApiKey::ListOffsets, 1, 7),
    ApiRange::new(ApiKey::Metadata, 0, 12),
    ApiRange::new(ApiKey::ApiVersions, 0, 4),
    ApiRange::new(ApiKey::CreateTopics, 2, 7),
    ApiRange::new(ApiKey::DeleteTopics, 1, 6),
    ApiRange::new(ApiKey::InitProducerId, 0, 5),
    ApiRange::new(ApiKey::OffsetForLeaderEpoch, 2, 4),
    ApiRange::new(ApiKey::DescribeConfigs, 1, 4),
    ApiRange::new(ApiKey::CreatePartitions, 0, 3),
    ApiRange::new(ApiKey::DescribeCluster, 0, 1),
    ApiRange::new(ApiKey::DescribeProducers, 0, 0),
    // Served in cluster mode for any partition's Raft group and the controller's
    // (`__cluster_metadata`-0); a broker that runs alone answers INVALID_REQUEST.
    ApiRange::new(ApiKey::DescribeQuorum, 0, 2),
    // Cluster mode: a partition's replicas move by Raft membership changes.
    ApiRange::new(ApiKey::AlterPartitionReassignments, 0, 1),
    ApiRange::new(ApiKey::ListPartitionReassignments, 0, 0),
    // Kafka 4 serves v1 only (v0 was removed, KIP-896), as the kafka-protocol crate does.
    ApiRange::new(ApiKey::WriteTxnMarkers, 1, 1),
    // v4+ is the batched form brokers send (verify-only included); clients send v0-v3.
    ApiRange::new(ApiKey::AddPartitionsToTxn, 0, 5),
    // v5 is transaction version 2: every commit and abort bumps the epoch (KIP-890 part 2).
    ApiRange::new(ApiKey::EndTxn, 0, 5),
    ApiRange::new(ApiKey::AddOffsetsToTxn, 0, 3),
    // v5 adds the offsets partition itself (transaction version 2).
    ApiRange::new(ApiKey::TxnOffsetCommit, 0, 5),
    ApiRange::new(ApiKey::DescribeTransactions, 0, 0),
    // v2 adds a regular-expression filter on transactional ids.
    ApiRange::new(ApiKey::ListTransactions, 0, 1),
    ApiRange::new(ApiKey::FindCoordinator, 0, 4),
    ApiRange::new(ApiKey::JoinGroup, 0, 8),
    ApiRange::new(ApiKey::SyncGroup, 0, 5),
    ApiRange::new(ApiKey::Heartbeat, 0, 4),
    ApiRange::new(ApiKey::LeaveGroup, 0, 5),
    ApiRange::new(ApiKey::OffsetCommit, 2, 9),
    ApiRange::new(ApiKey::OffsetFetch, 1, 8),
    ApiRange::new(ApiKey::ListGroups, 0, 4),
    ApiRange::new(ApiKey::DescribeGroups, 0, 5),
    ApiRange::new(ApiKey::DeleteGroups, 0, 2),
    ApiRange::new(ApiKey::OffsetDelete, 0, 0),
    // SaslHandshake v0 would mean raw SASL tokens without Kafka framing afterwards: only v1
    // (tokens in SaslAuthenticate) is served, and every client in use picks it.
    ApiRange::new(ApiKey::SaslHandshake, 1, 1),
    ApiRange::new(ApiKey::SaslAuthenticate, 0, 2),
    ApiRange::new(ApiKey::DescribeUserScramCredentials, 0, 0),
    ApiRange::new(ApiKey::AlterUserScramCredentials, 0, 0),
    ApiRange::new(ApiKey::DescribeAcls, 1, 3),
    ApiRange::new(ApiKey::CreateAcls, 1, 3),
    ApiRange::new(ApiKey::DeleteAcls, 1, 3),
];

/// The feature a client reads to choose transaction version 2 (KIP-1022), and its level: the
/// versions above (Produce v12, EndTxn v5, TxnOffsetCommit v5) serve it.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
pub const TRANSACTION_VERSION: i16 = 2;

/// The advertised range for a raw api key, if the broker serves that API at all.
pub fn advertised_range(api_key: i16) -> Option<ApiRange> {
    ADVERTISED_APIS
        .iter()
        .copied()
        .find(|r| r.api_key as i16 == api_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::RequestKind;

    /// Encodes a default request at each advertised version and decodes it again: catches an
    /// advertised version the codec cannot read.
    #[test]
    fn every_advertised_version_decodes() {
        for range in ADVERTISED_APIS {
            let min = if range.api_key == ApiKey::Produce {
                PRODUCE_MIN_IMPLEMENTED
            } else {
                range.min
            };
            for version in min..=range.max {
                let valid = range.api_key.valid_versions();
                assert!(
                    valid.min <= version && version <= valid.max,
                    "{:?} v{version} is advertised but kafka-protocol cannot decode it",
                    range.api_key
                );
                let request = default_request(range.api_key);
                let mut buf = BytesMut::new();
                request
                    .encode(&mut buf, version)
                    .unwrap_or_else(|e| panic!("{:?} v{version} encode: {e}", range.api_key));
                let mut bytes: Bytes = buf.freeze();
                let decoded = RequestKind::decode(range.api_key, &mut bytes, version)
                    .unwrap_or_else(|e| panic!("{:?} v{version} decode: {e}", range.api_key));
                assert_eq!(decoded, request, "{:?} v{version}", range.api_key);
                assert!(
                    bytes.is_empty(),
                    "{:?} v{version} left bytes",
                    range.api_key
                );
            }
        }
    }

    fn default_request(api_key: ApiKey) -> RequestKind {
        use kafka_protocol::messages::*;
        match api_key {
            ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
            ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
            ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
            ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
            ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
            ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
            ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
            ApiKey::OffsetForLeaderEpoch => {
                RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
            }
            ApiKey::DescribeConfigs => {
                RequestKind::DescribeConfigs(DescribeConfigsRequest::default())
            }
            ApiKey::CreatePartitions => {
                RequestKind::CreatePartitions(CreatePartitionsRequest::default())
            }
            ApiKey::DescribeCluster => {
                RequestKind::DescribeCluster(DescribeClusterRequest::default())
            }
            ApiKey::DescribeProducers => {
                RequestKind::DescribeProducers(DescribeProducersRequest::default())
            }
            ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(DescribeQuorumRequest::default()),
            ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsRequest::default(),
            ),
            ApiKey::ListPartitionReassignments => {
                RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default())
            }
            ApiKey::FindCoordinator => {
                RequestKind::FindCoordinator(FindCoordinatorRequest::default())
            }
            ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
            ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
            ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
            ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
            ApiKey::SaslHandshake => RequestKind::SaslHandshake(SaslHandshakeRequest::default()),
            ApiKey::SaslAuthenticate => {
                RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default())
            }
            ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsRequest::default(),
            ),
            ApiKey::AlterUserScramCredentials => {
                RequestKind::AlterUserScramCredentials(AlterUserScramCredentialsRequest::default())
            }
            ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default()),
            ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::default()),
            ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::default()),
            ApiKey::AddPartitionsToTxn => {
                RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default())
            }
            ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default()),
            ApiKey::AddOffsetsToTxn => {
                RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::default())
            }
            ApiKey::TxnOffsetCommit => {
                RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default())
            }
            ApiKey::DescribeTransactions => {
                RequestKind::DescribeTransactions(DescribeTransactionsRequest::default())
            }
            ApiKey::ListTransactions => {
                RequestKind::ListTransactions(ListTransactionsRequest::default())
            }
            ApiKey::WriteTxnMarkers => {
                RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default())
            }
            other => panic!("add {other:?} to default_request"),
        }
    }

    #[test]
    fn lookup() {
        assert_eq!(advertised_range(0).unwrap().max, 12);
        assert_eq!(
            advertised_range(24).unwrap().max,
            5,
            "AddPartitionsToTxn, the batched form too"
        );
        assert!(advertised_range(-3).is_none());
    }
}
