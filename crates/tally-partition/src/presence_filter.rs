//! A Bloom filter in front of the key table: "certainly not stored" without touching the
//! table. Most keys a partition is sent are new, and looking a new key up in a table of a
//! million entries is a cache miss per record; ten bits per key (about 1.2 MiB for a million
//! keys) stay in the processor's cache. A "maybe" is answered by the table, so the filter
//! never changes what is stored, only how fast a new key is known to be new.
//!
//! Blocked, one 64-bit word per key: three bits of one word, so a lookup reads one word. A
//! Bloom filter cannot forget, so it is rebuilt from the live keys once forgotten ones are
//! half as many as them, or once the live keys outgrow it.

/// Bits per key the filter is sized for (about 3 % false "maybe" with three bits a word).
const BITS_PER_KEY: usize = 10;
const MIN_WORDS: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) struct PresenceFilter {
    words: Vec<u64>,
    /// Keys added since the last rebuild (live or not).
    added: usize,
}

impl Default for PresenceFilter {
    fn default() -> Self {
        PresenceFilter::with_keys(0)
    }
}

impl PresenceFilter {
    /// An empty filter sized for `keys` keys.
    pub(crate) fn with_keys(keys: usize) -> PresenceFilter {
        let words = (keys * BITS_PER_KEY / 64)
            .max(MIN_WORDS)
            .next_power_of_two();
        PresenceFilter {
            words: vec![0; words],
            added: 0,
        }
    }

    fn word_and_bits(&self, hash: u64) -> (usize, u64) {
        // The table uses the hash's top bits (hashbrown's tag) and its low bits (the bucket);
        // the word comes from the middle, the bits from the bottom.
        let word = (hash >> 24) as usize & (self.words.len() - 1);
        let bits =
            (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63)) | (1u64 << ((hash >> 12) & 63));
        (word, bits)
    }

    pub(crate) fn add(&mut self, hash: u64) {
        let (word, bits) = self.word_and_bits(hash);
        self.words[word] |= bits;
        self.added += 1;
    }

    /// Starts reading the word `hash` is in (see [`crate::prefetch`]).
    pub(crate) fn prefetch(&self, hash: u64) {
        crate::prefetch::prefetch(&self.words[self.word_and_bits(hash).0]);
    }

    /// False: no key with this hash was added since the last rebuild.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let (word, bits) = self.word_and_bits(hash);
        self.words[word] & bits == bits
    }

    /// Whether it should be rebuilt for `live` keys: too many forgotten keys in it, or more
    /// live keys than it was sized for.
    pub(crate) fn needs_rebuild(&self, live: usize) -> bool {
        self.added > 2 * live + 4096 || live * BITS_PER_KEY > self.words.len() * 64 * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn an_added_hash_is_always_maybe_and_most_others_are_not() {
        let hasher = foldhash::fast::RandomState::default();
        let mut f = PresenceFilter::with_keys(10_000);
        for i in 0..10_000u32 {
            f.add(hasher.hash_one(i));
        }
        assert!((0..10_000u32).all(|i| f.may_contain(hasher.hash_one(i))));
        let false_maybe = (10_000..110_000u32)
            .filter(|i| f.may_contain(hasher.hash_one(i)))
            .count();
        assert!(false_maybe < 10_000, "{false_maybe} of 100000");
        assert!(!f.needs_rebuild(10_000));
        assert!(f.needs_rebuild(1_000), "mostly forgotten keys");
    }
}
