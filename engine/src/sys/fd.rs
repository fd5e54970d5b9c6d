//! The raw kernel requests behind pipes, sockets and the anon-inode fd types: one typed
//! function each, for the dump side (borrowing a target's fd, peeking at queues without
//! consuming them) and the restore side (creating the objects again).
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call, and every size passed is that memory's size. Fds created here
//! come back as `OwnedFd`, so an early error closes them. Errors are errno.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(rc)? as RawFd;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_open(pid, 0)`; for a thread that is not a leader (the live thread of a process
/// whose leader exited), `pidfd_open(tid, PIDFD_THREAD)`.
#[doc(alias = "pidfd_open")]
pub fn open_pidfd(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    match owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }) {
        // PIDFD_THREAD is O_EXCL (Linux 6.9).
        // SAFETY: no pointers.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::O_EXCL as libc::c_long) }),
        other => other,
    }
}

/// `pidfd_getfd(pidfd, fd, 0)`: a copy (close-on-exec) of another process's fd, sharing
/// its open file description. Needs ptrace access to the process, which the dumper has.
#[doc(alias = "pidfd_getfd")]
pub fn borrow_fd(pid: i32, fd: u32) -> io::Result<OwnedFd> {
    let pidfd = open_pidfd(pid)?;
    // SAFETY: no pointers.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd as libc::c_long, 0) })
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: moves an fd to the lowest free number ≥ `min`.
pub fn move_above(fd: OwnedFd, min: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) } as libc::c_long)
}

/// `flock(fd, op | LOCK_NB)`.
pub fn flock(fd: RawFd, op: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::flock(fd, op | libc::LOCK_NB) } as libc::c_long)?;
    Ok(())
}

/// `fcntl(fd, F_SETLK or F_OFD_SETLK, {type, SEEK_SET, start, len})`.
pub fn fcntl_lock(fd: RawFd, command: i32, kind: i32, start: i64, len: i64) -> io::Result<()> {
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

/// `inotify_init1(flags)`.
pub fn create_inotify(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::inotify_init1(flags | libc::IN_CLOEXEC) } as libc::c_long)
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
pub fn create_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0 as libc::c_int; 2];
    // SAFETY: `ends` is two c_ints, as pipe2 wants.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: both fds were just created for us.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

/// `fcntl(fd, F_GETPIPE_SZ)`.
pub fn pipe_size(fd: RawFd) -> io::Result<u32> {
    // SAFETY: no pointers.
    Ok(check(unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) } as libc::c_long)? as u32)
}

/// `fcntl(fd, F_SETPIPE_SZ, size)`.
pub fn set_pipe_size(fd: RawFd, size: u32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size as libc::c_int) } as libc::c_long)?;
    Ok(())
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
pub fn copy_pipe(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: no pointers.
    Ok(check(unsafe { libc::tee(from, to, len, libc::SPLICE_F_NONBLOCK) } as libc::c_long)? as usize)
}

/// `fcntl(fd, F_SETFL, flags)`: only O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME and
/// O_NONBLOCK can change.
pub fn set_status_flags(fd: RawFd, flags: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } as libc::c_long)?;
    Ok(())
}

/// `read(fd, buf)`.
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for its length.
    Ok(check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as libc::c_long)? as usize)
}

/// `write(fd, buf)` until all of it is written.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is readable for its length.
        let n = check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) } as libc::c_long)? as usize;
        buf = &buf[n..];
    }
    Ok(())
}

/// `open(/proc/self/fd/N, flags)`: a new open file description of the object behind an
/// fd (a second description of one pipe end, a FIFO).
pub fn reopen(fd: RawFd, flags: i32) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number");
    // SAFETY: path is a NUL-terminated string that outlives the call.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) } as libc::c_long)
}

/// `open(path, flags)` for a FIFO or an fd through /proc.
pub fn open_path(path: &str, flags: i32) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: path is a NUL-terminated string that outlives the call.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) } as libc::c_long)
}

/// `getsockopt(fd, level, name)` of an int option.
pub fn socket_option(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writing; len holds value's size.
    check(unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) }
        as libc::c_long)?;
    Ok(value)
}

/// `setsockopt(fd, level, name, value)` of an int option.
pub fn set_socket_option(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value lives across the call; the size passed is its size.
    check(unsafe {
        libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32)
    } as libc::c_long)?;
    Ok(())
}

/// One message peeked from a socket's receive queue.
pub struct Peeked {
    pub len: usize,
    /// The message was longer than the buffer.
    pub truncated: bool,
    /// Copies (close-on-exec) of the fds in flight with it (SCM_RIGHTS): peeking
    /// installs them in the caller, the message keeps its own.
    pub fds: Vec<OwnedFd>,
    /// Other ancillary data (credentials) came with it, or the control buffer was short.
    pub other_control: bool,
}

/// `recvmsg(fd, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC)`: with SO_PEEK_OFF set, each
/// call returns the next message (datagram) or the next bytes (stream) without
/// consuming them.
pub fn peek_message(fd: RawFd, buf: &mut [u8]) -> io::Result<Peeked> {
    // Room for SCM_MAX_FD (253) fds.
    let mut control = [0u64; 160];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at iov (buf) and control, both live and sized as stated.
    let n = check(unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) } as libc::c_long)?;
    let mut fds = Vec::new();
    let mut other_control = msg.msg_flags & libc::MSG_CTRUNC != 0;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel just filled, within
    // msg_controllen; SCM_RIGHTS data is an array of ints, each an fd now ours.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header) as *const libc::c_int;
                let count = ((*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            } else {
                other_control = true;
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    Ok(Peeked { len: n as usize, truncated: msg.msg_flags & libc::MSG_TRUNC != 0, fds, other_control })
}

/// `sendmsg(fd, buf)` with `fds` in flight (SCM_RIGHTS), not blocking.
pub fn send_with_fds(fd: RawFd, buf: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut control = [0u64; 160];
    let space = if fds.is_empty() { 0 } else {
        // SAFETY: CMSG_SPACE only computes a size.
        unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize }
    };
    if space > std::mem::size_of_val(&control) {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds `space` bytes, enough for one header with
        // the fds, which are copied into its data.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(header) as *mut libc::c_int, fds.len());
        }
    }
    // SAFETY: msg points at iov (buf) and control, both live and sized as stated.
    let n = check(unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) } as libc::c_long)? as usize;
    if n != buf.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("sent {n} of {} bytes", buf.len())));
    }
    Ok(())
}

/// `socket(domain, type | SOCK_CLOEXEC, 0)`.
pub fn create_socket(domain: i32, kind: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) } as libc::c_long)
}

/// `socketpair(domain, type | SOCK_CLOEXEC, 0)`.
pub fn create_socketpair(domain: i32, kind: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0 as libc::c_int; 2];
    // SAFETY: `ends` is two c_ints, as socketpair wants.
    check(unsafe { libc::socketpair(domain, kind | libc::SOCK_CLOEXEC, 0, ends.as_mut_ptr()) } as libc::c_long)?;
    // SAFETY: both fds were just created for us.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

fn unix_address(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() >= address.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, byte) in address.sun_path.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    Ok((address, len as libc::socklen_t))
}

/// `bind(fd, AF_UNIX name)`; an abstract name starts with a NUL byte.
pub fn bind_unix(fd: RawFd, name: &[u8]) -> io::Result<()> {
    let (address, len) = unix_address(name)?;
    // SAFETY: address lives across the call and len is within its size.
    check(unsafe { libc::bind(fd, (&address as *const libc::sockaddr_un).cast(), len) } as libc::c_long)?;
    Ok(())
}

/// `connect(fd, AF_UNIX name)`.
pub fn connect_unix(fd: RawFd, name: &[u8]) -> io::Result<()> {
    let (address, len) = unix_address(name)?;
    // SAFETY: address lives across the call and len is within its size.
    check(unsafe { libc::connect(fd, (&address as *const libc::sockaddr_un).cast(), len) } as libc::c_long)?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub fn listen(fd: RawFd, backlog: u32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::listen(fd, backlog as libc::c_int) } as libc::c_long)?;
    Ok(())
}

/// `send(fd, buf, MSG_DONTWAIT)`: one message (datagram) or bytes (stream), all of it.
pub fn send_message(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    loop {
        // SAFETY: buf is readable for its length.
        let n = check(unsafe { libc::send(fd, buf[sent..].as_ptr().cast(), buf.len() - sent, libc::MSG_DONTWAIT) }
            as libc::c_long)? as usize;
        sent += n;
        if sent >= buf.len() {
            return Ok(());
        }
    }
}

/// `eventfd(count, flags)`.
pub fn create_eventfd(count: u32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::eventfd(count, flags | libc::EFD_CLOEXEC) } as libc::c_long)
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

/// `timerfd_create(clock, flags)` then `timerfd_settime(fd, 0, value/interval)`, relative.
pub fn create_timerfd(clock: i32, flags: i32, value: (u64, u64), interval: (u64, u64)) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    let fd = owned(unsafe { libc::timerfd_create(clock, flags | libc::TFD_CLOEXEC) } as libc::c_long)?;
    let spec = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: interval.0 as libc::time_t, tv_nsec: interval.1 as libc::c_long },
        it_value: libc::timespec { tv_sec: value.0 as libc::time_t, tv_nsec: value.1 as libc::c_long },
    };
    // SAFETY: spec lives across the call; the old value is not asked for.
    check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } as libc::c_long)?;
    Ok(fd)
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
pub fn create_epoll() -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long)
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})`.
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: event lives across the call.
    check(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut event) } as libc::c_long)?;
    Ok(())
}

/// `kcmp(pid, pid, KCMP_EPOLL_TFD, fd, {epfd, tfd, 0})`: whether the file epoll `epfd`
/// watches under number `tfd` is the one at `fd`.
#[doc(alias = "kcmp")]
pub fn epoll_watches_file(pid: i32, epfd: u32, tfd: u32, fd: u32) -> io::Result<bool> {
    const KCMP_EPOLL_TFD: libc::c_long = 7;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot { efd: epfd, tfd, toff: 0 };
    // SAFETY: slot lives across the call and has the kernel's kcmp_epoll_slot layout.
    let rc = check(unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, fd as libc::c_long, &slot as *const Slot) })?;
    Ok(rc == 0)
}

/// Sends one sock_diag dump request (`request`: the family's request struct, after the
/// netlink header) and returns the raw netlink replies until DONE or ERROR.
#[doc(alias = "SOCK_DIAG_BY_FAMILY")]
pub fn sock_diag_dump(request: &[u8]) -> io::Result<Vec<u8>> {
    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let sock = owned(
        // SAFETY: no pointers.
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) } as libc::c_long,
    )?;
    let mut message = Vec::with_capacity(16 + request.len());
    message.extend_from_slice(&(16 + request.len() as u32).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(request);
    // SAFETY: message is readable for its length; no address (the kernel is the default).
    check(unsafe { libc::send(sock.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) } as libc::c_long)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_some(sock.as_raw_fd(), &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if diag_done(&buf[..n]) {
            break;
        }
    }
    Ok(out)
}

/// One sock_diag request for every AF_UNIX socket of this network namespace, with names,
/// peers, queue lengths and shutdown state.
pub fn unix_diag_dump() -> io::Result<Vec<u8>> {
    // UDIAG_SHOW_NAME | PEER | ICONS | RQLEN
    const SHOW: u32 = 0x1 | 0x4 | 0x8 | 0x10;
    let mut request = Vec::with_capacity(24);
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    request.extend_from_slice(&u32::MAX.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&SHOW.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]);
    sock_diag_dump(&request)
}

/// One inet_diag request for the TCP listeners of one family (inet_diag_req_v2).
pub fn tcp_listener_diag_dump(family: i32) -> io::Result<Vec<u8>> {
    let mut request = vec![family as u8, libc::IPPROTO_TCP as u8, 0, 0];
    request.extend_from_slice(&(1u32 << 10).to_ne_bytes());
    request.extend_from_slice(&[0u8; 48]);
    sock_diag_dump(&request)
}

/// An inet address: family, address bytes (4 or 16), port (host order), v6 scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InetAddress {
    pub family: i32,
    pub addr: Vec<u8>,
    pub port: u16,
}

fn inet_from_storage(storage: &libc::sockaddr_storage) -> Option<InetAddress> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(InetAddress { family: libc::AF_INET, addr: sin.sin_addr.s_addr.to_ne_bytes().to_vec(), port: u16::from_be(sin.sin_port) })
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(InetAddress { family: libc::AF_INET6, addr: sin6.sin6_addr.s6_addr.to_vec(), port: u16::from_be(sin6.sin6_port) })
        }
        _ => None,
    }
}

fn inet_to_storage(address: &InetAddress) -> io::Result<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match (address.family, address.addr.len()) {
        (libc::AF_INET, 4) => {
            // SAFETY: storage is large enough for a sockaddr_in and suitably aligned.
            let sin = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = address.port.to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(address.addr[..4].try_into().expect("4 bytes"));
            Ok((storage, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t))
        }
        (libc::AF_INET6, 16) => {
            // SAFETY: storage is large enough for a sockaddr_in6 and suitably aligned.
            let sin6 = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = address.port.to_be();
            sin6.sin6_addr.s6_addr.copy_from_slice(&address.addr);
            Ok((storage, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t))
        }
        _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    }
}

/// `getsockname(fd)` (`peer`: `getpeername`) of an inet socket; `None` when not connected.
pub fn inet_name(fd: RawFd, peer: bool) -> io::Result<Option<InetAddress>> {
    // SAFETY: sockaddr_storage is plain data.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let pointer = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: storage and len are writable; len holds storage's size.
    let rc = unsafe { if peer { libc::getpeername(fd, pointer, &mut len) } else { libc::getsockname(fd, pointer, &mut len) } };
    if rc < 0 {
        let error = io::Error::last_os_error();
        return if peer && error.raw_os_error() == Some(libc::ENOTCONN) { Ok(None) } else { Err(error) };
    }
    Ok(inet_from_storage(&storage))
}

/// `bind(fd, address)` (`connect`: `connect(fd, address)`) for an inet socket.
pub fn inet_bind_or_connect(fd: RawFd, address: &InetAddress, connect: bool) -> io::Result<()> {
    let (storage, len) = inet_to_storage(address)?;
    let pointer = (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: storage lives across the call; len is within its size.
    check(unsafe { if connect { libc::connect(fd, pointer, len) } else { libc::bind(fd, pointer, len) } } as libc::c_long)?;
    Ok(())
}

/// `sendto(fd, buf, address)`: one datagram.
pub fn send_to(fd: RawFd, buf: &[u8], address: &InetAddress) -> io::Result<()> {
    let (storage, len) = inet_to_storage(address)?;
    // SAFETY: buf and storage live across the call; sizes are theirs.
    check(unsafe {
        libc::sendto(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT, (&storage as *const libc::sockaddr_storage).cast(), len)
    } as libc::c_long)?;
    Ok(())
}

/// `memfd_create(name, flags)`.
#[doc(alias = "memfd_create")]
pub fn create_memfd(name: &str, flags: u32) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: name is a NUL-terminated string that outlives the call.
    owned(unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), flags as libc::c_long) })
}

/// `fcntl(fd, F_GET_SEALS)`.
pub fn seals(fd: RawFd) -> io::Result<u32> {
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(fd, libc::F_GET_SEALS) } as libc::c_long).map(|v| v as u32)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: RawFd, seals: u32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals as libc::c_int) } as libc::c_long).map(|_| ())
}

/// `lseek(fd, offset, SEEK_DATA or SEEK_HOLE)`: `None` past the last data (ENXIO).
pub fn seek_data_or_hole(fd: RawFd, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    // SAFETY: no pointers.
    match check(unsafe { libc::lseek(fd, offset as libc::off_t, whence) } as libc::c_long) {
        Ok(at) => Ok(Some(at as u64)),
        Err(error) if error.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(error) => Err(error),
    }
}

/// `fchown` and `fchmod` of a file crust created.
pub fn set_owner_and_mode(fd: RawFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::fchown(fd, uid, gid) } as libc::c_long)?;
    // SAFETY: no pointers.
    check(unsafe { libc::fchmod(fd, mode as libc::mode_t) } as libc::c_long).map(|_| ())
}

/// A pidfd of a process that has exited: of a child forked for it (CLONE_UNTRACED, so a
/// tracer of the caller sees nothing of it), which exits at once and is reaped. `flags`:
/// PIDFD_NONBLOCK, PIDFD_THREAD. The pidfd lives in the caller's pid namespace.
pub fn dead_pidfd(flags: i32) -> io::Result<OwnedFd> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs { flags: libc::CLONE_UNTRACED as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    // SAFETY: args is a valid clone_args of the size passed; without a stack the child
    // runs on a copy of ours and calls only _exit, which is async-signal-safe.
    let child = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if child == 0 {
        // SAFETY: _exit takes no pointers and never returns.
        unsafe { libc::_exit(0) };
    }
    let child = check(child)? as libc::pid_t;
    // SAFETY: no pointers.
    let fd = owned(unsafe { libc::syscall(libc::SYS_pidfd_open, child, flags as libc::c_long) });
    let mut status = 0;
    // SAFETY: the kernel writes the status word into `status`.
    unsafe { libc::waitpid(child, &mut status, 0) };
    fd
}

/// `getsockopt` of a structure or buffer: the bytes the kernel wrote.
pub fn socket_option_bytes(fd: RawFd, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is writable for len bytes; len holds its size.
    check(unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) } as libc::c_long)?;
    Ok(len as usize)
}

/// `setsockopt` of a structure or buffer.
pub fn set_socket_option_bytes(fd: RawFd, level: i32, name: i32, buf: &[u8]) -> io::Result<()> {
    // SAFETY: buf is readable for its length, the size passed.
    check(unsafe { libc::setsockopt(fd, level, name, buf.as_ptr().cast(), buf.len() as libc::socklen_t) } as libc::c_long)?;
    Ok(())
}

/// `ioctl(fd, request, &int)` of a request that reports an int (SIOCINQ, SIOCOUTQ).
pub fn ioctl_int(fd: RawFd, request: u64) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    // SAFETY: the kernel writes one int into `value`.
    check(unsafe { libc::ioctl(fd, request as _, &mut value as *mut libc::c_int) } as libc::c_long)?;
    Ok(value)
}

/// `recv(fd, buf, MSG_PEEK | MSG_DONTWAIT)`: bytes copied without consuming them.
pub fn peek_bytes(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for its length.
    Ok(check(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT) } as libc::c_long)? as usize)
}

/// `ioctl(fd, request, &int)` that writes or reads one int argument.
pub fn ioctl_int_arg(fd: RawFd, request: u64, value: i32) -> io::Result<i32> {
    let mut value: libc::c_int = value;
    // SAFETY: the kernel reads or writes one int at `value`.
    check(unsafe { libc::ioctl(fd, request as _, &mut value as *mut libc::c_int) } as libc::c_long)?;
    Ok(value)
}

/// `ioctl(fd, request, value)` whose argument is a plain number (TIOCSCTTY, TIOCPKT's
/// pointer-free forms are not used: see callers).
pub fn ioctl_value(fd: RawFd, request: u64, value: u64) -> io::Result<()> {
    // SAFETY: the request takes its argument by value, no pointer.
    check(unsafe { libc::ioctl(fd, request as _, value as libc::c_ulong) } as libc::c_long)?;
    Ok(())
}

/// Terminal attributes (TCGETS) and window size (TIOCGWINSZ).
pub fn terminal_state(fd: RawFd) -> io::Result<(libc::termios, libc::winsize)> {
    // SAFETY: termios and winsize are plain data; the kernel fills at most their size.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        check(libc::ioctl(fd, libc::TCGETS as _, &mut termios as *mut libc::termios) as libc::c_long)?;
        let mut winsize: libc::winsize = std::mem::zeroed();
        check(libc::ioctl(fd, libc::TIOCGWINSZ as _, &mut winsize as *mut libc::winsize) as libc::c_long)?;
        Ok((termios, winsize))
    }
}

/// Sets terminal attributes (TCSETS) and window size (TIOCSWINSZ).
pub fn set_terminal_state(fd: RawFd, termios: &libc::termios, winsize: &libc::winsize) -> io::Result<()> {
    // SAFETY: both structures live across the calls; the kernel only reads them.
    unsafe {
        check(libc::ioctl(fd, libc::TCSETS as _, termios as *const libc::termios) as libc::c_long)?;
        check(libc::ioctl(fd, libc::TIOCSWINSZ as _, winsize as *const libc::winsize) as libc::c_long)?;
    }
    Ok(())
}

/// An all-zero `termios` (plain data).
pub fn zeroed_termios() -> libc::termios {
    // SAFETY: termios is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Blocks (`true`) or unblocks SIGTTOU in the calling thread: a background process
/// setting its terminal's foreground group would otherwise be stopped.
pub fn block_sigttou(block: bool) -> io::Result<()> {
    // SAFETY: set is plain data initialised by sigemptyset/sigaddset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        let how = if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
        check(libc::pthread_sigmask(how, &set, std::ptr::null_mut()) as libc::c_long)?;
    }
    Ok(())
}

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;

/// Whether a netlink reply chunk ends the dump (DONE or ERROR).
pub(crate) fn diag_done(bytes: &[u8]) -> bool {
    netlink_messages(bytes).any(|(kind, _)| kind == NLMSG_DONE || kind == NLMSG_ERROR)
}

/// The netlink messages of a reply: (type, payload).
pub(crate) fn netlink_messages(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(at..at + 16)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().expect("2 bytes"));
        if len < 16 || at + len > bytes.len() {
            return None;
        }
        let payload = &bytes[at + 16..at + len];
        at += (len + 3) & !3;
        Some((kind, payload))
    })
}

