//! Message values: `size` bytes of random capital letters (as Kafka's producer-perf-test
//! writes, so compression has something to do), the first 8 holding the send time.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use rand::{Rng, SeedableRng};

pub struct Payloads {
    filler: Bytes,
    size: usize,
}

/// Microseconds since the Unix epoch: comparable between the producing and consuming side of
/// one machine.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Payloads {
    pub fn new(size: usize) -> Payloads {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let filler: Vec<u8> = (0..size.max(8) + 4096)
            .map(|_| rng.random_range(b'A'..=b'Z'))
            .collect();
        Payloads {
            filler: Bytes::from(filler),
            size,
        }
    }

    /// The value of message `n`, stamped with the current time.
    pub fn value(&self, n: u64) -> Bytes {
        let mut out = BytesMut::with_capacity(self.size);
        out.put_u64(now_us());
        // A different window of the filler per message, so batches are not one repeated value.
        let start = (n as usize * 31) % 4096;
        out.put_slice(&self.filler[start..start + self.size - 8]);
        out.freeze()
    }
}

/// The send time carried by a value, if it is one of ours.
pub fn sent_us(value: &[u8]) -> Option<u64> {
    value
        .get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_size_and_carry_the_time() {
        let p = Payloads::new(100);
        let before = now_us();
        let v = p.value(3);
        assert_eq!(v.len(), 100);
        let t = sent_us(&v).unwrap();
        assert!(t >= before && t <= now_us());
        assert!(v[8..].iter().all(|b| b.is_ascii_uppercase()));
    }
}
