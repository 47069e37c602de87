//! Sequence numbers are 31-bit counters that wrap from `i32::MAX` back to 0 (Kafka's
//! `DefaultRecordBatch.incrementSequence` / `decrementSequence`).

/// `sequence + increment`, wrapping past `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    debug_assert!(sequence >= 0 && increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// `sequence - decrement`, wrapping below 0 to `i32::MAX`.
pub fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    debug_assert!(sequence >= 0 && decrement >= 0);
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

/// Whether `next` directly follows `last` (Kafka's `ProducerAppendInfo.inSequence`).
pub fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 4), 9);
        assert_eq!(decrement_sequence(0, 1), i32::MAX);
        assert_eq!(decrement_sequence(1, 3), i32::MAX - 1);
        assert_eq!(decrement_sequence(9, 4), 5);
        // Exactly at the edges: up to i32::MAX without wrapping, down to 0 without wrapping
        // (cargo-mutants found these boundaries untested).
        assert_eq!(increment_sequence(i32::MAX - 4, 4), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX - 4, 5), 0);
        assert_eq!(decrement_sequence(4, 4), 0);
        assert_eq!(decrement_sequence(4, 5), i32::MAX);
    }

    #[test]
    fn in_sequence_rules() {
        assert!(in_sequence(-1, 0));
        assert!(in_sequence(4, 5));
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(4, 6));
        assert!(!in_sequence(4, 4));
        assert!(!in_sequence(i32::MAX - 1, 0));
    }

    proptest::proptest! {
        #[test]
        fn increment_then_decrement_is_identity(seq in 0..=i32::MAX, delta in 0..=i32::MAX) {
            proptest::prop_assert_eq!(decrement_sequence(increment_sequence(seq, delta), delta), seq);
        }
    }
}
