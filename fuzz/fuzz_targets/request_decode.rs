//! Any bytes, read as a request frame body: header peek, header decode, body decode at the
//! header's version. Must return errors, never panic or abort.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use tally_protocol::RequestPeek;

fuzz_target!(|data: &[u8]| {
    let Some(peek) = RequestPeek::read(data) else { return };
    let Ok(api_key) = ApiKey::try_from(peek.api_key) else { return };
    let valid = api_key.valid_versions();
    if peek.api_version < valid.min || peek.api_version > valid.max {
        return;
    }
    let mut buf = Bytes::copy_from_slice(data);
    if RequestHeader::decode(&mut buf, api_key.request_header_version(peek.api_version)).is_ok() {
        let _ = RequestKind::decode(api_key, &mut buf, peek.api_version);
    }
});
