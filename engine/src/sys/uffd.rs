//! The userfaultfd requests behind the copy-on-write snapshot of `dump --leave-running`
//! (`memory/snapshot.rs`): one typed function per ioctl (nix has no userfaultfd; read and
//! poll of it go through nix) on a userfaultfd that the target made
//! (an injected `userfaultfd(2)`) and crust borrowed with `pidfd_getfd`, so every request
//! here acts on the target's memory, not crust's. Messages read from it are parsed by the
//! pure [`parse_message`].
//!
//! Guarantees of the unsafe code here: every pointer handed to the kernel points at a
//! live local `#[repr(C)]` struct or buffer of the size the request's number encodes,
//! exclusively borrowed for the call; nothing the kernel writes outlives the call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crust_arch::{Abi, HostArch};

/// `UFFD_API`: the only API version.
const UFFD_API: u64 = 0xAA;
/// The ioctl type of every userfaultfd request.
const UFFDIO: u8 = 0xAA;
const UFFDIO_REGISTER_NR: u8 = 0x00;
const UFFDIO_WRITEPROTECT_NR: u8 = 0x06;
const UFFDIO_API_NR: u8 = 0x3F;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
const UFFDIO_COPY_NR: u8 = 0x03;
const UFFDIO_ZEROPAGE_NR: u8 = 0x04;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

/// `UFFD_FEATURE_EVENT_FORK`: a fork of the process is reported, with a userfaultfd
/// for the child (lazy restore).
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
/// `UFFD_FEATURE_EVENT_REMAP`: mremap of a registered area is reported.
pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
/// `UFFD_FEATURE_EVENT_REMOVE`: madvise(DONTNEED/FREE/REMOVE) is reported before it zaps.
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
/// `UFFD_FEATURE_EVENT_UNMAP`: munmap (and mmap over, brk shrink) is reported.
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// `UFFD_USER_MODE_ONLY`, a flag of `userfaultfd(2)` (Linux 5.11): faults the kernel
/// takes on the process's behalf are not reported; such a userfaultfd needs no privilege.
pub const USER_MODE_ONLY: u64 = 1;

/// Size of one `struct uffd_msg`.
pub const MESSAGE_SIZE: usize = 32;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}

fn request(nr: u8, size: usize) -> libc::c_ulong {
    HostArch::ioctl_read_write(UFFDIO, nr, size as u16) as libc::c_ulong
}

/// `ioctl(uffd, UFFDIO_API, {UFFD_API, features})`: enables `features` (all of them or
/// the call fails); the features the kernel has.
#[doc(alias = "UFFDIO_API")]
pub fn enable_api(uffd: BorrowedFd, features: u64) -> io::Result<u64> {
    let mut api = UffdioApi { api: UFFD_API, features, ioctls: 0 };
    // SAFETY: `api` is a live uffdio_api, the size the request encodes.
    let rc = unsafe { libc::ioctl(uffd.as_raw_fd(), request(UFFDIO_API_NR, size_of::<UffdioApi>()), &mut api) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(api.features)
}

/// `ioctl(uffd, UFFDIO_REGISTER, {start, len, UFFDIO_REGISTER_MODE_WP})`: write faults
/// in the range go to the userfaultfd once its pages are write-protected; whether
/// UFFDIO_WRITEPROTECT works on it (the kernel's answer in `ioctls`).
#[doc(alias = "UFFDIO_REGISTER")]
pub fn register_write_protect(uffd: BorrowedFd, start: u64, len: u64) -> io::Result<bool> {
    let mut register = UffdioRegister { range: UffdioRange { start, len }, mode: UFFDIO_REGISTER_MODE_WP, ioctls: 0 };
    // SAFETY: `register` is a live uffdio_register, the size the request encodes.
    let rc = unsafe {
        libc::ioctl(uffd.as_raw_fd(), request(UFFDIO_REGISTER_NR, size_of::<UffdioRegister>()), &mut register)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(register.ioctls & (1 << UFFDIO_WRITEPROTECT_NR) != 0)
}

/// `ioctl(uffd, UFFDIO_WRITEPROTECT, {start, len, mode})`: write-protects the pages in
/// the range (`protect`), or lifts the protection and wakes the threads waiting on a
/// write fault in it. EAGAIN while a reported munmap, mremap or madvise is not read yet.
#[doc(alias = "UFFDIO_WRITEPROTECT")]
pub fn write_protect(uffd: BorrowedFd, start: u64, len: u64, protect: bool) -> io::Result<()> {
    let mode = if protect { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 };
    let mut wp = UffdioWriteprotect { range: UffdioRange { start, len }, mode };
    // SAFETY: `wp` is a live uffdio_writeprotect, the size the request encodes.
    let rc = unsafe {
        libc::ioctl(uffd.as_raw_fd(), request(UFFDIO_WRITEPROTECT_NR, size_of::<UffdioWriteprotect>()), &mut wp)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(uffd, UFFDIO_REGISTER, {start, len, UFFDIO_REGISTER_MODE_MISSING})`: faults on
/// pages of the range that are not there go to the userfaultfd (lazy restore).
#[doc(alias = "UFFDIO_REGISTER")]
pub fn register_missing(uffd: BorrowedFd, start: u64, len: u64) -> io::Result<()> {
    let mut register = UffdioRegister { range: UffdioRange { start, len }, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
    // SAFETY: `register` is a live uffdio_register, the size the request encodes.
    let rc = unsafe {
        libc::ioctl(uffd.as_raw_fd(), request(UFFDIO_REGISTER_NR, size_of::<UffdioRegister>()), &mut register)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(uffd, UFFDIO_COPY, {dst, bytes, len})`: puts `bytes` at `dst` of the
/// userfaultfd's process (pages that were missing) and wakes the threads waiting
/// there. The bytes copied: less than asked when it stopped at a page already there
/// (EEXIST after none) or at a pending event (EAGAIN after none).
#[doc(alias = "UFFDIO_COPY")]
pub fn copy_pages(uffd: BorrowedFd, dst: u64, bytes: &[u8]) -> io::Result<u64> {
    let mut copy = UffdioCopy { dst, src: bytes.as_ptr() as u64, len: bytes.len() as u64, mode: 0, copy: 0 };
    // SAFETY: `copy` is a live uffdio_copy, the size the request encodes; `src` points at
    // `bytes`, `len` long, which the kernel only reads during the call.
    let rc = unsafe { libc::ioctl(uffd.as_raw_fd(), request(UFFDIO_COPY_NR, size_of::<UffdioCopy>()), &mut copy) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        return if copy.copy > 0 { Ok(copy.copy as u64) } else { Err(error) };
    }
    Ok(copy.copy.max(0) as u64)
}

/// `ioctl(uffd, UFFDIO_ZEROPAGE, {start, len})`: maps zero pages where pages were
/// missing and wakes the threads waiting there; the bytes done.
#[doc(alias = "UFFDIO_ZEROPAGE")]
pub fn zero_pages(uffd: BorrowedFd, start: u64, len: u64) -> io::Result<u64> {
    let mut zero = UffdioZeropage { range: UffdioRange { start, len }, mode: 0, zeropage: 0 };
    // SAFETY: `zero` is a live uffdio_zeropage, the size the request encodes.
    let rc = unsafe { libc::ioctl(uffd.as_raw_fd(), request(UFFDIO_ZEROPAGE_NR, size_of::<UffdioZeropage>()), &mut zero) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        return if zero.zeropage > 0 { Ok(zero.zeropage as u64) } else { Err(error) };
    }
    Ok(zero.zeropage.max(0) as u64)
}

/// `read(uffd, buf)` on a non-blocking userfaultfd: bytes of whole messages read, 0
/// when none is waiting.
#[doc(alias = "read")]
pub fn read_messages(uffd: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(uffd, buf) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Ok(0),
            Err(error) => return Err(error.into()),
        }
    }
}

/// `poll(fds, POLLIN, timeout_ms)`: which of `fds` are readable (or hung up); a
/// negative timeout waits for ever.
#[doc(alias = "poll")]
pub fn poll_readable(fds: &[BorrowedFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut polled: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    let timeout = if timeout_ms < 0 { PollTimeout::NONE } else { PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::MAX) };
    loop {
        match poll(&mut polled, timeout) {
            Ok(_) => return Ok(polled.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// One `struct uffd_msg`, as far as the snapshot cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// A thread faulted at `address`; `write_protect`: on a write-protected page.
    PageFault { address: u64, write_protect: bool },
    /// The range moved (mremap): `from..from+len` is now at `to`.
    Remap { from: u64, to: u64, len: u64 },
    /// madvise(DONTNEED/FREE/REMOVE) is about to drop the pages of `start..end`.
    Remove { start: u64, end: u64 },
    /// `start..end` was unmapped.
    Unmap { start: u64, end: u64 },
    /// The process forked; `uffd` is the child's userfaultfd, now an fd of the reader.
    Fork { uffd: i32 },
    /// Any other event (its number).
    Other(u8),
}

const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
const UFFD_EVENT_FORK: u8 = 0x13;
const UFFD_EVENT_REMAP: u8 = 0x14;
const UFFD_EVENT_REMOVE: u8 = 0x15;
const UFFD_EVENT_UNMAP: u8 = 0x16;
const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// Parses one message (the kernel's layout: event byte, 7 reserved bytes, then the
/// event's u64 arguments in the host's byte order).
pub fn parse_message(bytes: &[u8; MESSAGE_SIZE]) -> Message {
    let word = |index: usize| u64::from_ne_bytes(bytes[8 + index * 8..16 + index * 8].try_into().expect("8 bytes"));
    match bytes[0] {
        UFFD_EVENT_PAGEFAULT => {
            Message::PageFault { address: word(1), write_protect: word(0) & UFFD_PAGEFAULT_FLAG_WP != 0 }
        }
        UFFD_EVENT_FORK => Message::Fork { uffd: word(0) as u32 as i32 },
        UFFD_EVENT_REMAP => Message::Remap { from: word(0), to: word(1), len: word(2) },
        UFFD_EVENT_REMOVE => Message::Remove { start: word(0), end: word(1) },
        UFFD_EVENT_UNMAP => Message::Unmap { start: word(0), end: word(1) },
        other => Message::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: u8, words: [u64; 3]) -> [u8; MESSAGE_SIZE] {
        let mut bytes = [0u8; MESSAGE_SIZE];
        bytes[0] = event;
        for (index, word) in words.iter().enumerate() {
            bytes[8 + index * 8..16 + index * 8].copy_from_slice(&word.to_ne_bytes());
        }
        bytes
    }

    #[test]
    fn parses_each_event() {
        assert_eq!(
            parse_message(&message(0x12, [3, 0x7f00_1000, 0])),
            Message::PageFault { address: 0x7f00_1000, write_protect: true }
        );
        assert_eq!(
            parse_message(&message(0x12, [1, 0x1000, 0])),
            Message::PageFault { address: 0x1000, write_protect: false }
        );
        assert_eq!(parse_message(&message(0x14, [0x1000, 0x9000, 0x2000])), Message::Remap { from: 0x1000, to: 0x9000, len: 0x2000 });
        assert_eq!(parse_message(&message(0x15, [0x1000, 0x3000, 0])), Message::Remove { start: 0x1000, end: 0x3000 });
        assert_eq!(parse_message(&message(0x16, [0x1000, 0x3000, 0])), Message::Unmap { start: 0x1000, end: 0x3000 });
        assert_eq!(parse_message(&message(0x13, [5, 0, 0])), Message::Fork { uffd: 5 });
        assert_eq!(parse_message(&message(0x17, [5, 0, 0])), Message::Other(0x17));
    }

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        // From linux/userfaultfd.h.
        assert_eq!(std::mem::size_of::<UffdioApi>(), 24);
        assert_eq!(std::mem::size_of::<UffdioRegister>(), 32);
        assert_eq!(std::mem::size_of::<UffdioWriteprotect>(), 24);
        // (powerpc's _IOWR sets the same top bits in its own way.)
        assert_eq!(request(UFFDIO_API_NR, 24), 0xc018_aa3f);
        assert_eq!(request(UFFDIO_REGISTER_NR, 32), 0xc020_aa00);
        assert_eq!(request(UFFDIO_WRITEPROTECT_NR, 24), 0xc018_aa06);
        assert_eq!(std::mem::size_of::<UffdioCopy>(), 40);
        assert_eq!(request(UFFDIO_COPY_NR, 40), 0xc028_aa03);
        assert_eq!(request(UFFDIO_ZEROPAGE_NR, 32), 0xc020_aa04);
    }
}
