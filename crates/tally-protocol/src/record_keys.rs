//! Idempotency keys inside a v2 batch: which record carries which key (the record key, or the
//! value of a named header), and the batch rebuilt without some of its records.
//!
//! A rebuilt batch is what Kafka's log cleaner writes after compaction: the header keeps its
//! base offset, `lastOffsetDelta`, timestamps, producer id, epoch and base sequence, so the
//! offsets and sequence numbers a batch takes do not change; the surviving records keep their
//! bytes (and so their offset deltas), the records section is compressed again with the batch's
//! codec, and the count, length and CRC are written anew. A batch left with no record is an
//! empty, uncompressed batch, as the cleaner keeps one to carry its producer's state.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::ops::Range;

use crate::record_batch::{BatchHeader, RECORD_BATCH_OVERHEAD};
use crate::records::{decompressor, is_xerial_snappy, RecordsError};

const LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const RECORDS_COUNT_AT: usize = 57;
/// The bytes of a batch that `batchLength` counts beyond its records.
const HEADER_AFTER_LENGTH: usize = RECORD_BATCH_OVERHEAD - 12;
const COMPRESSION_MASK: u8 = 0x07;
/// xerial's block size, as Kafka's Java producer writes it.
const XERIAL_BLOCK: usize = 32 * 1024;

/// Where a record's idempotency key is (topic config `idempotency.key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// `key`: the record key.
    RecordKey,
    /// `header:NAME`: the value of the first header named NAME.
    Header(String),
}

impl KeySource {
    /// Parses the config value; `none` is `Ok(None)`.
    pub fn parse(value: &str) -> Result<Option<KeySource>, String> {
        match value {
            "none" => Ok(None),
            "key" => Ok(Some(KeySource::RecordKey)),
            _ => match value.strip_prefix("header:") {
                Some(name) if !name.is_empty() => Ok(Some(KeySource::Header(name.to_string()))),
                _ => Err(format!(
                    "idempotency.key must be none, key or header:NAME, not {value:?}"
                )),
            },
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::RecordKey => f.write_str("key"),
            KeySource::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// One record of a batch: where its bytes are in the (decompressed) records section, its
/// offset delta and timestamp delta, and where its idempotency key is, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpan {
    pub bytes: Range<usize>,
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// `None` when the record has no key (null or empty, or no such header).
    pub key: Option<Range<usize>>,
}

/// The records of one batch, split, with their idempotency keys.
#[derive(Debug, Clone)]
pub struct BatchRecords<'a> {
    data: Cow<'a, [u8]>,
    pub records: Vec<RecordSpan>,
}

impl<'a> BatchRecords<'a> {
    /// Splits the records of `batch` (whole, header included; checked by the caller),
    /// decompressing at most `max_decompressed_bytes`.
    pub fn read(
        header: &BatchHeader,
        batch: &'a [u8],
        max_decompressed_bytes: u64,
        source: &KeySource,
    ) -> Result<BatchRecords<'a>, RecordsError> {
        let body = batch.get(RECORD_BATCH_OVERHEAD..).unwrap_or(&[]);
        let data: Cow<'a, [u8]> = if header.compression() == 0 {
            Cow::Borrowed(body)
        } else {
            let reader = decompressor(header.compression(), body, max_decompressed_bytes)?;
            let mut out = Vec::with_capacity(body.len() * 2);
            reader
                .take(max_decompressed_bytes + 1)
                .read_to_end(&mut out)
                .map_err(|e| RecordsError::Corrupt(format!("decompression failed: {e}")))?;
            if out.len() as u64 > max_decompressed_bytes {
                return Err(RecordsError::TooLarge(max_decompressed_bytes));
            }
            Cow::Owned(out)
        };
        let mut records = Vec::with_capacity(header.records_count.clamp(0, 4096) as usize);
        let mut at = 0;
        while at < data.len() {
            records.push(split_record(&data, &mut at, source)?);
        }
        if records.len() != header.records_count.max(0) as usize {
            return Err(RecordsError::Invalid(format!(
                "the header counts {} records but the batch holds {}",
                header.records_count,
                records.len()
            )));
        }
        Ok(BatchRecords { data, records })
    }

    /// The idempotency key of record `i`.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let range = self.records[i].key.clone()?;
        Some(&self.data[range])
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// `batch` rebuilt with only the records `keep` says yes to (see the module comment).
    pub fn rebuild(
        &self,
        batch: &[u8],
        keep: impl Fn(usize) -> bool,
    ) -> Result<Vec<u8>, RecordsError> {
        let mut kept = Vec::with_capacity(self.data.len());
        let mut count = 0i32;
        for (i, r) in self.records.iter().enumerate() {
            if keep(i) {
                kept.extend_from_slice(&self.data[r.bytes.clone()]);
                count += 1;
            }
        }
        let mut attributes_low = batch[ATTRIBUTES_AT + 1];
        let codec = i16::from(attributes_low & COMPRESSION_MASK);
        let body = if count == 0 {
            attributes_low &= !COMPRESSION_MASK;
            Vec::new()
        } else {
            let old_body = &batch[RECORD_BATCH_OVERHEAD..];
            compress(codec, &kept, is_xerial_snappy(old_body))?
        };
        let mut out = Vec::with_capacity(RECORD_BATCH_OVERHEAD + body.len());
        out.extend_from_slice(&batch[..RECORD_BATCH_OVERHEAD]);
        out[ATTRIBUTES_AT + 1] = attributes_low;
        let length = i32::try_from(HEADER_AFTER_LENGTH + body.len())
            .map_err(|_| RecordsError::TooLarge(i32::MAX as u64))?;
        out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}

/// Compresses a records section as Kafka's producers do for `codec`.
fn compress(codec: i16, data: &[u8], xerial: bool) -> Result<Vec<u8>, RecordsError> {
    let failed = |e: std::io::Error| RecordsError::Corrupt(format!("compression failed: {e}"));
    match codec {
        0 => Ok(data.to_vec()),
        1 => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(data).map_err(failed)?;
            w.finish().map_err(failed)
        }
        2 if xerial => {
            let mut out = Vec::with_capacity(data.len() / 2 + 16);
            out.extend_from_slice(b"\x82SNAPPY\x00");
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK) {
                let block = encoder
                    .compress_vec(chunk)
                    .map_err(|e| failed(std::io::Error::other(e)))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        2 => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| failed(std::io::Error::other(e))),
        3 => {
            // Independent blocks and no content checksum: what Kafka's own LZ4 stream writes
            // and what every client reads.
            let mut w = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(failed)?;
            w.write_all(data).map_err(failed)?;
            let (out, result) = w.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        4 => zstd::bulk::compress(data, 3).map_err(failed),
        other => Err(RecordsError::Invalid(format!(
            "unknown compression codec {other}"
        ))),
    }
}

fn varlong(data: &[u8], at: &mut usize) -> Result<i64, RecordsError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = data.get(*at) else {
            return Err(RecordsError::Corrupt(
                "record data ends inside a varint".into(),
            ));
        };
        *at += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(RecordsError::Corrupt("varint longer than 10 bytes".into()))
}

fn varint(data: &[u8], at: &mut usize) -> Result<i32, RecordsError> {
    let v = varlong(data, at)?;
    i32::try_from(v).map_err(|_| RecordsError::Corrupt(format!("varint {v} does not fit 32 bits")))
}

/// A length-prefixed field: its range, or `None` when null (negative length).
fn field(data: &[u8], at: &mut usize, end: usize) -> Result<Option<Range<usize>>, RecordsError> {
    let len = varint(data, at)?;
    if len < 0 {
        return Ok(None);
    }
    let range = *at..*at + len as usize;
    if range.end > end {
        return Err(RecordsError::Corrupt(
            "a record field runs past its record".into(),
        ));
    }
    *at = range.end;
    Ok(Some(range))
}

fn split_record(
    data: &[u8],
    at: &mut usize,
    source: &KeySource,
) -> Result<RecordSpan, RecordsError> {
    let start = *at;
    let length = varint(data, at)?;
    if length < 0 {
        return Err(RecordsError::Corrupt(format!(
            "negative record length {length}"
        )));
    }
    let end = *at + length as usize;
    if end > data.len() {
        return Err(RecordsError::Corrupt("record data ends early".into()));
    }
    *at += 1; // attributes
    let timestamp_delta = varlong(data, at)?;
    let offset_delta = varint(data, at)?;
    let record_key = field(data, at, end)?;
    field(data, at, end)?; // value
    let headers = varint(data, at)?;
    if headers < 0 {
        return Err(RecordsError::Corrupt(format!(
            "negative header count {headers}"
        )));
    }
    let mut key = match source {
        KeySource::RecordKey => record_key,
        KeySource::Header(_) => None,
    };
    for _ in 0..headers {
        let Some(name) = field(data, at, end)? else {
            return Err(RecordsError::Corrupt("a header key is null".into()));
        };
        let value = field(data, at, end)?;
        if let KeySource::Header(wanted) = source {
            if key.is_none() && &data[name] == wanted.as_bytes() {
                // The first header of that name decides, even when its value is null.
                key = Some(value.unwrap_or(0..0));
            }
        }
    }
    if *at != end {
        return Err(RecordsError::Corrupt(format!(
            "record declares {length} bytes but holds {}",
            *at - (end - length as usize)
        )));
    }
    Ok(RecordSpan {
        bytes: start..end,
        offset_delta,
        timestamp_delta,
        key: key.filter(|k| !k.is_empty()),
    })
}
