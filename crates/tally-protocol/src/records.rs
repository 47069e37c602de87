//! Walks the records inside a v2 batch without building them: each record's offset delta and
//! timestamp delta, read from the varint framing, with key, value and header bytes skipped.
//! Compressed batches are decompressed as a stream, so memory stays constant however many
//! records a batch claims, and the decompressed size is capped (a compression bomb is an
//! error, not an out-of-memory abort).
//!
//! The broker uses it to check what Kafka's LogValidator checks (the records are whole, their
//! offset deltas are 0, 1, 2, ... and their number is the header's count) and to find the first
//! record at or after a timestamp for ListOffsets.

use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;

use thiserror::Error;

use crate::record_batch::{BatchHeader, RECORD_BATCH_OVERHEAD};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordsError {
    /// The bytes do not parse as records (Kafka: CorruptRecordException).
    #[error("corrupt records: {0}")]
    Corrupt(String),
    /// The records parse but contradict the header (Kafka: InvalidRecordException).
    #[error("invalid records: {0}")]
    Invalid(String),
    #[error("records decompress to more than {0} bytes")]
    TooLarge(u64),
}

/// What the walk reports of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
}

/// Calls `f` for each record of `batch` (one whole batch, header included) until it breaks,
/// reading at most `max_decompressed_bytes` of record data. Returns the records visited.
pub fn walk_records(
    header: &BatchHeader,
    batch: &[u8],
    max_decompressed_bytes: u64,
    f: impl FnMut(RecordInfo) -> ControlFlow<()>,
) -> Result<u32, RecordsError> {
    let body = &batch[RECORD_BATCH_OVERHEAD.min(batch.len())..];
    if header.compression() == 0 {
        // Uncompressed (the common case): walk the bytes in place, with no reader, buffer or
        // allocation per batch.
        return walk(header, &mut Slice { buf: body, at: 0 }, f);
    }
    let raw = decompressor(header.compression(), body, max_decompressed_bytes)?;
    let mut reader = Budget {
        inner: BufReader::with_capacity(16 * 1024, raw),
        left: max_decompressed_bytes,
        cap: max_decompressed_bytes,
    };
    walk(header, &mut reader, f)
}

/// A reader of the records section `body` compressed with `codec` (1-4; 0 is not compressed
/// and has no reader). Unbounded: callers cap what they read.
pub(crate) fn decompressor<'a>(
    codec: i16,
    body: &'a [u8],
    max_decompressed_bytes: u64,
) -> Result<Box<dyn Read + 'a>, RecordsError> {
    Ok(match codec {
        1 => Box::new(flate2::read::MultiGzDecoder::new(body)),
        2 => Box::new(SnappyReader::new(body, max_decompressed_bytes)),
        3 => Box::new(
            lz4::Decoder::new(body).map_err(|e| RecordsError::Corrupt(format!("lz4: {e}")))?,
        ),
        4 => Box::new(
            zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| RecordsError::Corrupt(format!("zstd: {e}")))?,
        ),
        other => {
            return Err(RecordsError::Invalid(format!(
                "unknown compression codec {other}"
            )))
        }
    })
}

/// Whether snappy data uses the xerial framing (what Kafka's Java producer writes) rather than
/// one raw block.
pub(crate) fn is_xerial_snappy(body: &[u8]) -> bool {
    body.starts_with(XERIAL_MAGIC)
}

fn walk<S: Source>(
    header: &BatchHeader,
    source: &mut S,
    mut f: impl FnMut(RecordInfo) -> ControlFlow<()>,
) -> Result<u32, RecordsError> {
    let mut visited = 0u32;
    for _ in 0..header.records_count.max(0) {
        let Some(info) = read_record(source)? else {
            return Err(RecordsError::Invalid(format!(
                "the header counts {} records but the batch holds {visited}",
                header.records_count
            )));
        };
        visited += 1;
        if f(info).is_break() {
            return Ok(visited);
        }
    }
    if source.has_more()? {
        return Err(RecordsError::Invalid(format!(
            "the batch holds more data than its {} records",
            header.records_count
        )));
    }
    Ok(visited)
}

/// Kafka's checks on the records of a produced batch: whole records, offset deltas 0..count.
pub fn validate_records(
    header: &BatchHeader,
    batch: &[u8],
    max_decompressed_bytes: u64,
) -> Result<(), RecordsError> {
    let mut expected = 0i32;
    let mut bad = None;
    walk_records(header, batch, max_decompressed_bytes, |r| {
        if r.offset_delta != expected {
            bad = Some((expected, r.offset_delta));
            return ControlFlow::Break(());
        }
        expected += 1;
        ControlFlow::Continue(())
    })?;
    if let Some((want, got)) = bad {
        return Err(RecordsError::Invalid(format!(
            "record offset delta {got} where {want} was expected"
        )));
    }
    Ok(())
}

/// Where record bytes come from: a decompressing reader, or the batch's own bytes.
trait Source {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError>;
    fn skip(&mut self, n: u64) -> Result<(), RecordsError>;
    fn has_more(&mut self) -> Result<bool, RecordsError>;
    /// Bytes consumed so far.
    fn position(&self) -> u64;

    /// A zig-zag varlong of at most 10 bytes.
    fn varlong(&mut self) -> Result<i64, RecordsError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(b) = self.byte()? else {
                return Err(RecordsError::Corrupt(
                    "record data ends inside a varint".into(),
                ));
            };
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(RecordsError::Corrupt("varint longer than 10 bytes".into()))
    }

    fn varint(&mut self) -> Result<i32, RecordsError> {
        let v = self.varlong()?;
        i32::try_from(v)
            .map_err(|_| RecordsError::Corrupt(format!("varint {v} does not fit 32 bits")))
    }
}

/// The records of an uncompressed batch, read in place.
struct Slice<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Source for Slice<'_> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        let b = self.buf.get(self.at).copied();
        self.at += usize::from(b.is_some());
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<(), RecordsError> {
        let left = (self.buf.len() - self.at) as u64;
        if n > left {
            return Err(RecordsError::Corrupt("record data ends early".into()));
        }
        self.at += n as usize;
        Ok(())
    }

    fn has_more(&mut self) -> Result<bool, RecordsError> {
        Ok(self.at < self.buf.len())
    }

    fn position(&self) -> u64 {
        self.at as u64
    }
}

/// A reader that fails once more than `cap` bytes have been read.
struct Budget<R> {
    inner: BufReader<R>,
    left: u64,
    cap: u64,
}

impl<R: Read> Budget<R> {
    fn spend(&mut self, n: u64) -> Result<(), RecordsError> {
        if n > self.left {
            return Err(RecordsError::TooLarge(self.cap));
        }
        self.left -= n;
        Ok(())
    }
}

impl<R: Read> Source for Budget<R> {
    fn byte(&mut self) -> Result<Option<u8>, RecordsError> {
        let buf = self.inner.fill_buf().map_err(corrupt)?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.spend(1)?;
        self.inner.consume(1);
        Ok(Some(b))
    }

    fn skip(&mut self, mut n: u64) -> Result<(), RecordsError> {
        self.spend(n)?;
        while n > 0 {
            let buf = self.inner.fill_buf().map_err(corrupt)?;
            if buf.is_empty() {
                return Err(RecordsError::Corrupt("record data ends early".into()));
            }
            let k = (buf.len() as u64).min(n) as usize;
            self.inner.consume(k);
            n -= k as u64;
        }
        Ok(())
    }

    fn has_more(&mut self) -> Result<bool, RecordsError> {
        Ok(!self.inner.fill_buf().map_err(corrupt)?.is_empty())
    }

    fn position(&self) -> u64 {
        self.cap - self.left
    }
}

fn corrupt(e: io::Error) -> RecordsError {
    RecordsError::Corrupt(format!("decompression failed: {e}"))
}

/// One record: `None` at a clean end of data.
fn read_record<S: Source>(r: &mut S) -> Result<Option<RecordInfo>, RecordsError> {
    if !r.has_more()? {
        return Ok(None);
    }
    let length = r.varint()?;
    if length < 0 {
        return Err(RecordsError::Corrupt(format!(
            "negative record length {length}"
        )));
    }
    let before = r.position();
    r.skip(1)?; // attributes
    let timestamp_delta = r.varlong()?;
    let offset_delta = r.varint()?;
    let key = r.varint()?;
    if key > 0 {
        r.skip(key as u64)?;
    }
    let value = r.varint()?;
    if value > 0 {
        r.skip(value as u64)?;
    }
    let headers = r.varint()?;
    if headers < 0 {
        return Err(RecordsError::Corrupt(format!(
            "negative header count {headers}"
        )));
    }
    for _ in 0..headers {
        let key = r.varint()?;
        if key < 0 {
            return Err(RecordsError::Corrupt("a header key is null".into()));
        }
        r.skip(key as u64)?;
        let value = r.varint()?;
        if value > 0 {
            r.skip(value as u64)?;
        }
    }
    let read = r.position() - before;
    if read != length as u64 {
        return Err(RecordsError::Corrupt(format!(
            "record declares {length} bytes but holds {read}"
        )));
    }
    Ok(Some(RecordInfo {
        offset_delta,
        timestamp_delta,
    }))
}

/// Kafka's snappy framing (xerial: magic, two versions, then length-prefixed raw blocks), or a
/// single raw snappy block when the magic is absent, decompressed block by block.
struct SnappyReader<'a> {
    input: &'a [u8],
    /// No single block may decompress to more than the caller's whole budget.
    max_block: u64,
    block: Vec<u8>,
    at: usize,
    framed: bool,
    failed: Option<String>,
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], max_block: u64) -> Self {
        let framed = input.starts_with(XERIAL_MAGIC);
        SnappyReader {
            input: if framed {
                input.get(16..).unwrap_or(&[])
            } else {
                input
            },
            max_block,
            block: Vec::new(),
            at: 0,
            framed,
            failed: None,
        }
    }

    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let raw = if self.framed {
            if self.input.len() < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated snappy block length",
                ));
            }
            let len = u32::from_be_bytes(self.input[..4].try_into().expect("4 bytes")) as usize;
            let block = self.input.get(4..4 + len).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "truncated snappy block")
            })?;
            self.input = &self.input[4 + len..];
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let mut decoder = snap::raw::Decoder::new();
        // The block declares its size up front: refuse it before allocating if it alone is
        // over the budget.
        let len = snap::raw::decompress_len(raw)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if len as u64 > self.max_block {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snappy block of {len} bytes exceeds the {} byte budget",
                    self.max_block
                ),
            ));
        }
        self.block.resize(len, 0);
        decoder
            .decompress(raw, &mut self.block)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        while self.at == self.block.len() {
            match self.next_block() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    self.failed = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
