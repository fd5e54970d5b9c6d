//! Process-wide requests: signals, sessions and groups, forking with a chosen pid
//! (clone3 with set_tid), resource limits, prctls, pidfds.
//!
//! nix covers kill, setsid, setpgid, umask, chroot, sigprocmask, getrlimit/setrlimit,
//! sysconf and the prctls it knows (child subreaper, name). Wrapped here, because nix
//! has no function for them: clone3 (with set_tid, into new namespaces, untraced),
//! prlimit64 of another process, pidfd_open and pidfd_getfd, get_robust_list, rseq,
//! PR_SET_MM_MAP_SIZE and PR_TIMER_CREATE_RESTORE_IDS, setitimer/getitimer, `_exit`
//! (std's `exit` runs atexit handlers), and dying by any signal (nix's `Signal` has no
//! real-time signals).
//!
//! Guarantees: every pointer handed to the kernel points at memory owned by the caller
//! that outlives the call, and every size passed is that memory's size.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::check;

/// `kill(pid, signal)` of one of the standard signals (stop signals, SIGCONT, SIGKILL).
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    let signal = Signal::try_from(signal)?;
    Ok(signal::kill(Pid::from_raw(pid), signal)?)
}

/// `tgkill(pid, tid, signal)`: any signal (real-time ones too) to one thread.
#[doc(alias = "tgkill")]
pub fn signal_thread(pid: i32, tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) })?;
    Ok(())
}

/// A thread's scheduling: its policy (with `SCHED_RESET_ON_FORK` when set), its
/// real-time priority (0 outside SCHED_FIFO and SCHED_RR) and its nice value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduling {
    pub policy: i32,
    pub rt_priority: i32,
    pub nice: i32,
}

/// `sched_getscheduler`, `sched_getparam` and `getpriority(PRIO_PROCESS)` of thread `tid`.
#[doc(alias = "sched_getscheduler")]
pub fn scheduling_of(tid: i32) -> io::Result<Scheduling> {
    // SAFETY: no pointers.
    let policy = check(unsafe { libc::syscall(libc::SYS_sched_getscheduler, tid) })? as i32;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the kernel writes one sched_param into `param`.
    check(unsafe { libc::syscall(libc::SYS_sched_getparam, tid, &mut param as *mut libc::sched_param) })?;
    // The raw call answers 20 - nice (1..40), never a negative number.
    // SAFETY: no pointers.
    let raw = check(unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, tid) })? as i32;
    Ok(Scheduling { policy, rt_priority: param.sched_priority, nice: 20 - raw })
}

/// Gives thread `tid` its nice value, then its policy and real-time priority.
#[doc(alias = "sched_setscheduler")]
pub fn set_scheduling(tid: i32, scheduling: Scheduling) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, tid, scheduling.nice) })?;
    let param = libc::sched_param { sched_priority: scheduling.rt_priority };
    // SAFETY: the kernel reads one sched_param from `param`.
    check(unsafe { libc::syscall(libc::SYS_sched_setscheduler, tid, scheduling.policy, &param as *const libc::sched_param) })?;
    Ok(())
}

/// `membarrier(cmd, 0, 0)` in the calling process.
pub fn membarrier(cmd: u32) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) })?;
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

/// `struct clone_args` of clone3(2), the size the kernel reads (CLONE_ARGS_SIZE_VER2).
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

/// `clone3(args)` without a stack: forks like fork() (0 in the child, its pid in the
/// parent); `set_tid` gives the child that pid.
#[doc(alias = "clone3")]
fn clone_fork(flags: u64, set_tid: Option<i32>) -> io::Result<i32> {
    let tids = [set_tid.unwrap_or(0) as libc::pid_t];
    let args = CloneArgs {
        flags,
        // clone3 takes no exit signal with CLONE_PARENT: the child gets this process's
        // own (the one its parent expects of a child).
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 { 0 } else { libc::SIGCHLD as u64 },
        set_tid: if set_tid.is_some() { tids.as_ptr() as u64 } else { 0 },
        set_tid_size: u64::from(set_tid.is_some()),
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed and `tids` outlives the
    // call; without CLONE_VM the child gets its own copy of memory and returns here
    // like fork().
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    check(rc).map(|v| v as i32)
}

/// `clone3` with `set_tid = [pid]`: forks this process into a child that gets exactly
/// `pid`. Returns 0 in the child and the child's pid in the parent.
///
/// The caller must be single-threaded: the child continues on a copy of this stack.
#[doc(alias = "clone3")]
pub fn fork_with_pid(pid: i32) -> io::Result<i32> {
    clone_fork(0, Some(pid))
}

/// The restored root's fork: `pid` (1 in a new pid namespace when `new_pid_ns`), in a
/// new IPC namespace when `new_ipc_ns`, in the new namespaces of `more` (`CLONE_NEWNS`,
/// `CLONE_NEWUTS`), and with `sibling` a child of this process's parent
/// (CLONE_PARENT). Returns 0 in the child and its pid (on this host) in the parent.
#[doc(alias = "clone3")]
pub fn fork_root(pid: i32, new_pid_ns: bool, new_ipc_ns: bool, more: u64, sibling: bool) -> io::Result<i32> {
    let mut flags = more;
    if sibling {
        flags |= libc::CLONE_PARENT as u64;
    }
    if new_pid_ns {
        flags |= libc::CLONE_NEWPID as u64;
    }
    if new_ipc_ns {
        flags |= libc::CLONE_NEWIPC as u64;
    }
    clone_fork(flags, Some(if new_pid_ns { 1 } else { pid }))
}

/// `clone3(CLONE_UNTRACED)` without a stack: forks like fork() (0 in the child, its pid
/// in the parent), and a tracer of the caller sees nothing of the child (a helper the
/// restored root forks before it is released).
#[doc(alias = "clone3")]
pub fn fork_untraced() -> io::Result<i32> {
    clone_fork(libc::CLONE_UNTRACED as u64, None)
}

/// `pidfd_open(pid, flags)`.
pub fn pidfd_open(pid: i32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags as libc::c_long) })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_open(pid, 0)`; for a thread that is not a leader (the live thread of a process
/// whose leader exited), `pidfd_open(tid, PIDFD_THREAD)`.
pub fn open_pidfd(pid: i32) -> io::Result<OwnedFd> {
    match pidfd_open(pid, 0) {
        // PIDFD_THREAD is O_EXCL (Linux 6.9). A thread that is not a leader gets EINVAL,
        // or ENOENT from 6.15 on.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => pidfd_open(pid, libc::O_EXCL),
        other => other,
    }
}

/// `pidfd_getfd(pidfd, fd, 0)`: a copy (close-on-exec) of another process's fd, sharing
/// its open file description. Needs ptrace access to the process, which the dumper has.
#[doc(alias = "pidfd_getfd")]
pub fn borrow_fd(pid: i32, fd: u32) -> io::Result<OwnedFd> {
    let pidfd = open_pidfd(pid)?;
    // SAFETY: no pointers.
    let copy = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd as libc::c_long, 0) })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(copy as i32) })
}

/// Pidfds of one process that has exited, one per entry of `flags` (PIDFD_NONBLOCK,
/// PIDFD_THREAD), all sharing its inode: of a child forked for them (CLONE_UNTRACED, so a
/// tracer of the caller sees nothing of it), which exits at once and is reaped. The
/// pidfds live in the caller's pid namespace.
pub fn dead_pidfds(flags: &[i32]) -> io::Result<Vec<OwnedFd>> {
    let child = clone_fork(libc::CLONE_UNTRACED as u64, None)?;
    if child == 0 {
        // The child runs on a copy of this stack and calls only _exit.
        exit_now(0);
    }
    let fds = flags.iter().map(|&f| pidfd_open(child, f)).collect::<io::Result<Vec<_>>>();
    let _ = nix::sys::wait::waitpid(Pid::from_raw(child), None);
    fds
}

/// Blocks every signal in the calling thread (`rt_sigprocmask(SIG_SETMASK, all)`).
pub fn block_all_signals() -> io::Result<()> {
    Ok(signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None)?)
}

/// `setsid()`.
pub fn new_session() -> io::Result<()> {
    nix::unistd::setsid()?;
    Ok(())
}

/// `setpgid(0, pgid)`.
pub fn set_process_group(pgid: i32) -> io::Result<()> {
    Ok(nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(pgid))?)
}

/// `getpgid(pid)`.
pub fn process_group_of(pid: i32) -> io::Result<i32> {
    Ok(nix::unistd::getpgid(Some(Pid::from_raw(pid)))?.as_raw())
}

/// `setpgid(pid, pgid)` on a child that has not exec'd.
pub fn set_child_process_group(pid: i32, pgid: i32) -> io::Result<()> {
    Ok(nix::unistd::setpgid(Pid::from_raw(pid), Pid::from_raw(pgid))?)
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphaned descendants come to this process.
pub fn become_child_subreaper() -> io::Result<()> {
    Ok(nix::sys::prctl::set_child_subreaper(true)?)
}

/// `umask(mask)`.
pub fn set_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_retain(mask as libc::mode_t));
}

/// `_exit(code)`: leaves without running destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: terminates the process.
    unsafe { libc::_exit(code) }
}

/// `prctl(PR_SET_NAME, name)` (at most 15 bytes are kept).
pub fn set_comm(name: &str) -> io::Result<()> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.truncate(15);
    bytes.retain(|&b| b != 0);
    let name = CString::new(bytes).map_err(io::Error::other)?;
    Ok(nix::sys::prctl::set_name(&name)?)
}

/// `chroot(path)`.
pub fn change_root(path: &std::path::Path) -> io::Result<()> {
    Ok(nix::unistd::chroot(path)?)
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
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => size as u64,
        _ => 4096,
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
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?)
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

/// `sethostname(name)`: the host name of the caller's UTS namespace.
pub fn set_host_name(name: &str) -> io::Result<()> {
    nix::unistd::sethostname(name).map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// `setdomainname(name)`: the NIS domain name of the caller's UTS namespace (nix has
/// no function for it).
#[doc(alias = "setdomainname")]
pub fn set_domain_name(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which live across the
    // call; the kernel only reads them.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } as libc::c_long).map(|_| ())
}

/// Forks a guard for a state crust changed and must put back if it dies: the child
/// starts a session of its own (a signal to crust's group does not reach it), keeps
/// only `pipe` (the read end of a pipe whose write end crust holds) and `file`, and
/// blocks reading the pipe. A byte means crust put the state back itself: it exits. End
/// of file without one means crust died: it writes `value` into `file` and exits. Only
/// async-signal-safe calls run in the child (crust is multithreaded). Returns the
/// child's pid.
#[doc(alias = "clone3")]
pub fn spawn_state_guard(pipe: &OwnedFd, file: &OwnedFd, value: &[u8]) -> io::Result<i32> {
    let (pipe, file) = (pipe.as_raw_fd(), file.as_raw_fd());
    let child = clone_fork(0, None)?;
    if child != 0 {
        return Ok(child);
    }
    // SAFETY: in the forked child of a multithreaded process: only raw syscalls on fd
    // numbers and a buffer of this process's copied memory, then _exit.
    unsafe {
        libc::setsid();
        let (low, high) = if pipe < file { (pipe, file) } else { (file, pipe) };
        if low > 0 {
            libc::syscall(libc::SYS_close_range, 0, low - 1, 0);
        }
        if high > low + 1 {
            libc::syscall(libc::SYS_close_range, low + 1, high - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, high + 1, u32::MAX, 0);
        let mut byte = 0u8;
        let read = loop {
            let n = libc::read(pipe, (&mut byte as *mut u8).cast(), 1);
            if n >= 0 || *libc::__errno_location() != libc::EINTR {
                break n;
            }
        };
        if read != 1 {
            libc::write(file, value.as_ptr().cast(), value.len());
        }
        libc::_exit(0)
    }
}

/// Gives the calling process's future children a new time namespace
/// (`unshare(CLONE_NEWTIME)`); the caller stays in its own until
/// [`enter_time_namespace_for_children`].
#[doc(alias = "unshare")]
pub fn new_time_namespace_for_children() -> io::Result<()> {
    Ok(nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))?)
}

/// Moves the calling, single-threaded process into the time namespace its children
/// get (`setns(/proc/self/ns/time_for_children, CLONE_NEWTIME)`); the kernel remaps
/// its vvar pages to the namespace's.
#[doc(alias = "setns")]
pub fn enter_time_namespace_for_children() -> io::Result<()> {
    let namespace = std::fs::File::open("/proc/self/ns/time_for_children")?;
    Ok(nix::sched::setns(namespace, nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))?)
}

