//! Raw kernel requests the engine needs that std does not offer: ptrace, waitpid,
//! clone3 with set_tid, prlimit, and a few process-wide calls used by the restore child.
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call, and every size passed is that memory's size. Errors come back
//! as `std::io::Error` from errno.
#![allow(unsafe_code)]

use std::io;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `PTRACE_SEIZE`: attach to `tid` without stopping it.
#[doc(alias = "PTRACE_SEIZE")]
pub fn seize_thread(tid: i32, options: libc::c_int) -> io::Result<()> {
    // SAFETY: PTRACE_SEIZE takes no pointers; options travel in the data word.
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, options as usize) })?;
    Ok(())
}

/// `PTRACE_INTERRUPT`: stop a seized thread.
#[doc(alias = "PTRACE_INTERRUPT")]
pub fn interrupt_thread(tid: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) })?;
    Ok(())
}

/// `PTRACE_CONT` with `signal` delivered (0 for none).
#[doc(alias = "PTRACE_CONT")]
pub fn continue_thread(tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers; the signal travels in the data word.
    check(unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0usize, signal as usize) })?;
    Ok(())
}

/// `PTRACE_SYSCALL`: resume until the next syscall entry or exit.
#[doc(alias = "PTRACE_SYSCALL")]
pub fn continue_to_syscall(tid: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0usize, 0usize) })?;
    Ok(())
}

/// `PTRACE_SETOPTIONS` for a thread whose remaining life is its exit: stop at the exit
/// (PTRACE_O_TRACEEXIT), syscall stops marked, killed if crust dies.
pub fn add_trace_exit(tid: i32) -> io::Result<()> {
    let options = libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACEEXIT;
    // SAFETY: no pointers; the options travel in the data word.
    check(unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, tid, 0usize, options as usize) })?;
    Ok(())
}

/// `PTRACE_DETACH` with `signal` delivered (0 for none).
#[doc(alias = "PTRACE_DETACH")]
pub fn detach_thread(tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, signal as usize) })?;
    Ok(())
}

/// `PTRACE_GETSIGMASK`: the thread's blocked-signal mask.
#[doc(alias = "PTRACE_GETSIGMASK")]
pub fn read_sigmask(tid: i32) -> io::Result<u64> {
    let mut mask = 0u64;
    // SAFETY: the kernel writes 8 bytes (the size passed) into `mask`.
    check(unsafe { libc::ptrace(libc::PTRACE_GETSIGMASK, tid, 8usize, &mut mask as *mut u64) })?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK`: sets the thread's blocked-signal mask.
#[doc(alias = "PTRACE_SETSIGMASK")]
pub fn write_sigmask(tid: i32, mask: u64) -> io::Result<()> {
    // SAFETY: the kernel reads 8 bytes (the size passed) from `mask`.
    check(unsafe { libc::ptrace(libc::PTRACE_SETSIGMASK, tid, 8usize, &mask as *const u64) })?;
    Ok(())
}

/// Size of a kernel siginfo.
pub const SIGINFO_SIZE: usize = 128;

/// `PTRACE_PEEKSIGINFO`: the pending signals of a thread (`shared`: of its process) as raw
/// siginfo records, without dequeuing them.
#[doc(alias = "PTRACE_PEEKSIGINFO")]
pub fn peek_pending_signals(tid: i32, shared: bool) -> io::Result<Vec<[u8; SIGINFO_SIZE]>> {
    #[repr(C)]
    struct PeekArgs {
        off: u64,
        flags: u32,
        nr: i32,
    }
    const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
    const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; SIGINFO_SIZE]; 32];
        let args = PeekArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: buf.len() as i32,
        };
        // SAFETY: args is a valid ptrace_peeksiginfo_args; buf holds `nr` siginfo records.
        let n = check(unsafe {
            libc::ptrace(PTRACE_PEEKSIGINFO, tid, &args as *const PeekArgs, buf.as_mut_ptr())
        })? as usize;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// How a waited-for thread changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEvent {
    /// Exited with a status.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// Stopped: the raw status word (signal in bits 8-15, ptrace event in bits 16-23).
    Stopped { signal: i32, event: i32 },
}

/// `waitpid(tid, __WALL)`: waits for the next change of a traced or child thread.
#[doc(alias = "waitpid")]
pub fn wait_thread(tid: i32) -> io::Result<WaitEvent> {
    let mut status = 0;
    loop {
        // SAFETY: the kernel writes the status word into `status`.
        let rc = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        break;
    }
    Ok(decode_status(status))
}

/// `waitpid(-1, __WALL)`: waits for the next change of any traced task or child.
pub fn wait_any() -> io::Result<(i32, WaitEvent)> {
    let mut status = 0;
    let pid = loop {
        // SAFETY: the kernel writes the status word into `status`.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        break rc;
    };
    Ok((pid, decode_status(status)))
}

fn decode_status(status: i32) -> WaitEvent {
    if libc::WIFEXITED(status) {
        WaitEvent::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        WaitEvent::Signaled(libc::WTERMSIG(status))
    } else {
        WaitEvent::Stopped { signal: (status >> 8) & 0xff, event: (status >> 16) & 0xff }
    }
}

/// `kill(pid, signal)`.
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::kill(pid, signal) } as libc::c_long)?;
    Ok(())
}

/// `prlimit64(pid, resource, NULL, &old)`: reads one resource limit of another process.
#[doc(alias = "prlimit64")]
pub fn read_rlimit(pid: i32, resource: u32) -> io::Result<(u64, u64)> {
    let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: new limit is NULL; the kernel writes the old one into `old`.
    check(unsafe { libc::prlimit64(pid, resource as _, std::ptr::null(), &mut old) } as libc::c_long)?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// `clone3` with `set_tid = [pid]`: forks this process into a child that gets exactly
/// `pid`. Returns 0 in the child and the child's pid in the parent.
///
/// The caller must be single-threaded: the child continues on a copy of this stack.
#[doc(alias = "clone3")]
pub fn fork_with_pid(pid: i32) -> io::Result<i32> {
    clone_fork(0, pid)
}

/// The restored root's fork: `pid` (1 in a new pid namespace when `new_pid_ns`), in a
/// new IPC namespace when `new_ipc_ns`. Returns 0 in the child and its pid (on this
/// host) in the parent.
pub fn fork_root(pid: i32, new_pid_ns: bool, new_ipc_ns: bool) -> io::Result<i32> {
    let mut flags = 0u64;
    if new_pid_ns {
        flags |= libc::CLONE_NEWPID as u64;
    }
    if new_ipc_ns {
        flags |= libc::CLONE_NEWIPC as u64;
    }
    clone_fork(flags, if new_pid_ns { 1 } else { pid })
}

fn clone_fork(flags: u64, pid: i32) -> io::Result<i32> {
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
    let tids = [pid as libc::pid_t];
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM the child
    // gets its own copy of memory and returns here like fork().
    let rc = unsafe {
        libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    check(rc).map(|v| v as i32)
}

/// Blocks every signal in the calling thread (`rt_sigprocmask(SIG_SETMASK, all)`).
pub fn block_all_signals() -> io::Result<()> {
    // SAFETY: set is a valid sigset_t filled by sigfillset; old set is not wanted.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        check(libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) as libc::c_long)?;
    }
    Ok(())
}

/// `mmap(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)`.
pub fn map_anonymous_at(addr: u64, len: usize, prot: i32) -> io::Result<()> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory this
    // program uses can change under it.
    let ptr = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if ptr as u64 != addr {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "mapping landed elsewhere"));
    }
    Ok(())
}

/// Copies `bytes` to `addr` in this process, a range mapped writable by
/// [`map_anonymous_at`].
///
/// # Safety
/// `addr..addr+bytes.len()` must be a writable mapping that nothing else refers to.
pub unsafe fn copy_to_address(addr: u64, bytes: &[u8]) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) }
}

/// Reserves `addr..addr+len` (inaccessible, no memory behind it) so that nothing else
/// is mapped there; never over an existing mapping.
pub fn reserve_at(addr: u64, len: usize) -> io::Result<()> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory this
    // program uses can change under it.
    let ptr = unsafe { libc::mmap(addr as *mut libc::c_void, len, libc::PROT_NONE, flags, -1, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if ptr as u64 != addr {
        // SAFETY: ptr..ptr+len was just mapped by this call and nothing refers to it.
        unsafe { libc::munmap(ptr, len) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(())
}

/// Drops a reservation made by [`reserve_at`].
pub fn release_reservation(addr: u64, len: usize) {
    // SAFETY: the range is a PROT_NONE reservation of this program that nothing uses.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

/// Maps private anonymous read-write memory at exactly `addr`, over (part of) a
/// reservation made by [`reserve_at`] (inherited through fork).
pub fn map_private_anon_over_reservation(addr: u64, len: usize, noreserve: bool) -> io::Result<()> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | if noreserve { libc::MAP_NORESERVE } else { 0 };
    // SAFETY: the caller names a range of the premap reservation, which holds no memory
    // anything in this program refers to; MAP_FIXED replaces only that.
    let ptr = unsafe { libc::mmap(addr as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `madvise(addr, len, advice)` on memory this program mapped for a restored process.
pub fn advise(addr: u64, len: usize, advice: i32) -> io::Result<()> {
    // SAFETY: the advice applies to the restored process's memory crust mapped (premap
    // slots), which no Rust value refers to.
    check(unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) } as libc::c_long).map(|_| ())
}

/// The `len` bytes at `addr` as a slice.
///
/// # Safety
/// `addr..addr+len` must be mapped readable and writable in this process for as long as
/// the slice lives, and nothing else may access it meanwhile.
pub unsafe fn memory_at(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// `mprotect(addr, len, prot)`.
pub fn protect(addr: u64, len: usize, prot: i32) -> io::Result<()> {
    // SAFETY: only changes protections of a range this program mapped for itself.
    check(unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) } as libc::c_long)?;
    Ok(())
}

/// `setsid()`.
pub fn new_session() -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::setsid() } as libc::c_long)?;
    Ok(())
}

/// `setpgid(0, pgid)`.
pub fn set_process_group(pgid: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::setpgid(0, pgid) } as libc::c_long)?;
    Ok(())
}

/// `setpgid(pid, pgid)` on a child that has not exec'd.
pub fn set_child_process_group(pid: i32, pgid: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::setpgid(pid, pgid) } as libc::c_long)?;
    Ok(())
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphaned descendants come to this process.
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } as libc::c_long)?;
    Ok(())
}

/// `umask(mask)`.
pub fn set_umask(mask: u32) {
    // SAFETY: no pointers; umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// `dup2(old, new)` then sets or clears FD_CLOEXEC on `new`.
pub fn place_fd(old: i32, new: i32, cloexec: bool) -> io::Result<()> {
    if old != new {
        // SAFETY: no pointers; both are fd numbers.
        check(unsafe { libc::dup2(old, new) } as libc::c_long)?;
    }
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(new, libc::F_SETFD, if cloexec { libc::FD_CLOEXEC } else { 0 }) }
        as libc::c_long)?;
    Ok(())
}

/// `close(fd)`, errors ignored.
pub fn close_fd(fd: i32) {
    // SAFETY: no pointers; closing an fd this process owns.
    unsafe { libc::close(fd) };
}

/// `fcntl(fd, F_DUPFD, min)`: a copy of `fd` at the lowest free number ≥ `min`.
pub fn dup_at_least(fd: i32, min: i32) -> io::Result<i32> {
    // SAFETY: no pointers.
    check(unsafe { libc::fcntl(fd, libc::F_DUPFD, min) } as libc::c_long).map(|v| v as i32)
}

/// `kcmp(pid1, pid2, KCMP_FILE, fd1, fd2)` as an order: equal when both fds share one
/// open file description; otherwise the kernel's (stable) order of the two descriptions.
pub fn order_file_descriptions(pid1: i32, fd1: u32, pid2: i32, fd2: u32) -> io::Result<std::cmp::Ordering> {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: KCMP_FILE takes no pointers.
    let rc = check(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1 as libc::c_long, fd2 as libc::c_long) })?;
    Ok(match rc {
        0 => std::cmp::Ordering::Equal,
        1 => std::cmp::Ordering::Less,
        _ => std::cmp::Ordering::Greater,
    })
}

/// `_exit(code)`: leaves without running destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: terminates the process.
    unsafe { libc::_exit(code) }
}

/// `lseek(fd, pos, SEEK_SET)`.
pub fn seek_to(fd: i32, pos: u64) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_SET) } as libc::c_long)?;
    Ok(())
}

/// `open(path, flags, mode)` returning the raw fd.
pub fn open_raw(path: &std::path::Path, flags: i32, mode: u32) -> io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: c_path is a NUL-terminated string alive for the call.
    check(unsafe { libc::open(c_path.as_ptr(), flags, mode as libc::c_uint) } as libc::c_long)
        .map(|v| v as i32)
}

/// `prctl(PR_SET_NAME, name)`.
pub fn set_comm(name: &str) -> io::Result<()> {
    let mut buf = [0u8; 16];
    let len = name.len().min(15);
    buf[..len].copy_from_slice(&name.as_bytes()[..len]);
    // SAFETY: buf is NUL-terminated and 16 bytes, what PR_SET_NAME reads at most.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr(), 0, 0, 0) } as libc::c_long)?;
    Ok(())
}

/// `chroot(path)`.
pub fn change_root(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: c_path is NUL-terminated and alive for the call.
    check(unsafe { libc::chroot(c_path.as_ptr()) } as libc::c_long)?;
    Ok(())
}

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, ...)` (Linux 6.17): while on, `timer_create`
/// takes the timer id to use from its third argument.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const PR_TIMER_CREATE_RESTORE_IDS_GET: u64 = 2;

/// Whether this kernel lets `timer_create` restore a given timer id.
pub fn timer_restore_ids_supported() -> bool {
    // SAFETY: the GET form takes no pointers and only reads the caller's mode.
    unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS as libc::c_int, PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0) >= 0 }
}

/// The tick (µs) the kernel adds to a CPU-time itimer's value when it is set
/// (ITIMER_VIRTUAL, ITIMER_PROF: "never fire early"), so a restored timer is set that
/// much shorter. Measured once on crust's own ITIMER_PROF and rounded to 1/HZ for
/// HZ = 100, 250, 300 or 1000; 0 if it cannot be measured.
pub fn cpu_itimer_tick_us() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        let second = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: libc::timeval { tv_sec: 1, tv_usec: 0 } };
        let off = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: libc::timeval { tv_sec: 0, tv_usec: 0 } };
        let mut now = off;
        // SAFETY: the itimervals live across the calls; crust's own ITIMER_PROF is set
        // for a second of CPU time and cleared right after, before it could fire.
        let ok = unsafe {
            libc::setitimer(libc::ITIMER_PROF, &second, std::ptr::null_mut()) == 0
                && libc::getitimer(libc::ITIMER_PROF, &mut now) == 0
                && libc::setitimer(libc::ITIMER_PROF, &off, std::ptr::null_mut()) == 0
        };
        if !ok {
            return 0;
        }
        let excess = (now.it_value.tv_sec * 1_000_000 + now.it_value.tv_usec - 1_000_000).max(0) as u64;
        [10_000u64, 4_000, 3_333, 1_000].into_iter().min_by_key(|tick| tick.abs_diff(excess)).filter(|_| excess > 0).unwrap_or(0)
    })
}

/// The system page size (`sysconf(_SC_PAGESIZE)`).
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)`: the size of `struct prctl_mm_map` the kernel
/// expects, or `None` without PR_SET_MM_MAP.
pub fn prctl_mm_map_size() -> Option<u32> {
    let mut size: u32 = 0;
    // SAFETY: the kernel writes one u32 into `size`.
    let rc = unsafe { libc::prctl(libc::PR_SET_MM, libc::PR_SET_MM_MAP_SIZE, &mut size as *mut u32, 0, 0) };
    (rc == 0).then_some(size)
}

/// A thread's rseq registration, as PTRACE_GET_RSEQ_CONFIGURATION reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfig {
    pub pointer: u64,
    pub size: u32,
    pub flags: u32,
    pub signature: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION`: the rseq area a stopped tracee registered, if any.
#[doc(alias = "PTRACE_GET_RSEQ_CONFIGURATION")]
pub fn read_rseq_config(tid: i32) -> io::Result<Option<RseqConfig>> {
    const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
    #[repr(C)]
    #[derive(Default)]
    struct Raw {
        pointer: u64,
        size: u32,
        signature: u32,
        flags: u32,
        pad: u32,
    }
    let mut raw = Raw::default();
    // SAFETY: the kernel writes at most the size passed into `raw`.
    check(unsafe {
        libc::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, std::mem::size_of::<Raw>(), &mut raw as *mut Raw)
    })?;
    Ok((raw.pointer != 0).then_some(RseqConfig {
        pointer: raw.pointer,
        size: raw.size,
        flags: raw.flags,
        signature: raw.signature,
    }))
}

/// `PTRACE_O_SUSPEND_SECCOMP`: while traced, the tracee's seccomp filters and strict
/// mode do not apply (needs CAP_SYS_ADMIN), so injected syscalls are not filtered.
pub const PTRACE_O_SUSPEND_SECCOMP: libc::c_int = 0x0020_0000;

/// The `index`-th seccomp filter of a stopped tracee (0 is the oldest) as raw
/// `struct sock_filter` instructions; `None` past the newest.
#[doc(alias = "PTRACE_SECCOMP_GET_FILTER")]
pub fn read_seccomp_filter(tid: i32, index: u64) -> io::Result<Option<Vec<u8>>> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    const INSN_BYTES: usize = 8;
    // SAFETY: with a null buffer the kernel only returns the instruction count.
    let count = match check(unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index as usize, 0usize) }) {
        Ok(count) => count as usize,
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(error) => return Err(error),
    };
    // BPF_MAXINSNS is 4096: a bigger count is not a filter.
    if count > 4096 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("seccomp filter of {count} instructions")));
    }
    let mut buf = vec![0u8; count * INSN_BYTES];
    // SAFETY: the kernel writes `count` 8-byte instructions, the size of `buf`.
    let written = check(unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, index as usize, buf.as_mut_ptr()) })? as usize;
    if written != count {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "seccomp filter changed size while read"));
    }
    Ok(Some(buf))
}

/// Unregisters the calling thread's glibc rseq area, which the restorer is about to
/// unmap (the kernel would fault on it at the next return to user space).
pub fn unregister_own_rseq(thread_pointer: u64) -> io::Result<()> {
    extern "C" {
        static __rseq_offset: isize;
        static __rseq_size: u32;
    }
    // SAFETY: glibc (2.35+) exports these read-only after startup.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return Ok(());
    }
    let area = (thread_pointer as i64 + offset as i64) as u64;
    const RSEQ_FLAG_UNREGISTER: u64 = 1;
    const RSEQ_SIG: u64 = <crust_arch::HostArch as crust_arch::Abi>::RSEQ_SIG as u64;
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    // glibc registers 32 bytes; newer ones advertise a smaller feature size.
    for len in [32u64, size as u64] {
        // SAFETY: unregistering takes no memory from us; the kernel only compares args.
        let rc = unsafe { libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) };
        if rc == 0 {
            return Ok(());
        }
        last = io::Error::last_os_error();
    }
    Err(last)
}

/// `get_robust_list(tid)`: the head and length of a thread's robust futex list.
#[doc(alias = "get_robust_list")]
pub fn read_robust_list(tid: i32) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: the kernel writes one pointer into `head` and one size into `len`.
    check(unsafe { libc::syscall(libc::SYS_get_robust_list, tid, &mut head as *mut u64, &mut len as *mut usize) })?;
    Ok((head, len as u64))
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (crust holds every
/// description of a restored tree at once).
pub fn raise_nofile_limit() -> io::Result<()> {
    let mut limit = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: the kernel writes the current limit into `limit`, then reads the new one.
    unsafe {
        check(libc::getrlimit64(libc::RLIMIT_NOFILE, &mut limit) as libc::c_long)?;
        limit.rlim_cur = limit.rlim_max;
        check(libc::setrlimit64(libc::RLIMIT_NOFILE, &limit) as libc::c_long)?;
    }
    Ok(())
}

/// A new shared anonymous memory object of `size` bytes, as an fd: mapped
/// MAP_SHARED|MAP_ANONYMOUS, reopened through /proc/self/map_files (so areas mapped from
/// it show as `/dev/zero (deleted)` like the original), then unmapped.
pub fn create_shared_anon(size: u64) -> io::Result<i32> {
    let len = size.max(1) as usize;
    // SAFETY: a fresh mapping at an address the kernel picks; nothing else uses it.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = ptr as u64;
    let end = start + (len as u64).div_ceil(page_size()) * page_size();
    let opened = open_raw(std::path::Path::new(&format!("/proc/self/map_files/{start:x}-{end:x}")), libc::O_RDWR, 0);
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(ptr, len) };
    opened
}

/// Dies by `signal` as a process killed by it would: its action reset to the default (Rust
/// starts with SIGPIPE ignored), unblocked, then raised.
pub fn die_by_signal(signal: i32) {
    // SAFETY: sets a default disposition and an empty-but-one mask; no pointers kept.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}
