//! Produce v0-v2 are advertised (old librdkafka looks for v0) but, as in Kafka 4, refused.
//! `kafka-protocol` has no codec for these versions, so the request is read and the answer
//! written here, by hand.

use crate::ResponseError;

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A nullable string or bytes with an i16 (`wide` = false) or i32 length.
    fn sized(&mut self, wide: bool) -> Option<Option<&'a [u8]>> {
        let len = if wide {
            self.i32()?
        } else {
            i32::from(self.i16()?)
        };
        if len < 0 {
            return Some(None);
        }
        self.take(len as usize).map(Some)
    }
}

/// The answer to a Produce v0-v2 request (`frame`: the request after its size prefix): every
/// partition gets UNSUPPORTED_VERSION. `None`: malformed. `Some(None)`: acks=0, no answer.
/// `Some(Some(body))`: the response body (after the correlation id).
pub fn unsupported_answer(frame: &[u8], version: i16) -> Option<Option<Vec<u8>>> {
    let mut c = Cursor { buf: frame, at: 8 };
    c.sized(false)?; // client id
    let acks = c.i16()?;
    c.i32()?; // timeout
    let topics = c.i32()?;
    if !(0..=100_000).contains(&topics) {
        return None;
    }
    let mut body = Vec::new();
    body.extend_from_slice(&topics.to_be_bytes());
    for _ in 0..topics {
        let name = c.sized(false)??;
        body.extend_from_slice(&(name.len() as i16).to_be_bytes());
        body.extend_from_slice(name);
        let partitions = c.i32()?;
        if !(0..=1_000_000).contains(&partitions) {
            return None;
        }
        body.extend_from_slice(&partitions.to_be_bytes());
        for _ in 0..partitions {
            let index = c.i32()?;
            c.sized(true)?;
            body.extend_from_slice(&index.to_be_bytes());
            body.extend_from_slice(&ResponseError::UnsupportedVersion.code().to_be_bytes());
            body.extend_from_slice(&(-1i64).to_be_bytes());
            if version >= 2 {
                body.extend_from_slice(&(-1i64).to_be_bytes());
            }
        }
    }
    if version >= 1 {
        body.extend_from_slice(&0i32.to_be_bytes());
    }
    Some((acks != 0).then_some(body))
}
