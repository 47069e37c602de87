//! Idempotency keys found in real batches from `kafka-protocol`'s encoder, and batches rebuilt
//! without some records, in every codec, read back by `kafka-protocol`'s decoder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use tally_protocol::{BatchHeader, BatchRecords, KeySource};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn record(i: usize, key: Option<&str>, header: Option<&str>) -> Record {
    let mut headers = IndexMap::new();
    headers.insert(StrBytes::from_static_str("other"), Some(Bytes::from("x")));
    if let Some(h) = header {
        headers.insert(
            StrBytes::from_static_str("id"),
            Some(Bytes::from(h.to_string())),
        );
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: 7,
        producer_epoch: 2,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence: 40 + i as i32,
        timestamp: 1_000 + i as i64,
        key: key.map(|k| Bytes::from(k.to_string())),
        value: Some(Bytes::from(format!("value-{i}-{}", "v".repeat(i * 50)))),
        headers,
    }
}

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

fn five(compression: Compression) -> Vec<u8> {
    let keys = [Some("a"), None, Some("b"), Some(""), Some("c")];
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| record(i, *k, k.map(|k| format!("h-{k}")).as_deref()))
        .collect();
    encode(&records, compression)
}

#[test]
fn keys_come_from_the_record_key_or_a_named_header() {
    for codec in CODECS {
        let batch = five(codec);
        let header = BatchHeader::parse_whole(&batch).unwrap();
        let by_key = BatchRecords::read(&header, &batch, 1 << 20, &KeySource::RecordKey).unwrap();
        let keys: Vec<Option<&[u8]>> = (0..by_key.len()).map(|i| by_key.key(i)).collect();
        // A null key and an empty key are no key.
        assert_eq!(
            keys,
            [Some(&b"a"[..]), None, Some(b"b"), None, Some(b"c")],
            "{codec:?}"
        );
        let by_header =
            BatchRecords::read(&header, &batch, 1 << 20, &KeySource::Header("id".into())).unwrap();
        let keys: Vec<Option<&[u8]>> = (0..by_header.len()).map(|i| by_header.key(i)).collect();
        assert_eq!(
            keys,
            [
                Some(&b"h-a"[..]),
                None,
                Some(b"h-b"),
                Some(b"h-"),
                Some(b"h-c")
            ],
            "{codec:?}"
        );
        let offsets: Vec<i32> = by_key.records.iter().map(|r| r.offset_delta).collect();
        assert_eq!(offsets, [0, 1, 2, 3, 4]);
    }
}

#[test]
fn a_rebuilt_batch_keeps_its_header_offsets_and_codec_in_every_codec() {
    for codec in CODECS {
        let batch = five(codec);
        let header = BatchHeader::parse_whole(&batch).unwrap();
        let split = BatchRecords::read(&header, &batch, 1 << 20, &KeySource::RecordKey).unwrap();
        let rebuilt = split.rebuild(&batch, |i| i % 2 == 0).unwrap();
        let new = BatchHeader::parse_whole(&rebuilt).unwrap();
        new.verify_crc(&rebuilt).unwrap();
        assert_eq!(new.records_count, 3, "{codec:?}");
        assert_eq!(new.size_in_bytes(), rebuilt.len());
        assert_eq!(new.compression(), header.compression(), "{codec:?}");
        for (a, b) in [
            (
                new.last_offset_delta as i64,
                header.last_offset_delta as i64,
            ),
            (new.base_sequence as i64, header.base_sequence as i64),
            (new.producer_id, header.producer_id),
            (new.producer_epoch as i64, header.producer_epoch as i64),
            (new.base_timestamp, header.base_timestamp),
            (new.max_timestamp, header.max_timestamp),
            (new.attributes as i64, header.attributes as i64),
        ] {
            assert_eq!(a, b, "{codec:?}");
        }
        let mut buf = Bytes::from(rebuilt.clone());
        let decoded = RecordBatchDecoder::decode(&mut buf).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 2, 4], "{codec:?}");
        for r in &decoded.records {
            let i = r.offset as usize;
            assert_eq!(r.value.as_deref(), record(i, None, None).value.as_deref());
            assert_eq!(r.sequence, 40 + i as i32);
            assert_eq!(r.timestamp, 1_000 + i as i64);
            assert_eq!(r.headers.len(), if i == 1 { 1 } else { 2 });
        }
        // Rebuilding again changes nothing: the kept records split the same way.
        let again = BatchRecords::read(&new, &rebuilt, 1 << 20, &KeySource::RecordKey).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(again.key(1), Some(&b"b"[..]));
    }
}

#[test]
fn snappy_keeps_its_framing() {
    let batch = five(Compression::Snappy);
    let header = BatchHeader::parse_whole(&batch).unwrap();
    let split = BatchRecords::read(&header, &batch, 1 << 20, &KeySource::RecordKey).unwrap();
    let rebuilt = split.rebuild(&batch, |i| i != 0).unwrap();
    let framed = |b: &[u8]| b[61..].starts_with(b"\x82SNAPPY\x00");
    assert_eq!(framed(&rebuilt), framed(&batch));
}

#[test]
fn a_batch_left_with_no_record_is_empty_and_uncompressed() {
    for codec in CODECS {
        let batch = five(codec);
        let header = BatchHeader::parse_whole(&batch).unwrap();
        let split = BatchRecords::read(&header, &batch, 1 << 20, &KeySource::RecordKey).unwrap();
        let rebuilt = split.rebuild(&batch, |_| false).unwrap();
        let new = BatchHeader::parse_whole(&rebuilt).unwrap();
        new.verify_crc(&rebuilt).unwrap();
        assert_eq!(rebuilt.len(), 61);
        assert_eq!(new.records_count, 0);
        assert_eq!(new.compression(), 0);
        assert_eq!(new.last_offset_delta, 4);
        assert_eq!(new.base_sequence, header.base_sequence);
        let mut buf = Bytes::from(rebuilt);
        assert!(RecordBatchDecoder::decode(&mut buf)
            .unwrap()
            .records
            .is_empty());
    }
}

#[test]
fn the_decompressed_size_is_bounded() {
    let batch = five(Compression::Gzip);
    let header = BatchHeader::parse_whole(&batch).unwrap();
    assert!(BatchRecords::read(&header, &batch, 64, &KeySource::RecordKey).is_err());
}

#[test]
fn key_source_parses_the_config_values() {
    assert_eq!(KeySource::parse("none"), Ok(None));
    assert_eq!(KeySource::parse("key"), Ok(Some(KeySource::RecordKey)));
    assert_eq!(
        KeySource::parse("header:order-id"),
        Ok(Some(KeySource::Header("order-id".into())))
    );
    assert!(KeySource::parse("header:").is_err());
    assert!(KeySource::parse("value").is_err());
    assert_eq!(KeySource::Header("x".into()).to_string(), "header:x");
}

proptest! {
    /// Whatever follows a batch header, splitting answers an error or records, never panics.
    #[test]
    fn malformed_records_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        codec in 0u8..5,
        count in 0i32..5,
    ) {
        let mut batch = five(Compression::None)[..61].to_vec();
        batch[22] = codec;
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&tail);
        let len = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&len.to_be_bytes());
        let header = BatchHeader::parse(&batch).unwrap();
        for source in [KeySource::RecordKey, KeySource::Header("id".into())] {
            if let Ok(split) = BatchRecords::read(&header, &batch, 1 << 16, &source) {
                let _ = split.rebuild(&batch, |i| i % 2 == 1);
            }
        }
    }
}
