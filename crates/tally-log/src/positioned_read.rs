//! Reads of a segment file at a position into memory the caller owns, which need not be
//! initialised: a fetch or a replica reads megabytes, and zeroing a buffer first cost as much
//! as copying the bytes out of the page cache.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use crate::segment::ReadMode;

pub(crate) enum ReadFailure {
    /// `ReadMode::NoWait` and the bytes are not all in the page cache (or the file system
    /// cannot tell): read again where blocking is allowed.
    WouldBlock,
    Io(io::Error),
}

/// Writes `len` bytes of `file` from `position` to `ptr`, or fails. With `ReadMode::NoWait`
/// the kernel is asked not to wait for the disk (`RWF_NOWAIT`).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub(crate) unsafe fn read_into(
    file: &File,
    ptr: *mut u8,
    len: usize,
    position: u64,
    mode: ReadMode,
) -> Result<(), ReadFailure> {
    let flags = match mode {
        ReadMode::Block => 0,
        ReadMode::NoWait => libc::RWF_NOWAIT,
    };
    let mut done = 0usize;
    while done < len {
        let iov = libc::iovec {
            // SAFETY: `done < len`, inside the caller's buffer.
            iov_base: unsafe { ptr.add(done) }.cast(),
            iov_len: len - done,
        };
        // SAFETY: one iovec over the caller's writable memory, a descriptor `file` keeps open.
        let n = unsafe {
            libc::preadv2(
                file.as_raw_fd(),
                &iov,
                1,
                (position + done as u64) as libc::off_t,
                flags,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                    if mode == ReadMode::NoWait =>
                {
                    Err(ReadFailure::WouldBlock)
                }
                _ => Err(ReadFailure::Io(e)),
            };
        }
        if n == 0 {
            return Err(ReadFailure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        done += n as usize;
    }
    Ok(())
}
