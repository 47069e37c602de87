//! The `request_decode` fuzz target, run by the test suite (proptest): any bytes as a request
//! frame body, for every API and version the broker advertises, go through the header peek,
//! the header decode and the body decode (kafka-protocol with Tally's bounded allocations)
//! and come out as a value or an error, never a panic or an allocation the frame cannot back.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tally_protocol::{RequestPeek, ADVERTISED_APIS};

fn decode(body: &[u8]) {
    let Some(peek) = RequestPeek::read(body) else {
        return;
    };
    let Ok(api_key) = ApiKey::try_from(peek.api_key) else {
        return;
    };
    let valid = api_key.valid_versions();
    if peek.api_version < valid.min || peek.api_version > valid.max {
        return;
    }
    let mut buf = Bytes::copy_from_slice(body);
    if RequestHeader::decode(&mut buf, api_key.request_header_version(peek.api_version)).is_ok() {
        let _ = RequestKind::decode(api_key, &mut buf, peek.api_version);
    }
}

/// A body that starts with a real api key and version, and a short client id, so most cases
/// reach the body decoder.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (
        0..ADVERTISED_APIS.len(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(i, v, rest)| {
            let range = ADVERTISED_APIS[i];
            let span = (range.max - range.min + 1) as u8;
            let version = range.min + i16::from(v % span);
            let mut body = Vec::with_capacity(rest.len() + 12);
            body.extend_from_slice(&(range.api_key as i16).to_be_bytes());
            body.extend_from_slice(&version.to_be_bytes());
            body.extend_from_slice(&7i32.to_be_bytes());
            body.extend_from_slice(&1i16.to_be_bytes());
            body.push(b'c');
            body.extend_from_slice(&rest);
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_frame_body_decodes_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode(&body);
    }

    #[test]
    fn any_body_of_an_advertised_request_decodes_or_is_refused(body in framed()) {
        decode(&body);
    }
}
