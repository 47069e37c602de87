//! A hint to the processor that memory is about to be read, so that the misses of the key
//! index's random and far-apart reads overlap instead of waiting one after another.

/// Asks for the cache line of `value`. Does nothing on targets without the instruction.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault; the address comes
    // from a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            value as *const T as *const i8,
            std::arch::x86_64::_MM_HINT_T0,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
