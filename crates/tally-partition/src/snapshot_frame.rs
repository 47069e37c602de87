//! The framing both of a partition's snapshot files share (producer state `.snapshot`,
//! idempotency keys `.keys`): magic (4 bytes), version u16, CRC-32C u32 of the body, the body;
//! big-endian throughout. And the reader their bodies are parsed with, which answers `None`
//! past the end instead of panicking, so a truncated file is refused, never a crash.

/// `magic`, `version`, the body's CRC, then the body.
pub(crate) fn frame(magic: &[u8; 4], version: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 10);
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// The body of a framed file, or why it is not one of `magic` at `version`.
pub(crate) fn unframe<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    version: u16,
) -> Result<&'a [u8], String> {
    if bytes.len() < 10 || &bytes[0..4] != magic {
        return Err("bad magic".into());
    }
    let found = u16::from_be_bytes([bytes[4], bytes[5]]);
    if found != version {
        return Err(format!("unknown version {found}"));
    }
    let crc = u32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes"));
    let body = &bytes[10..];
    if crc32c::crc32c(body) != crc {
        return Err("CRC mismatch".into());
    }
    Ok(body)
}

/// Big-endian fields read from the front of a body.
pub(crate) struct BodyReader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        BodyReader { buf, at: 0 }
    }

    /// Whether every byte was read (a body with trailing bytes is not the one written).
    pub(crate) fn is_done(&self) -> bool {
        self.at == self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}
