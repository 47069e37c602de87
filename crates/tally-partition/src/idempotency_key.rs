//! An idempotency key as the index keeps it. Keys of up to 38 bytes (order numbers, a UUID as
//! bytes or as text) sit inline, with no allocation and no pointer to follow: each record's
//! key used to be its own allocation, and freeing the oldest one when the index is full was a
//! cache miss of its own. Longer keys are shared.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The longest key kept inline: the enum is then 40 bytes, and an index entry (hash, key,
/// offset, time) one 64-byte cache line.
const INLINE: usize = 38;

#[derive(Clone)]
pub enum IdempotencyKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

impl IdempotencyKey {
    pub fn new(key: &[u8]) -> IdempotencyKey {
        if key.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            IdempotencyKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            IdempotencyKey::Shared(Arc::from(key))
        }
    }

    /// The empty key, inline.
    pub const EMPTY: IdempotencyKey = IdempotencyKey::Inline {
        len: 0,
        bytes: [0; INLINE],
    };

    /// Makes this key `key`, writing an inline key's bytes where this value already is.
    /// Why: a key built with [`IdempotencyKey::new`] and then moved into a vector is copied
    /// through the stack, and reading back bytes just copied in pieces of another size waits
    /// for every store queued before them (the key filter's cold table reads among them).
    /// Pushing [`IdempotencyKey::EMPTY`] and setting it in place avoids the round trip.
    pub fn set(&mut self, key: &[u8]) {
        match self {
            IdempotencyKey::Inline { len, bytes } if key.len() <= INLINE => {
                bytes[..key.len()].copy_from_slice(key);
                *len = key.len() as u8;
            }
            _ => *self = IdempotencyKey::new(key),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            IdempotencyKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdempotencyKey::Shared(key) => key,
        }
    }
}

impl From<&[u8]> for IdempotencyKey {
    fn from(key: &[u8]) -> Self {
        IdempotencyKey::new(key)
    }
}

impl Deref for IdempotencyKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for IdempotencyKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Equal and hashed as its bytes, whichever way it is kept (so a set of keys can be asked
/// about a `&[u8]`).
impl PartialEq for IdempotencyKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IdempotencyKey {}

impl Hash for IdempotencyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_inline_and_long_ones_shared_and_both_compare_as_bytes() {
        assert_eq!(std::mem::size_of::<IdempotencyKey>(), 40);
        let short = IdempotencyKey::new(b"order-17");
        assert!(matches!(short, IdempotencyKey::Inline { .. }));
        let long_bytes = [7u8; 39];
        let long = IdempotencyKey::new(&long_bytes);
        assert!(matches!(long, IdempotencyKey::Shared(_)));
        assert_eq!(&*short, b"order-17");
        assert_eq!(&*long, &long_bytes[..]);
        assert_eq!(IdempotencyKey::new(&[]).as_bytes(), b"");
        let edge = [1u8; INLINE];
        assert_eq!(&*IdempotencyKey::new(&edge), &edge[..]);
        // Set in place: inline to inline, inline to shared, shared back to inline.
        let mut k = IdempotencyKey::EMPTY;
        k.set(b"order-17");
        assert_eq!(k, short);
        k.set(&long_bytes);
        assert!(matches!(k, IdempotencyKey::Shared(_)));
        assert_eq!(&*k, &long_bytes[..]);
        k.set(b"o-1");
        assert_eq!(&*k, b"o-1");
        let mut k = IdempotencyKey::new(b"a-much-longer-key-than-the-next");
        k.set(b"short");
        assert_eq!(
            &*k, b"short",
            "a shorter key leaves no bytes of the longer one"
        );
        let set: std::collections::HashSet<IdempotencyKey> = [short.clone(), long].into();
        assert!(set.contains(&b"order-17"[..]));
        assert!(!set.contains(&b"order-1"[..]));
    }
}
