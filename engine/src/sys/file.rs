//! Requests on fds crust owns (`OwnedFd`): opening files and FIFOs, pipes, memfds,
//! eventfd, timerfd, epoll, inotify, signalfd, seals, holes, owners.
//!
//! Through nix: open, pipe2, tee, fcntl (F_SETFL, F_GETPIPE_SZ, F_SETPIPE_SZ,
//! F_DUPFD_CLOEXEC, F_GET_SEALS, F_ADD_SEALS), read, write, lseek (SEEK_DATA/HOLE),
//! fchown, fchmod, memfd_create, eventfd, timerfd, epoll_create1, inotify_init1,
//! fstatfs, open(O_TMPFILE) and linkat (a name for an unnamed file).
//! Wrapped here, where nix has no safe API: open_by_handle_at, inotify_add_watch and
//! inotify_rm_watch (nix hides the watch descriptor's number, which restore must give
//! back), signalfd (nix's `SigSet` cannot hold real-time signals, a signalfd's mask
//! can), and the FIONREAD and TFD_IOC_SET_TICKS ioctls.
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call, and every size passed is that memory's size. Fds created
//! here come back as `OwnedFd`, so an early error closes them. Errors are errno.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::stat::Mode;

use super::check;

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(rc)? as RawFd;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: moves an fd to the lowest free number ≥ `min`.
#[doc(alias = "F_DUPFD_CLOEXEC")]
pub fn move_above(fd: OwnedFd, min: i32) -> io::Result<OwnedFd> {
    let copy = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC just made this fd for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// `open(path, flags | O_CLOEXEC)`: a FIFO, a pty, an fd through /proc.
#[doc(alias = "open")]
pub fn open_path(path: &str, flags: i32) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(path, OFlag::from_bits_retain(flags) | OFlag::O_CLOEXEC, Mode::empty())?)
}

/// `open(/proc/self/fd/N, flags)`: a new open file description of the object behind an
/// fd (a second description of one pipe end, a FIFO, a memfd).
pub fn reopen(fd: impl AsFd, flags: i32) -> io::Result<OwnedFd> {
    open_path(&format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()), flags)
}

/// `open_by_handle_at(mount_fd, {bytes, type, handle}, O_PATH)`: the file a handle names.
pub fn open_by_handle(mount_fd: RawFd, kind: i32, handle: &[u8]) -> io::Result<OwnedFd> {
    let mut buf = vec![0u8; 8 + handle.len()];
    buf[0..4].copy_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf[4..8].copy_from_slice(&kind.to_ne_bytes());
    buf[8..].copy_from_slice(handle);
    // SAFETY: buf holds a struct file_handle (bytes, type, then `bytes` bytes) and lives
    // across the call.
    owned(unsafe { libc::syscall(libc::SYS_open_by_handle_at, mount_fd, buf.as_mut_ptr(), libc::O_PATH | libc::O_CLOEXEC) })
}

/// `inotify_init1(flags | IN_CLOEXEC)`.
#[doc(alias = "inotify_init1")]
pub fn create_inotify(flags: i32) -> io::Result<OwnedFd> {
    use nix::sys::inotify::{InitFlags, Inotify};
    let inotify = Inotify::init(InitFlags::from_bits_retain(flags) | InitFlags::IN_CLOEXEC)?;
    Ok(OwnedFd::from(inotify))
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor.
pub fn inotify_add(fd: RawFd, path: &str, mask: u32) -> io::Result<i32> {
    let path = std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: path is NUL-terminated and outlives the call.
    Ok(check(unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) } as libc::c_long)? as i32)
}

/// `inotify_rm_watch(fd, wd)`.
pub fn inotify_remove(fd: RawFd, wd: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::inotify_rm_watch(fd, wd) } as libc::c_long)?;
    Ok(())
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
#[doc(alias = "pipe2")]
pub fn create_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// `open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, mode)`: a file of `dir`'s filesystem
/// without a name, freed on close unless [`link_unnamed`] names it.
#[doc(alias = "O_TMPFILE")]
pub fn create_unnamed(dir: &std::path::Path, mode: u32) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(mode).open(dir)
}

/// `linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, path, AT_SYMLINK_FOLLOW)`: gives the
/// unnamed file `file` the name `path` (EEXIST when the name is taken).
#[doc(alias = "linkat")]
pub fn link_unnamed(file: &std::fs::File, path: &std::path::Path) -> io::Result<()> {
    let own = format!("/proc/self/fd/{}", file.as_raw_fd());
    nix::unistd::linkat(nix::fcntl::AT_FDCWD, own.as_str(), nix::fcntl::AT_FDCWD, path, nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW)?;
    Ok(())
}

/// A small /proc file as text, in one read when it fits 4 KiB (`fs::read_to_string`
/// sizes its buffer with a stat and reads 32, 32, 64, 128... bytes: seven calls for an
/// fdinfo, four here).
pub fn read_proc_text(path: &str) -> io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    bytes.truncate(len);
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: not UTF-8")))
}

/// `fcntl(fd, F_GETPIPE_SZ)`.
#[doc(alias = "F_GETPIPE_SZ")]
pub fn pipe_size(fd: impl AsFd) -> io::Result<u32> {
    Ok(fcntl(fd, FcntlArg::F_GETPIPE_SZ)? as u32)
}

/// `fcntl(fd, F_SETPIPE_SZ, size)`: the capacity the kernel gave (size rounded up to a
/// power of two pages).
#[doc(alias = "F_SETPIPE_SZ")]
pub fn set_pipe_size(fd: impl AsFd, size: u32) -> io::Result<u32> {
    Ok(fcntl(fd, FcntlArg::F_SETPIPE_SZ(size as libc::c_int))? as u32)
}

/// `ioctl(fd, FIONREAD)`: bytes waiting in a pipe or socket.
pub fn bytes_queued(fd: RawFd) -> io::Result<u32> {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the pointer.
    check(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count) } as libc::c_long)?;
    Ok(count as u32)
}

/// `tee(from, to, len, SPLICE_F_NONBLOCK)`: copies pipe contents without consuming them.
#[doc(alias = "tee")]
pub fn copy_pipe(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    Ok(nix::fcntl::tee(from, to, len, nix::fcntl::SpliceFFlags::SPLICE_F_NONBLOCK)?)
}

/// `fcntl(fd, F_SETFL, flags)`: only O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME and
/// O_NONBLOCK can change.
#[doc(alias = "F_SETFL")]
pub fn set_status_flags(fd: impl AsFd, flags: i32) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(flags)))?;
    Ok(())
}

/// `read(fd, buf)`.
pub fn read_some(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(nix::unistd::read(fd, buf)?)
}

/// `write(fd, buf)` until all of it is written.
pub fn write_all(fd: impl AsFd, mut buf: &[u8]) -> io::Result<()> {
    let fd = fd.as_fd();
    while !buf.is_empty() {
        let n = nix::unistd::write(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// `eventfd(count, flags | EFD_CLOEXEC)`.
#[doc(alias = "eventfd")]
pub fn create_eventfd(count: u32, flags: i32) -> io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let fd = EventFd::from_value_and_flags(count, EfdFlags::from_bits_retain(flags) | EfdFlags::EFD_CLOEXEC)?;
    Ok(OwnedFd::from(fd))
}

/// `signalfd(-1, mask, flags)`.
pub fn create_signalfd(mask: u64, flags: i32) -> io::Result<OwnedFd> {
    // The kernel's sigset is 64 bits here; glibc's sigset_t is larger and zero-padded.
    // SAFETY: sigset_t is plain data; all-zero is the empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    for signal in 1..=64 {
        if mask & (1u64 << (signal - 1)) != 0 {
            // SAFETY: set is a valid sigset_t.
            unsafe { libc::sigaddset(&mut set, signal) };
        }
    }
    // SAFETY: set lives across the call.
    owned(unsafe { libc::signalfd(-1, &set, flags | libc::SFD_CLOEXEC) } as libc::c_long)
}

/// `timerfd_create(clock, flags | TFD_CLOEXEC)` then `timerfd_settime(fd, 0,
/// value/interval)`, relative.
#[doc(alias = "timerfd_create")]
pub fn create_timerfd(clock: i32, flags: i32, value: (u64, u64), interval: (u64, u64)) -> io::Result<OwnedFd> {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    let clock = match clock {
        libc::CLOCK_REALTIME => ClockId::CLOCK_REALTIME,
        libc::CLOCK_MONOTONIC => ClockId::CLOCK_MONOTONIC,
        libc::CLOCK_BOOTTIME => ClockId::CLOCK_BOOTTIME,
        libc::CLOCK_REALTIME_ALARM => ClockId::CLOCK_REALTIME_ALARM,
        libc::CLOCK_BOOTTIME_ALARM => ClockId::CLOCK_BOOTTIME_ALARM,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let timer = TimerFd::new(clock, TimerFlags::from_bits_retain(flags) | TimerFlags::TFD_CLOEXEC)?;
    let spec = |(sec, nsec): (u64, u64)| TimeSpec::new(sec as libc::time_t, nsec as libc::c_long);
    // it_value then it_interval, exactly as given (a zero value leaves it disarmed).
    timer.set(Expiration::IntervalDelayed(spec(value), spec(interval)), TimerSetTimeFlags::empty())?;
    Ok(OwnedFd::from(timer))
}

/// `ioctl(fd, TFD_IOC_SET_TICKS, &ticks)`: expirations not yet read.
pub fn set_timerfd_ticks(fd: RawFd, ticks: u64) -> io::Result<()> {
    use crust_arch::{Abi, HostArch};
    let tfd_ioc_set_ticks = HostArch::ioctl_write(b'T', 0, 8) as libc::c_ulong;
    // SAFETY: the ioctl reads one u64 from the pointer.
    check(unsafe { libc::ioctl(fd, tfd_ioc_set_ticks, &ticks) } as libc::c_long)?;
    Ok(())
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
#[doc(alias = "epoll_create1")]
pub fn create_epoll() -> io::Result<OwnedFd> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags};
    Ok(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?.0)
}

/// `memfd_create(name, flags)`.
#[doc(alias = "memfd_create")]
pub fn create_memfd(name: &str, flags: u32) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    Ok(memfd_create(name, MFdFlags::from_bits_retain(flags))?)
}

/// `fcntl(fd, F_GET_SEALS)`.
#[doc(alias = "F_GET_SEALS")]
pub fn seals(fd: impl AsFd) -> io::Result<u32> {
    Ok(fcntl(fd, FcntlArg::F_GET_SEALS)? as u32)
}

/// Whether `fd` is a file of hugetlbfs (`fstatfs`): a hugetlb memfd, whose st_blksize
/// is the huge page size (so is a shmem file's where transparent huge pages are enabled
/// for shmem, which is no hugetlb file).
#[doc(alias = "fstatfs")]
pub fn is_hugetlbfs(fd: impl AsFd) -> io::Result<bool> {
    Ok(nix::sys::statfs::fstatfs(fd)?.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
#[doc(alias = "F_ADD_SEALS")]
pub fn add_seals(fd: impl AsFd, seals: u32) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(seals as libc::c_int)))?;
    Ok(())
}

/// `lseek(fd, offset, SEEK_DATA or SEEK_HOLE)`: `None` past the last data (ENXIO).
#[doc(alias = "lseek")]
pub fn seek_data_or_hole(fd: impl AsFd, offset: u64, data: bool) -> io::Result<Option<u64>> {
    use nix::unistd::Whence;
    let whence = if data { Whence::SeekData } else { Whence::SeekHole };
    match nix::unistd::lseek(fd, offset as libc::off_t, whence) {
        Ok(at) => Ok(Some(at as u64)),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// `fchown` and `fchmod` of a file crust created.
pub fn set_owner_and_mode(fd: impl AsFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    use nix::unistd::{Gid, Uid};
    let fd = fd.as_fd();
    nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    nix::sys::stat::fchmod(fd, Mode::from_bits_retain(mode as libc::mode_t))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hugetlb_memfd_is_on_hugetlbfs() {
        let plain = create_memfd("plain", libc::MFD_CLOEXEC).unwrap();
        assert!(!is_hugetlbfs(&plain).unwrap());
        // MFD_HUGETLB needs the kernel's hugetlbfs; without it there is nothing to tell.
        match create_memfd("huge", libc::MFD_CLOEXEC | libc::MFD_HUGETLB) {
            Ok(huge) => assert!(is_hugetlbfs(&huge).unwrap()),
            Err(error) => eprintln!("no hugetlb memfd here ({error}): half of the test skipped"),
        }
    }
}

/// `fcntl(fd, F_GETOWN_EX)` and `fcntl(fd, F_GETSIG)`: who gets the file's SIGIO/SIGURG
/// (`F_OWNER_TID` 0, `F_OWNER_PID` 1, `F_OWNER_PGRP` 2, and the id, 0 for none, as the
/// caller's pid namespace numbers it) and which signal (0: SIGIO).
#[doc(alias = "F_GETOWN_EX")]
pub fn owner(fd: impl AsFd) -> io::Result<(i32, i32, i32)> {
    const F_GETOWN_EX: libc::c_int = 16;
    const F_GETSIG: libc::c_int = 11;
    #[repr(C)]
    struct OwnerEx {
        kind: libc::c_int,
        pid: libc::pid_t,
    }
    let mut owner = OwnerEx { kind: 0, pid: 0 };
    // SAFETY: owner is a struct f_owner_ex the kernel fills, alive across the call.
    check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_GETOWN_EX, &mut owner as *mut OwnerEx) } as i64)?;
    // SAFETY: F_GETSIG takes no pointer.
    let signal = check(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_GETSIG) } as i64)?;
    Ok((owner.kind, owner.pid, signal as i32))
}
