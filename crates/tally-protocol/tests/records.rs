//! The record walk over real batches from `kafka-protocol`'s encoder, in every codec.

use std::ops::ControlFlow;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tally_protocol::{validate_records, walk_records, BatchHeader, RecordsError};

fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn records(n: usize, value_len: usize, offsets: impl Fn(usize) -> i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            );
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 1,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: offsets(i),
                sequence: offsets(i) as i32,
                timestamp: 1000 + 10 * i as i64,
                key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![b'x'; value_len])),
                headers,
            }
        })
        .collect()
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn walks_every_codec() {
    for codec in CODECS {
        let batch = encode(&records(50, 30, |i| i as i64), codec);
        let header = BatchHeader::parse_whole(&batch).unwrap();
        assert_eq!(header.compression(), codec as i16);
        validate_records(&header, &batch, 1 << 20).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        let mut seen = Vec::new();
        let n = walk_records(&header, &batch, 1 << 20, |r| {
            seen.push((r.offset_delta, r.timestamp_delta));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(n, 50);
        assert_eq!(seen[7], (7, 70), "{codec:?}");
        // Early stop.
        let n = walk_records(&header, &batch, 1 << 20, |r| {
            if r.timestamp_delta >= 200 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(n, 21);
    }
}

#[test]
fn count_mismatches_and_gaps_are_invalid() {
    for codec in CODECS {
        let mut batch = encode(&records(5, 10, |i| i as i64), codec);
        // Claim more records than there are.
        batch[57..61].copy_from_slice(&9i32.to_be_bytes());
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(
            matches!(
                validate_records(&header, &batch, 1 << 20),
                Err(RecordsError::Invalid(_))
            ),
            "{codec:?}"
        );
        // Claim fewer.
        batch[57..61].copy_from_slice(&3i32.to_be_bytes());
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(
            matches!(
                validate_records(&header, &batch, 1 << 20),
                Err(RecordsError::Invalid(_))
            ),
            "{codec:?}"
        );
        // Offsets with a gap: 0, 1, 3.
        let batch = encode(
            &records(3, 10, |i| if i == 2 { 3 } else { i as i64 }),
            codec,
        );
        let mut header = BatchHeader::parse(&batch).unwrap();
        header.records_count = 3;
        let e = validate_records(&header, &batch, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("offset delta 3"), "{codec:?}: {e}");
    }
}

#[test]
fn decompression_is_capped() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        // 2 MB of zeros compress to very little.
        let batch = encode(&records(2, 1 << 20, |i| i as i64), codec);
        assert!(batch.len() < 200_000, "{codec:?}: {}", batch.len());
        let header = BatchHeader::parse_whole(&batch).unwrap();
        let e = validate_records(&header, &batch, 1 << 20).unwrap_err();
        assert!(
            matches!(e, RecordsError::TooLarge(_) | RecordsError::Corrupt(_)),
            "{codec:?}: {e}"
        );
        assert!(e.to_string().contains("1048576"), "{codec:?}: {e}");
        validate_records(&header, &batch, 4 << 20).unwrap();
    }
}

#[test]
fn garbage_never_panics() {
    for codec in CODECS {
        let batch = encode(&records(4, 20, |i| i as i64), codec);
        let header = BatchHeader::parse(&batch).unwrap();
        for cut in [62, 70, batch.len() / 2, batch.len() - 1] {
            let _ = validate_records(&header, &batch[..cut], 1 << 20);
        }
        let mut flipped = batch.clone();
        for i in (61..flipped.len()).step_by(3) {
            flipped[i] ^= 0x5a;
        }
        let _ = validate_records(&header, &flipped, 1 << 20);
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_record_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), codec in 0i16..5, count in 0i32..50) {
        let mut batch = encode(&records(1, 1, |i| i as i64), Compression::None)[..61].to_vec();
        batch[21..23].copy_from_slice(&codec.to_be_bytes());
        batch.extend_from_slice(&body);
        let mut header = BatchHeader::parse(&batch).unwrap();
        header.records_count = count;
        let _ = validate_records(&header, &batch, 1 << 16);
    }
}

/// A tiny request that claims a huge array must be a decode error, not an allocation of the
/// claimed size (which aborts the process). Guards the patched kafka-protocol (vendor/).
#[test]
fn huge_array_counts_are_decode_errors() {
    use kafka_protocol::messages::{ApiKey, RequestKind};
    for (version, body) in [
        (1i16, vec![0x7f, 0xff, 0xff, 0xff]), // Metadata v1: topics array, int32 count
        (9, vec![0xff, 0xff, 0xff, 0xff, 0x07, 0x00]), // Metadata v9: compact array, uvarint count
    ] {
        let mut bytes = Bytes::from(body);
        assert!(
            RequestKind::decode(ApiKey::Metadata, &mut bytes, version).is_err(),
            "v{version}"
        );
    }
    // Produce v3 with i32::MAX topics.
    let mut body = vec![0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8];
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    let mut bytes = Bytes::from(body);
    assert!(RequestKind::decode(ApiKey::Produce, &mut bytes, 3).is_err());
}
