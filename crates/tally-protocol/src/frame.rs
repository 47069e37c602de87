//! Kafka framing: every request and response is a 4-byte big-endian size followed by that many
//! bytes. The request header starts with api key, api version and correlation id in fixed
//! positions, which lets the server answer an unknown API or version without decoding anything.

use thiserror::Error;

/// Why a frame cannot be read. Kafka closes the connection in every one of these cases.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {size} is not positive")]
    NonPositive { size: i32 },
    #[error("frame size {size} is larger than socket.request.max.bytes ({max})")]
    TooLarge { size: i32, max: usize },
}

/// Validates a frame's size prefix against `max_bytes` and returns the body length.
pub fn frame_len(prefix: [u8; 4], max_bytes: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size <= 0 {
        return Err(FrameError::NonPositive { size });
    }
    if size as usize > max_bytes {
        return Err(FrameError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    Ok(size as usize)
}

/// The fixed-position start of every request header (v0, v1 and v2 alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPeek {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPeek {
    /// Reads the first 8 bytes of a request body; `None` if the body is shorter.
    pub fn read(body: &[u8]) -> Option<RequestPeek> {
        if body.len() < 8 {
            return None;
        }
        Some(RequestPeek {
            api_key: i16::from_be_bytes([body[0], body[1]]),
            api_version: i16::from_be_bytes([body[2], body[3]]),
            correlation_id: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_limits() {
        assert_eq!(frame_len(10i32.to_be_bytes(), 100), Ok(10));
        assert_eq!(
            frame_len(0i32.to_be_bytes(), 100),
            Err(FrameError::NonPositive { size: 0 })
        );
        assert_eq!(
            frame_len((-5i32).to_be_bytes(), 100),
            Err(FrameError::NonPositive { size: -5 })
        );
        assert_eq!(
            frame_len(101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );
    }

    #[test]
    fn peek_reads_fixed_fields() {
        let body = [0, 3, 0, 9, 0, 0, 1, 2, 0xff];
        assert_eq!(
            RequestPeek::read(&body),
            Some(RequestPeek {
                api_key: 3,
                api_version: 9,
                correlation_id: 258
            })
        );
        assert_eq!(RequestPeek::read(&body[..7]), None);
    }
}
