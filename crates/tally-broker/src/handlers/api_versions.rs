use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::StrBytes;
use tally_protocol::{
    ResponseError, ADVERTISED_APIS, TRANSACTION_VERSION, TRANSACTION_VERSION_FEATURE,
};

/// The versions we serve, and (v3+) the features: `transaction.version` 2 is finalized, so a
/// client that reads it (Java's since 4.0) uses transaction version 2. The features epoch is
/// 0, not -1: clients ignore finalized features of an epoch below 0. We accept any client
/// software name (Kafka rejects some).
pub fn response() -> ApiVersionsResponse {
    let feature = || StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    ApiVersionsResponse::default()
        .with_api_keys(
            ADVERTISED_APIS
                .iter()
                .map(|r| {
                    ApiVersion::default()
                        .with_api_key(r.api_key as i16)
                        .with_min_version(r.min)
                        .with_max_version(r.max)
                })
                .collect(),
        )
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(feature())
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION)])
        .with_finalized_features_epoch(0)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(feature())
            .with_min_version_level(TRANSACTION_VERSION)
            .with_max_version_level(TRANSACTION_VERSION)])
}

/// For an ApiVersions request newer than we know: UNSUPPORTED_VERSION plus our table.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    response().with_error_code(ResponseError::UnsupportedVersion.code())
}
