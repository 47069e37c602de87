use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use tally_protocol::{ResponseError, ADVERTISED_APIS};

/// The versions we serve. We accept any client software name (Kafka rejects some).
pub fn response() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
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
}

/// For an ApiVersions request newer than we know: UNSUPPORTED_VERSION plus our table.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    response().with_error_code(ResponseError::UnsupportedVersion.code())
}
