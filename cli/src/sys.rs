//! The raw kernel calls of the command line, one typed function each: closing fds
//! (`--close`), waiting for the restored root, and the probes behind `check
//! --feature`. The only `unsafe` code of the `crust` binary; every block says why it
//! is sound.
//!
//! The probes that fork (`probe_in_child`, `with_traced_child`) run while the command
//! line has no other thread (checked), so the child may use anything the parent could.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crust_arch::{Abi, HostArch, Sys};

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)? as RawFd;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `close(fd)`, for `--close FD`; an fd that is not open is not an error (as in CRIU).
#[doc(alias = "close")]
pub fn close_fd(fd: RawFd) {
    // SAFETY: closing a number the user named; crust holds no handle to it yet (this
    // runs before anything is opened but the standard streams).
    unsafe {
        libc::close(fd);
    }
}

/// `waitpid(pid, 0)`: waits for child `pid` and describes how it ended.
#[doc(alias = "waitpid")]
pub fn wait_child(pid: i32) -> io::Result<String> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    })
}

/// The page size (`sysconf(_SC_PAGESIZE)`).
pub fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

fn single_threaded() -> io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    if status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Threads:", "1"]) {
        Ok(())
    } else {
        Err(io::Error::other("crust runs more than one thread: no fork probe"))
    }
}

/// `fork()`: runs `probe` in a child process, which exits 0 if it returns true; the
/// answer is whether it did. For probes with side effects crust itself must not keep
/// (unmapping its vDSO, a private mount namespace).
#[doc(alias = "fork")]
pub fn probe_in_child(probe: impl FnOnce() -> bool) -> io::Result<bool> {
    single_threaded()?;
    // SAFETY: single-threaded (checked above), so the child's copy of the process is
    // whole; the child only runs `probe` and `_exit`.
    let pid = check(unsafe { libc::fork() } as libc::c_long)? as i32;
    if pid == 0 {
        let ok = probe();
        // SAFETY: ends the child without running the parent's destructors or atexit.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    }
    let mut status = 0;
    // SAFETY: status is a valid out-pointer; pid is our child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
}

/// Runs `probe` with the pid of a child that is ptrace-seized and stopped
/// (PTRACE_SEIZE + PTRACE_INTERRUPT), with an allow-everything seccomp filter if asked;
/// the child is killed afterwards.
#[doc(alias = "PTRACE_SEIZE")]
pub fn with_traced_child<R>(seccomp_filter: bool, probe: impl FnOnce(i32) -> R) -> io::Result<R> {
    single_threaded()?;
    let mut ends = [0; 2];
    // SAFETY: ends is a valid out-array of two ints.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: the kernel returned these two fds to us.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    // SAFETY: single-threaded (checked above); the child makes raw calls only.
    let pid = check(unsafe { libc::fork() } as libc::c_long)? as i32;
    if pid == 0 {
        // SAFETY: the filter is a one-instruction program on the stack (RET ALLOW) that
        // outlives the call; the other calls take plain integers or our own buffer.
        unsafe {
            if seccomp_filter {
                let mut allow = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }];
                let program = libc::sock_fprog { len: 1, filter: allow.as_mut_ptr() };
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog);
            }
            libc::write(write_end.as_raw_fd(), b"r".as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    drop(write_end);
    let mut byte = [0u8; 1];
    // SAFETY: byte is a valid one-byte buffer.
    let got = unsafe { libc::read(read_end.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
    let kill = || {
        // SAFETY: pid is our child; status is not needed.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
        }
    };
    let seized = (|| -> io::Result<()> {
        if got != 1 {
            return Err(io::Error::other("probe child did not start"));
        }
        // SAFETY: plain integer arguments.
        check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0usize, 0usize) })?;
        // SAFETY: plain integer arguments.
        check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0usize, 0usize) })?;
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        check(unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } as libc::c_long)?;
        Ok(())
    })();
    let result = seized.map(|()| probe(pid));
    kill();
    result
}

/// `PTRACE_SETOPTIONS` on a traced, stopped thread.
#[doc(alias = "PTRACE_SETOPTIONS")]
pub fn ptrace_set_options(pid: i32, options: libc::c_int) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0usize, options as usize) }).map(|_| ())
}

/// `PTRACE_SECCOMP_GET_FILTER` for the first filter: its length in instructions.
#[doc(alias = "PTRACE_SECCOMP_GET_FILTER")]
pub fn ptrace_seccomp_filter_length(pid: i32) -> io::Result<i64> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    // SAFETY: a null buffer asks only for the length.
    check(unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0usize, 0usize) })
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` of a traced, stopped thread.
#[doc(alias = "PTRACE_GET_RSEQ_CONFIGURATION")]
pub fn ptrace_rseq_configuration(pid: i32) -> io::Result<()> {
    const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
    let mut config = [0u64; 4];
    // SAFETY: config is a 32-byte buffer, the size passed.
    check(unsafe { libc::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, 32usize, config.as_mut_ptr()) }).map(|_| ())
}

/// The AIO ring of a fresh `io_setup` moved with mremap, then used through its new
/// address with `io_getevents` (the kernel must follow the move).
#[doc(alias = "io_setup")]
pub fn aio_ring_follows_mremap() -> Result<(), String> {
    let mut context: libc::c_ulong = 0;
    // SAFETY: context is a valid out-pointer for the ring address.
    check(unsafe { libc::syscall(libc::SYS_io_setup, 16, &mut context as *mut libc::c_ulong) })
        .map_err(|e| format!("io_setup: {e}"))?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("read /proc/self/maps: {e}"))?;
    let length = maps.lines().find_map(|line| {
        let (range, rest) = line.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
        (start == context as u64 && rest.contains("/[aio]")).then_some((end - start) as usize)
    });
    let destroy = |ctx: libc::c_ulong| {
        // SAFETY: ctx is the ring's current address; destroying it unmaps it.
        unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    };
    let Some(length) = length else {
        destroy(context);
        return Err("no [aio] mapping at the ring's address".into());
    };
    // SAFETY: a fresh private anonymous mapping nothing else uses.
    let target = unsafe {
        libc::mmap(std::ptr::null_mut(), length, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if target == libc::MAP_FAILED {
        destroy(context);
        return Err(format!("mmap: {}", io::Error::last_os_error()));
    }
    // SAFETY: moves the ring (ours, `length` bytes) over the mapping we just made.
    let moved = unsafe {
        libc::mremap(context as *mut libc::c_void, length, length, libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE, target)
    };
    if moved == libc::MAP_FAILED {
        let error = io::Error::last_os_error();
        destroy(context);
        // SAFETY: our own mapping.
        unsafe { libc::munmap(target, length) };
        return Err(format!("mremap the ring: {error}"));
    }
    let moved = moved as libc::c_ulong;
    // SAFETY: min_nr 0 with no events buffer and no timeout returns at once.
    let events = unsafe { libc::syscall(libc::SYS_io_getevents, moved, 0, 1, 0usize, 0usize) };
    let error = io::Error::last_os_error();
    destroy(moved);
    if events < 0 {
        return Err(format!("io_getevents on the moved ring: {error}"));
    }
    Ok(())
}

/// `timerfd_create` + `TFD_IOC_SET_TICKS` (which needs CONFIG_CHECKPOINT_RESTORE).
#[doc(alias = "TFD_IOC_SET_TICKS")]
pub fn timerfd_set_ticks() -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let timer = owned(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) } as libc::c_long)?;
    let ticks: u64 = 1;
    let request = HostArch::ioctl_write(b'T', 0, 8);
    // SAFETY: the request reads one u64, which `ticks` is.
    check(unsafe { libc::ioctl(timer.as_raw_fd(), request as _, &ticks as *const u64) } as libc::c_long).map(|_| ())
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)`: the size of struct prctl_mm_map.
#[doc(alias = "PR_SET_MM_MAP_SIZE")]
pub fn prctl_mm_map_size() -> io::Result<u32> {
    let mut size: libc::c_uint = 0;
    // SAFETY: size is a valid out-pointer for an unsigned int.
    check(unsafe { libc::prctl(libc::PR_SET_MM, libc::PR_SET_MM_MAP_SIZE, &mut size as *mut libc::c_uint, 0, 0) } as libc::c_long)?;
    Ok(size)
}

/// `userfaultfd(O_CLOEXEC|O_NONBLOCK)` + `UFFDIO_API`: the features the kernel offers.
#[doc(alias = "UFFDIO_API")]
pub fn userfaultfd_features() -> io::Result<u64> {
    // SAFETY: plain integer arguments.
    let uffd = owned(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // struct uffdio_api { u64 api; u64 features; u64 ioctls; }
    let mut api = [0xAAu64, 0, 0];
    let request = HostArch::ioctl_read_write(0xAA, 0x3F, 24);
    // SAFETY: the request reads and writes the 24-byte struct `api` is.
    check(unsafe { libc::ioctl(uffd.as_raw_fd(), request as _, api.as_mut_ptr()) } as libc::c_long)?;
    Ok(api[1])
}

/// A socket of `domain` and `kind`.
pub fn socket(domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) } as libc::c_long)
}

/// An ioctl on `fd` that takes no argument and returns a new fd (SIOCGSKNS,
/// SIOCUNIXFILE).
pub fn ioctl_new_fd(fd: &OwnedFd, request: libc::c_ulong) -> io::Result<OwnedFd> {
    // SAFETY: these requests take no argument.
    owned(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, 0usize) } as libc::c_long)
}

/// `getsockopt` of an int option.
pub fn socket_option(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and length are valid out-pointers of the sizes given.
    check(unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut libc::c_int).cast(), &mut length) } as libc::c_long)?;
    Ok(value)
}

/// `setsockopt` of an int option.
pub fn set_socket_option(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: value is an int and the length says so.
    check(unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as _)
    } as libc::c_long)
    .map(|_| ())
}

/// Binds a unix stream socket to `path`.
pub fn bind_unix(socket: &OwnedFd, path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= address.sun_path.len() {
        return Err(io::Error::other("socket path too long"));
    }
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: address is a valid sockaddr_un and its size is passed.
    check(unsafe {
        libc::bind(socket.as_raw_fd(), (&address as *const libc::sockaddr_un).cast(), std::mem::size_of::<libc::sockaddr_un>() as _)
    } as libc::c_long)
    .map(|_| ())
}

/// Sends one netlink request and returns the replies' bytes (until NLMSG_DONE, an
/// error, or a reply without NLM_F_MULTI).
pub fn netlink_exchange(protocol: libc::c_int, request: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let socket = socket(libc::AF_NETLINK, libc::SOCK_RAW, protocol)?;
    // SAFETY: request is a valid buffer of its length; the kernel is the peer (no address).
    check(unsafe { libc::send(socket.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } as libc::c_long)?;
    let mut replies = Vec::new();
    let mut buffer = vec![0u8; 65536];
    for _ in 0..64 {
        // SAFETY: buffer is valid for its length.
        let got = check(unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) } as libc::c_long)? as usize;
        let mut at = 0;
        let mut done = false;
        while at + 16 <= got {
            let length = u32::from_ne_bytes(buffer[at..at + 4].try_into().expect("4 bytes")) as usize;
            if length < 16 || at + length > got {
                break;
            }
            let message = buffer[at..at + length].to_vec();
            let kind = u16::from_ne_bytes(message[4..6].try_into().expect("2 bytes"));
            let flags = u16::from_ne_bytes(message[6..8].try_into().expect("2 bytes"));
            done |= kind == libc::NLMSG_DONE as u16 || kind == libc::NLMSG_ERROR as u16 || flags & libc::NLM_F_MULTI as u16 == 0;
            replies.push(message);
            at += (length + 3) & !3;
        }
        if done {
            break;
        }
    }
    Ok(replies)
}

/// `kcmp(self, self, KCMP_EPOLL_TFD, ...)`: an eventfd watched by an epoll compared
/// with itself.
#[doc(alias = "KCMP_EPOLL_TFD")]
pub fn kcmp_epoll_target() -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let epoll = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long)?;
    // SAFETY: plain integer arguments.
    let event = owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) } as libc::c_long)?;
    let mut watch = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0 };
    // SAFETY: watch is a valid epoll_event.
    check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, event.as_raw_fd(), &mut watch) } as libc::c_long)?;
    // struct kcmp_epoll_slot { u32 efd; u32 tfd; u32 toff; }
    let slot = [epoll.as_raw_fd() as u32, event.as_raw_fd() as u32, 0];
    // SAFETY: getpid takes nothing.
    let pid = unsafe { libc::getpid() };
    const KCMP_EPOLL_TFD: libc::c_long = 7;
    // SAFETY: slot is the 12-byte struct the call reads.
    let same = check(unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, event.as_raw_fd(), slot.as_ptr()) })?;
    if same != 0 {
        return Err(io::Error::other(format!("kcmp says a file differs from itself ({same})")));
    }
    Ok(())
}

/// `clone3` with `set_tid` = crust's own pid: a kernel with set_tid refuses it with
/// EEXIST (that pid is taken) before creating anything. Returns the error.
#[doc(alias = "clone3")]
pub fn clone3_with_busy_tid() -> io::Error {
    // SAFETY: getpid takes nothing.
    let own: [libc::pid_t; 1] = [unsafe { libc::getpid() }];
    // struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1, 80 bytes).
    let mut args = [0u64; 10];
    args[4] = libc::SIGCHLD as u64; // exit_signal
    args[8] = own.as_ptr() as u64; // set_tid
    args[9] = 1; // set_tid_size
    // SAFETY: args is the 80-byte struct with its size passed, set_tid points to one
    // pid; if a child were created anyway it exits at once.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, args.as_ptr(), 80usize) };
    if ret == 0 {
        // SAFETY: in a child that must not run on.
        unsafe { libc::_exit(0) };
    }
    if ret > 0 {
        // SAFETY: reaps the child just made.
        unsafe { libc::waitpid(ret as i32, std::ptr::null_mut(), 0) };
        return io::Error::other("clone3 created a process with a taken pid");
    }
    io::Error::last_os_error()
}

/// `pidfd_open(self)` then `pidfd_getfd` of one of crust's own fds.
#[doc(alias = "pidfd_getfd")]
pub fn pidfd_getfd_own() -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: getpid takes nothing; pidfd_open takes integers.
    let pidfd = owned(unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) })?;
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), null.as_raw_fd(), 0) }).map(drop)
}

/// `memfd_create("crust-check", MFD_HUGETLB)`.
#[doc(alias = "memfd_create")]
pub fn memfd_hugetlb() -> io::Result<()> {
    let name = CString::new("crust-check").expect("no NUL");
    // SAFETY: name is a valid C string.
    owned(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_HUGETLB) } as libc::c_long).map(drop)
}

/// `move_mount` with MOVE_MOUNT_SET_GROUP and empty paths: a kernel that knows the
/// flag fails on the paths (ENOENT), one that does not fails on the flag (EINVAL).
#[doc(alias = "move_mount")]
pub fn move_mount_set_group_error() -> io::Error {
    const MOVE_MOUNT_SET_GROUP: libc::c_uint = 0x100;
    let empty = CString::new("").expect("no NUL");
    // SAFETY: two valid empty C strings; no mount is moved with them.
    unsafe { libc::syscall(libc::SYS_move_mount, -1, empty.as_ptr(), -1, empty.as_ptr(), MOVE_MOUNT_SET_GROUP) };
    io::Error::last_os_error()
}

/// `openat2(AT_FDCWD, "/", {O_RDONLY|O_CLOEXEC})`.
#[doc(alias = "openat2")]
pub fn openat2_root() -> io::Result<()> {
    let root = CString::new("/").expect("no NUL");
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how = [(libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0, 0];
    // SAFETY: root is a valid C string, how the 24-byte struct with its size passed.
    owned(unsafe { libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, root.as_ptr(), how.as_ptr(), 24usize) }).map(drop)
}

/// `PAGEMAP_SCAN` on /proc/self/pagemap over one page of crust's own memory, asking
/// for pages in any of the `categories`.
#[doc(alias = "PAGEMAP_SCAN")]
pub fn pagemap_scan(categories: u64) -> io::Result<u64> {
    let pagemap = std::fs::File::open("/proc/self/pagemap")?;
    let page = page_size();
    let buffer = vec![1u8; page * 2];
    let start = (buffer.as_ptr() as usize).next_multiple_of(page) as u64;
    // struct page_region { u64 start; u64 end; u64 categories; }
    let mut regions = [0u64; 3];
    // struct pm_scan_arg: size, flags, start, end, walk_end, vec, vec_len, max_pages,
    // category_inverted, category_mask, category_anyof_mask, return_mask.
    let mut arg = [96, 0, start, start + page as u64, 0, regions.as_mut_ptr() as u64, 1, 0, 0, 0, categories, categories];
    let request = HostArch::ioctl_read_write(b'f', 16, 96);
    // SAFETY: arg is the 96-byte struct, its vec one 24-byte region; the range is our
    // own buffer, alive across the call.
    let found = check(unsafe { libc::ioctl(pagemap.as_raw_fd(), request as _, arg.as_mut_ptr()) } as libc::c_long)?;
    drop(buffer);
    Ok(found as u64)
}

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET)` (Linux 6.17).
#[doc(alias = "PR_TIMER_CREATE_RESTORE_IDS")]
pub fn timer_restore_ids() -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::prctl(77, 2, 0, 0, 0) } as libc::c_long).map(|_| ())
}

/// Whether `arch_prctl(option, address)` (ARCH_MAP_VDSO_32/64, x86 only) maps a vDSO,
/// tried in a child that first unmaps its own vDSO and vvar (the kernel maps only one).
/// `None` where the architecture has no arch_prctl.
#[doc(alias = "ARCH_MAP_VDSO_64")]
pub fn arch_map_vdso(option: u64) -> Option<io::Result<bool>> {
    let number = HostArch::syscall_number(Sys::ArchPrctl)?;
    let maps = match std::fs::read_to_string("/proc/self/maps") {
        Ok(maps) => maps,
        Err(error) => return Some(Err(error)),
    };
    let special: Vec<(usize, usize)> = maps
        .lines()
        .filter(|l| l.ends_with("[vdso]") || l.ends_with("[vvar]") || l.ends_with("[vvar_vclock]"))
        .filter_map(|l| {
            let (start, end) = l.split_once(' ')?.0.split_once('-')?;
            Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
        })
        .collect();
    Some(probe_in_child(move || {
        // SAFETY: in the child only; it unmaps its own vDSO and vvar and from then on
        // makes raw system calls only (no vDSO call) until it exits. The free address
        // comes from a mapping it made and removed.
        unsafe {
            for (start, end) in &special {
                libc::munmap(*start as *mut libc::c_void, end - start);
            }
            let free = libc::mmap(std::ptr::null_mut(), 1 << 20, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            if free == libc::MAP_FAILED {
                return false;
            }
            libc::munmap(free, 1 << 20);
            libc::syscall(number as libc::c_long, option, free as u64) >= 0
        }
    }))
}

/// `unshare(CLONE_NEWNS)` and making every mount private: a mount namespace of the
/// calling (child) process's own, where probe mounts vanish with it.
#[doc(alias = "unshare")]
pub fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) } as libc::c_long)?;
    let root = CString::new("/").expect("no NUL");
    // SAFETY: root is a valid C string; null source, type and data are allowed here.
    check(unsafe {
        libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null())
    } as libc::c_long)
    .map(|_| ())
}

/// `mount(source, target, fstype, 0, data)`.
pub fn mount(source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::other("NUL in a mount argument"));
    let (source, target, fstype, data) = (c(source.as_bytes())?, c(target.as_os_str().as_bytes())?, c(fstype.as_bytes())?, c(data.as_bytes())?);
    // SAFETY: four valid C strings.
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, data.as_ptr().cast()) } as libc::c_long)
        .map(|_| ())
}

/// A pipe (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0; 2];
    // SAFETY: ends is a valid out-array of two ints.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: the kernel returned these two fds to us.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

/// `getpgrp()`.
pub fn process_group() -> i32 {
    // SAFETY: takes nothing.
    unsafe { libc::getpgrp() }
}

/// Maps `file` shared and returns the mapping's address (left mapped: for probes in a
/// child that exits).
#[doc(alias = "mmap")]
pub fn map_file(file: &std::fs::File, length: usize) -> io::Result<usize> {
    // SAFETY: a new shared mapping of our own file; nothing aliases it.
    let address = unsafe { libc::mmap(std::ptr::null_mut(), length, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
    if address == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(address as usize)
}

/// The signals that stop a dump or restore cleanly.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn on_stop_signal(signal: libc::c_int) {
    crust_engine::interrupt::request_stop(signal);
}

/// `sigaction` of SIGTERM, SIGINT and SIGHUP: each asks the dump or restore in progress
/// to stop and undo what it did (`crust_engine::interrupt`), instead of killing crust
/// halfway. SA_RESTART: the syscalls the engine is in finish (its waits are short and
/// it looks at the request between steps), so the undoing itself is never cut short by
/// a second signal.
#[doc(alias = "sigaction")]
pub fn catch_stop_signals() -> io::Result<()> {
    for signal in STOP_SIGNALS {
        // SAFETY: `action` is fully initialised (zeroed, then handler, flags and an empty
        // mask); the handler makes one atomic store, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        check(rc as libc::c_long)?;
    }
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP back to their default action (once the engine is done:
/// a signal then ends crust as usual, and a restored tree runs on).
#[doc(alias = "signal")]
pub fn default_stop_signals() {
    for signal in STOP_SIGNALS {
        // SAFETY: SIG_DFL takes no handler code; the call only changes this process's
        // disposition.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// `fork()` then, in the child, `setsid()` and stdin/stdout/stderr on /dev/null: the
/// background copy of a server (`page-server --daemon`, `lazy-pages --daemon`). The
/// child's pid in the parent, `None` in the child. Only while single-threaded.
#[doc(alias = "fork")]
pub fn fork_daemon() -> io::Result<Option<i32>> {
    single_threaded()?;
    // SAFETY: crust has one thread here (checked above), so the child may run any code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
        nix::unistd::ForkResult::Child => {
            nix::unistd::setsid()?;
            let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
            nix::unistd::dup2_stdin(&null)?;
            nix::unistd::dup2_stdout(&null)?;
            nix::unistd::dup2_stderr(&null)?;
            Ok(None)
        }
    }
}

/// `--status-fd N`: writes one zero byte to inherited fd N and closes it (the server is
/// ready).
pub fn report_ready(fd: RawFd) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: fstat only reads the fd's metadata; a number that is not open fails.
    nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })?;
    // SAFETY: the fd is open and was inherited for this one use: it gets one owner.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::Write::write_all(&mut file, &[0])
}
