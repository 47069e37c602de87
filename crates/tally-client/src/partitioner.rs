//! Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`,
//! with the murmur2 variant of Kafka's `Utils.murmur2` (seed 0x9747b28c).

/// Kafka's 32-bit murmur2 hash.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
    }

    /// Where Kafka's default partitioner puts these keys: toPositive(murmur2) % n, computed
    /// from the hashes above.
    #[test]
    fn keys_land_where_kafka_puts_them() {
        let positive = |h: i32| (h & 0x7fff_ffff) % 7;
        assert_eq!(partition_for_key(b"foobar", 7), positive(-790332482));
        assert_eq!(
            partition_for_key(b"21", 7),
            (-973932308i32 & 0x7fff_ffff) % 7
        );
        assert_eq!(partition_for_key(b"21", 7), 3);
        assert_eq!(partition_for_key(b"foobar", 7), 0);
        assert_eq!(partition_for_key(b"abc", 3), 479470107 % 3);
        assert_eq!(partition_for_key(b"abc", 3), 0);
        assert_eq!(partition_for_key(b"a-little-bit-long-string", 12), 8);
        for key in [&b"x"[..], b"", b"user-42"] {
            assert!((0..5).contains(&partition_for_key(key, 5)));
        }
    }
}
