//! Requests on fd *numbers*: the fd table a restored process is given (the broker's
//! numbers, each target fd at its number, the helpers of the restorer) and the locks
//! taken on its fds. These numbers are owned by no Rust value (they are the layout
//! being built, or a target's), while nix's fd functions take `OwnedFd`/`AsFd`; so they
//! are wrapped here: dup3 (F_SETFD where an fd stays in place), close, F_DUPFD, lseek,
//! open returning the number, flock and fcntl locks, and epoll_ctl between two numbers.
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call. Errors are errno.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::fd::{FromRawFd, OwnedFd};

use super::check;

/// `dup3(old, new)` with FD_CLOEXEC set or not on `new`; where `old` is `new`, only the
/// flag is set or cleared.
#[doc(alias = "dup3")]
pub fn place_fd(old: i32, new: i32, cloexec: bool) -> io::Result<()> {
    if old != new {
        // SAFETY: no pointers; both are fd numbers.
        check(unsafe { libc::dup3(old, new, if cloexec { libc::O_CLOEXEC } else { 0 }) } as libc::c_long)?;
        return Ok(());
    }
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(new, libc::F_SETFD, if cloexec { libc::FD_CLOEXEC } else { 0 }) } as libc::c_long)?;
    Ok(())
}

/// [`place_fd`] for `opened`, an fd just opened without O_CLOEXEC: where it is `new`
/// already and stays without FD_CLOEXEC, no call at all (a restore of 10,000 files
/// places most of them so).
pub fn place_opened_fd(opened: i32, new: i32, cloexec: bool) -> io::Result<()> {
    if opened == new && !cloexec {
        return Ok(());
    }
    place_fd(opened, new, cloexec)
}

/// Whether `fd` is open in this process (`fcntl(fd, F_GETFD)` succeeds).
#[doc(alias = "F_GETFD")]
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: no pointers; F_GETFD only reads the fd's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// `close(fd)`, errors ignored.
#[doc(alias = "close")]
pub fn close_fd(fd: i32) {
    // SAFETY: no pointers; closing an fd number this process owns.
    unsafe { libc::close(fd) };
}

/// `fcntl(fd, F_DUPFD, min)`: a copy of `fd` at the lowest free number ≥ `min`.
#[doc(alias = "F_DUPFD")]
pub fn dup_at_least(fd: i32, min: i32) -> io::Result<i32> {
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(fd, libc::F_DUPFD, min) } as libc::c_long).map(|v| v as i32)
}

/// `lseek(fd, pos, SEEK_SET)`.
#[doc(alias = "lseek")]
pub fn seek_to(fd: i32, pos: u64) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_SET) } as libc::c_long)?;
    Ok(())
}

/// `open(path, flags, mode)` returning the fd number (the caller places it).
#[doc(alias = "open")]
pub fn open_raw(path: &std::path::Path, flags: i32, mode: u32) -> io::Result<i32> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: c_path is a NUL-terminated string alive for the call.
    check(unsafe { libc::open(c_path.as_ptr(), flags, mode as libc::c_uint) } as libc::c_long).map(|v| v as i32)
}

/// `flock(fd, op | LOCK_NB)`.
pub fn flock(fd: i32, op: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::flock(fd, op | libc::LOCK_NB) } as libc::c_long)?;
    Ok(())
}

/// `fcntl(fd, F_SETLK or F_OFD_SETLK, {type, SEEK_SET, start, len})`.
#[doc(alias = "F_SETLK")]
pub fn fcntl_lock(fd: i32, command: i32, kind: i32, start: i64, len: i64) -> io::Result<()> {
    // SAFETY: flock is plain data; all-zero is valid (and l_pid must be 0 for OFD).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = len;
    // SAFETY: lock lives across the call.
    check(unsafe { libc::fcntl(fd, command, &lock) } as libc::c_long)?;
    Ok(())
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})` between two fd numbers of this
/// process (an epoll it holds and the fd number the watch names).
#[doc(alias = "epoll_ctl")]
pub fn epoll_add(epfd: i32, fd: i32, events: u32, data: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: event lives across the call.
    check(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut event) } as libc::c_long)?;
    Ok(())
}

/// `close_range(first, last, 0)`: closes every fd from `first` to `last`, inclusive.
pub fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: no pointers; closing fd numbers of this process.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }).map(|_| ())
}

/// Takes ownership of fd `number`, which the kernel has just installed in crust for it
/// (a userfaultfd of a fork event, read from its parent's userfaultfd).
pub fn own_received_fd(number: i32) -> OwnedFd {
    // SAFETY: the kernel installed the fd for the caller alone as it delivered the
    // message naming it; nothing else in crust refers to it.
    unsafe { OwnedFd::from_raw_fd(number) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloexec_of(fd: i32) -> bool {
        // SAFETY: no pointers.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags >= 0, "fd {fd} is open");
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn a_placed_fd_has_its_close_on_exec_flag_as_asked() {
        let opened = open_raw(std::path::Path::new("/dev/null"), libc::O_RDONLY, 0).expect("open /dev/null");
        // A number this test owns (closing it first could hand it to another test's open).
        let target = dup_at_least(opened, 900).expect("a free number");
        for cloexec in [true, false, true] {
            place_fd(opened, target, cloexec).expect("dup3");
            assert_eq!(cloexec_of(target), cloexec);
            place_fd(target, target, !cloexec).expect("in place");
            assert_eq!(cloexec_of(target), !cloexec);
        }
        close_fd(target);
        // Opened where it belongs: nothing to do without FD_CLOEXEC, the flag set with it.
        place_opened_fd(opened, opened, false).expect("no call");
        assert!(!cloexec_of(opened));
        place_opened_fd(opened, opened, true).expect("flag");
        assert!(cloexec_of(opened));
        close_fd(opened);
    }
}
