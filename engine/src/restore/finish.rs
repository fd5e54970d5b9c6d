//! The finish of a restore, in the parent: wait until every restorer has run its
//! program and every new thread has trapped, then for each process inject the calls
//! each thread still needs, unmap the restorer with one injected munmap, put the dumped
//! registers and signal masks back and let every thread go (a stopped process with its
//! stop signal). [`TreeGuard`] kills the tree on every error path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crust_arch::{Abi, Host, HostArch, RestorerOp, RestorerOutcome, Sys};
use crust_images::pb;

use crate::infect::RemoteThread;
use crate::model::TASK_STOPPED;
use crate::procfs;
use crate::restore::images::{Images, ProcessImages};
use crate::restore::program::Plan;
use crate::restore::tree::TreePlan;
use crate::sys;

/// Why the restored tree could not be finished. The tree is killed.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("restore: {image}: {what}")]
    BadImage { image: String, what: String },
    #[error("restore pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("restore pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    #[error("restore pid {pid}: {what}")]
    Child { pid: i32, what: String },
    /// What a restored process reported before it died (the message names its pid).
    #[error("restore: {what}")]
    ChildReported { what: String },
    #[error("restore pid {pid}: restorer step {index} ({description}) failed: {errno}")]
    RestorerStep { pid: i32, index: u64, description: String, errno: String },
    #[error("restore pid {pid}: {source}")]
    Arch { pid: i32, source: crust_arch::HostError },
    #[error("restore pid {pid}: {source}")]
    Infect { pid: i32, source: crate::infect::InfectError },
}
crate::error::io_failure!(FinishError);

/// Waits until host task `tid` shows state T in /proc (its stop signal is pending: the
/// kernel acts on it as soon as the task is scheduled), for at most two seconds.
pub(crate) fn wait_until_stopped(pid: i32, tid: i32) -> Result<(), FinishError> {
    wait_for_state(pid, tid, 'T', "stop within 2 s of its stop signal")
}

/// Waits until task `tid` (of process `pid`) shows `state` in /proc, at most 2 s;
/// `what` says what it failed to do.
fn wait_for_state(pid: i32, tid: i32, state: char, what: &str) -> Result<(), FinishError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = fs::read_to_string(format!("/proc/{tid}/stat")).map_err(io_err(pid, format!("read /proc/{tid}/stat")))?;
        if procfs::parse_stat(&stat).is_ok_and(|s| s.state == state) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(FinishError::Child { pid, what: format!("task {tid} did not {what}") });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Kills the tree unless it was released.
pub(crate) struct TreeGuard {
    pub(crate) pids: Vec<i32>,
    pub(crate) released: bool,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Only a task this restore made: crust's child, or traced by crust (every task
        // of the tree is, until release). A dumped pid the restore did not get (busy:
        // clone3 gave EEXIST) belongs to another process, which must live on.
        let me = std::process::id().to_string();
        let ours = |pid: i32| {
            fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                let fields = procfs::parse_key_values(&status);
                fields.get("TracerPid") == Some(&me) || fields.get("PPid") == Some(&me)
            })
        };
        for &pid in self.pids.iter().filter(|&&pid| pid > 0 && ours(pid)) {
            let _ = sys::send_signal(pid, libc::SIGKILL);
        }
        // Reap (as tracer and, for the root, as parent) until nothing is left.
        while sys::wait_any().is_ok() {}
    }
}

pub(crate) fn pipe(pid: i32) -> Result<(OwnedFd, OwnedFd), FinishError> {
    let (read, write) = std::io::pipe().map_err(io_err(pid, "pipe"))?;
    Ok((OwnedFd::from(read), OwnedFd::from(write)))
}

/// Whether the instruction at `ip` of stopped thread `tid` is the syscall instruction.
fn syscall_insn_at(tid: i32, ip: u64) -> bool {
    let mut code = vec![0u8; HostArch::SYSCALL_INSN.len()];
    let read = std::fs::File::open(format!("/proc/{tid}/mem")).and_then(|mem| std::os::unix::fs::FileExt::read_exact_at(&mem, &mut code, ip));
    read.is_ok() && code == HostArch::SYSCALL_INSN
}

/// Has the stopped, traced thread `tid` call exit(0) from the syscall instruction at
/// `syscall_ip`, and lets it go once it is past user space (PTRACE_EVENT_EXIT): a leader
/// whose threads live on stays a zombie, as it was at dump time.
fn exit_thread(tid: i32, syscall_ip: u64) -> Result<(), FinishError> {
    let now = HostArch::read_regs(tid).map_err(|source| FinishError::Arch { pid: tid, source })?;
    let nr = HostArch::syscall_number(Sys::Exit).ok_or(FinishError::Unsupported { pid: tid, what: "exit on this architecture".into() })?;
    let regs = HostArch::syscall_regs(&now.gpr, syscall_ip, nr, [0; 6]);
    HostArch::write_gpr(tid, &regs).map_err(|source| FinishError::Arch { pid: tid, source })?;
    sys::add_trace_exit(tid).map_err(io_err(tid, "PTRACE_SETOPTIONS exit"))?;
    sys::continue_thread(tid, 0).map_err(io_err(tid, "PTRACE_CONT to exit"))?;
    match sys::wait_thread(tid).map_err(io_err(tid, "wait for the exiting leader"))? {
        sys::WaitEvent::Stopped { event, .. } if event == libc::PTRACE_EVENT_EXIT => {}
        other => return Err(FinishError::Child { pid: tid, what: format!("leader thread did not reach its exit: {other:?}") }),
    }
    sys::detach_thread(tid, 0).map_err(io_err(tid, "PTRACE_DETACH the exiting leader"))?;
    // Its exit goes on without the tracer (a leader with live threads is never reported
    // to wait): return once it is the zombie it was, its memory and files let go.
    wait_for_state(tid, tid, 'Z', "finish its exit within 2 s")
}

/// Runs the tree until every live process's restorer has finished and every new thread
/// has trapped; zombies are counted as they exit.
/// With `placement`, each task is put in its cgroups at its first stop.
pub(crate) fn wait_for_restorers(
    tree: &TreePlan,
    plans: &[Option<Plan>],
    images: &Images,
    error_read: OwnedFd,
    mut placement: Option<&mut crate::cgroups::restore::Placement>,
) -> Result<BTreeMap<i32, i32>, FinishError> {
    // Tasks are reported by host tid; images name them by their tid in their own pid
    // namespace (the same number outside a new namespace).
    let mut host: BTreeMap<i32, i32> = BTreeMap::new();
    let mut virtual_by_host: BTreeMap<i32, i32> = BTreeMap::new();
    let new_pid_ns = images.namespaces.new_pid_ns;
    let virtual_of = |tid: i32| -> i32 {
        if !new_pid_ns {
            return tid;
        }
        fs::read_to_string(format!("/proc/{tid}/status"))
            .ok()
            .and_then(|s| procfs::parse_nspid(&s))
            .unwrap_or(tid)
    };
    // The process of each task of the images (index into `images.processes`).
    let owners: BTreeMap<i32, usize> =
        images.processes.iter().enumerate().flat_map(|(index, p)| p.pstree.threads.iter().map(move |&t| (t as i32, index))).collect();
    let root = images.processes[0].pid();
    let mut pending_leaders: BTreeMap<i32, usize> = BTreeMap::new();
    let mut pending_threads: BTreeSet<i32> = BTreeSet::new();
    let mut pending_zombies: Vec<i32> = Vec::new();
    let mut pending_helpers: Vec<i32> = tree.helpers.iter().map(|h| h.pid as i32).collect();
    for (index, process) in images.processes.iter().enumerate() {
        if process.is_zombie() {
            pending_zombies.push(process.pid());
        } else {
            pending_leaders.insert(process.pid(), index);
            pending_threads.extend(process.pstree.threads.iter().skip(1).map(|&t| t as i32));
        }
    }
    let mut error_read = Some(error_read);
    let child_error = |error_read: &mut Option<OwnedFd>, pid: i32, fallback: String| -> FinishError {
        let message = error_read.take().map(|fd| read_reported(&fd)).unwrap_or_default();
        match first_reported(&message) {
            None => FinishError::Child { pid, what: fallback },
            Some(what) => FinishError::ChildReported { what },
        }
    };
    while !(pending_leaders.is_empty() && pending_threads.is_empty() && pending_zombies.is_empty() && pending_helpers.is_empty()) {
        let (host_tid, event) = sys::wait_any().map_err(io_err(root, "wait for restorers"))?;
        let tid = match event {
            sys::WaitEvent::Stopped { .. } => {
                let tid = virtual_of(host_tid);
                host.insert(tid, host_tid);
                virtual_by_host.insert(host_tid, tid);
                tid
            }
            _ => virtual_by_host.get(&host_tid).copied().unwrap_or(host_tid),
        };
        match event {
            sys::WaitEvent::Stopped { signal, event: 0 } if signal == libc::SIGTRAP => {
                if let Some(placement) = placement.as_deref_mut() {
                    placement.place(tid, host_tid).map_err(|e| FinishError::Child { pid: tid, what: format!("cgroups: {e}") })?;
                }
                let regs = HostArch::read_regs(host_tid).map_err(|source| FinishError::Arch { pid: tid, source })?;
                let owner = owners.get(&tid).copied();
                let Some(index) = owner else {
                    return Err(FinishError::Child { pid: tid, what: "unexpected task in the restored tree".into() });
                };
                let plan = plans[index].as_ref().expect("live process");
                match HostArch::restorer_outcome(&regs.gpr, plan.area + plan.ops_offset) {
                    RestorerOutcome::Done => {
                        log_failed_ops(tid, host_tid, plan);
                        pending_leaders.remove(&tid);
                    }
                    RestorerOutcome::NewThread => {
                        pending_threads.remove(&tid);
                    }
                    RestorerOutcome::Failed { index: op, result } => {
                        return Err(FinishError::RestorerStep {
                            pid: tid,
                            index: op,
                            description: plan.descriptions.get(op as usize).unwrap_or_default().to_owned(),
                            errno: format!(
                                "{}{}",
                                io::Error::from_raw_os_error(-result as i32),
                                if -result == i64::from(libc::EAGAIN) { " (EAGAIN: the cgroup's pids.max or RLIMIT_NPROC is reached)" } else { "" }
                            ),
                        })
                    }
                }
            }
            // Fork/clone events, and the first stop of auto-attached tasks: let them run.
            sys::WaitEvent::Stopped { event, .. } if event != 0 => {
                // A new task's first stop comes before it runs: its cgroups now.
                if let Some(placement) = placement.as_deref_mut() {
                    placement.place(tid, host_tid).map_err(|e| FinishError::Child { pid: tid, what: format!("cgroups: {e}") })?;
                }
                sys::continue_thread(host_tid, 0).map_err(io_err(tid, "continue"))?;
            }
            // A zombie killing itself with its dumped signal: let the signal through.
            sys::WaitEvent::Stopped { signal, event: 0 } if pending_zombies.contains(&tid) => {
                sys::continue_thread(host_tid, signal).map_err(io_err(tid, "continue"))?;
            }
            sys::WaitEvent::Stopped { signal, .. } if signal == libc::SIGCHLD => {
                sys::continue_thread(host_tid, 0).map_err(io_err(tid, "continue"))?;
            }
            sys::WaitEvent::Stopped { signal, .. } => {
                let ip = HostArch::read_regs(host_tid).map(|r| HostArch::ip(&r.gpr)).unwrap_or(0);
                return Err(child_error(&mut error_read, tid, format!("restorer got signal {signal} at ip {ip:#x}")));
            }
            sys::WaitEvent::Exited(_) | sys::WaitEvent::Signaled(_) if pending_zombies.contains(&tid) => {
                pending_zombies.retain(|&z| z != tid);
            }
            sys::WaitEvent::Exited(0) if pending_helpers.contains(&tid) => {
                pending_helpers.retain(|&h| h != tid);
            }
            sys::WaitEvent::Exited(code) => {
                return Err(child_error(&mut error_read, tid, format!("exited with {code} during restore")));
            }
            sys::WaitEvent::Signaled(signal) => {
                return Err(child_error(&mut error_read, tid, format!("killed by signal {signal} during restore")));
            }
        }
    }
    Ok(host)
}

/// The error line of the first process that reported one; every other one goes to the
/// log (several processes may fail on one damaged image: a refusal is one line).
fn first_reported(message: &str) -> Option<String> {
    let mut lines = message.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next()?;
    let others: Vec<&str> = lines.collect();
    for other in &others {
        log::error!("also: {other}");
    }
    Some(match others.len() {
        0 => first.to_string(),
        n => format!("{first} (and {n} more process{} failed, in the log)", if n == 1 { "" } else { "es" }),
    })
}

/// What the tree's processes wrote to the error pipe so far. Read without blocking: the
/// process that failed wrote its line before it exited, and the others (stopped, or still
/// in crust code) hold the pipe's write end open, so it never reaches end of file.
fn read_reported(fd: &OwnedFd) -> String {
    if sys::file::set_status_flags(fd, libc::O_NONBLOCK).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = sys::file::read_some(fd, &mut buf) {
        bytes.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Logs the ops of a finished restorer program that may fail without stopping it
/// (`Plan::logged_ops`, madvise of huge page advice) and did, from the results the
/// restorer stored in its op list (still mapped: the tracer unmaps it later).
fn log_failed_ops(pid: i32, host_tid: i32, plan: &Plan) {
    if plan.logged_ops.is_empty() {
        return;
    }
    let path = format!("/proc/{host_tid}/mem");
    let mut bytes = vec![0u8; plan.ops_bytes.len()];
    let read = fs::File::open(&path).and_then(|mem| std::os::unix::fs::FileExt::read_exact_at(&mem, &mut bytes, plan.area + plan.ops_offset));
    if let Err(error) = read {
        log::warn!("restore pid {pid}: read the results of the restorer's ops from {path}: {error}");
        return;
    }
    for &index in &plan.logged_ops {
        let at = index * RestorerOp::SIZE + 9 * 8;
        let Some(word) = bytes.get(at..at + 8) else { continue };
        let result = i64::from_ne_bytes(word.try_into().expect("8 bytes"));
        if (-4095..0).contains(&result) {
            let description = plan.descriptions.get(index).unwrap_or("?");
            log::warn!("restore pid {pid}: {description}: {}", io::Error::from_raw_os_error(-result as i32));
        }
    }
}

/// Lazy restore: makes a userfaultfd in process `pid` (one injected call, then taken
/// with pidfd_getfd and closed there), registers the plan's lazy areas on it (missing
/// pages, with the fork, remap, remove and unmap events) and hands it to the daemon.
fn hand_over_lazy_areas(pid: i32, image_pid: u64, syscall_ip: u64, plan: &Plan, handoff: &mut crate::lazy::handoff::Handoff) -> Result<(), FinishError> {
    use crate::sys::uffd;
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let uffd = remote_userfaultfd(pid, syscall_ip, flags)?.map_err(|error| FinishError::Child { pid, what: format!("userfaultfd for lazy pages: {error}") })?;
    let features = uffd::FEATURE_EVENT_FORK | uffd::FEATURE_EVENT_REMAP | uffd::FEATURE_EVENT_REMOVE | uffd::FEATURE_EVENT_UNMAP;
    uffd::enable_api(uffd.as_fd(), features).map_err(|e| FinishError::Child { pid, what: format!("userfaultfd API with events {features:#x}: {e}") })?;
    for area in &plan.lazy_areas {
        uffd::register_missing(uffd.as_fd(), area.start, area.end - area.start)
            .map_err(|e| FinishError::Child { pid, what: format!("register lazy area {:#x}-{:#x}: {e}", area.start, area.end) })?;
    }
    handoff.send(pid, image_pid, &uffd, &plan.lazy_areas).map_err(|e| FinishError::Child { pid, what: e.to_string() })?;
    log::info!("pid {pid}: {} lazy areas handed to the lazy-pages daemon", plan.lazy_areas.len());
    Ok(())
}

/// Makes a userfaultfd in process `pid` (one injected `userfaultfd(flags)`), takes it
/// with pidfd_getfd and closes it there. The inner error: the process's call failed.
fn remote_userfaultfd(pid: i32, syscall_ip: u64, flags: u64) -> Result<io::Result<OwnedFd>, FinishError> {
    let now = HostArch::read_regs(pid).map_err(|source| FinishError::Arch { pid, source })?;
    let mut remote = RemoteThread::new(pid, syscall_ip, now.gpr);
    let fd = remote.syscall(Sys::Userfaultfd, [flags, 0, 0, 0, 0, 0]).map_err(|source| FinishError::Infect { pid, source })?;
    if (-4095..0).contains(&fd) {
        return Ok(Err(io::Error::from_raw_os_error(-fd as i32)));
    }
    let borrowed = crate::sys::borrow_fd(pid, fd as u32);
    remote.syscall(Sys::Close, [fd as u64, 0, 0, 0, 0, 0]).map_err(|source| FinishError::Infect { pid, source })?;
    Ok(borrowed.map_err(|e| io::Error::new(e.kind(), format!("take its userfaultfd: {e}"))))
}

/// Puts the pages of the plan's big areas (mapped empty) into `process`, stopped after
/// its restorer, with `lazy/fill.rs`: through a userfaultfd made in the process, the
/// areas registered for missing pages and unregistered when crust closes it after the
/// fill; through its /proc/PID/mem where it cannot make one. UFFD_USER_MODE_ONLY: crust
/// alone touches the areas until the fd is closed, so no fault of the kernel's has to
/// reach it, and the call needs no privilege for it (a kernel before 5.11 refuses the
/// flag: asked again without it). Done for every process before the post-restore stage,
/// so that nothing may look at the areas before their pages are in.
pub(crate) fn fill_big_areas(process: &ProcessImages, plan: &Plan, host: &BTreeMap<i32, i32>) -> Result<(), FinishError> {
    use crate::lazy::fill::{self, Target};
    use crate::sys::uffd;
    if plan.fill_areas.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let syscall_ip = plan.area + HostArch::restorer_syscall_offset() as u64;
    let pid = host[&(process.pstree.threads[process.acting_thread()] as i32)];
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let made = match remote_userfaultfd(pid, syscall_ip, flags | uffd::USER_MODE_ONLY)? {
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => remote_userfaultfd(pid, syscall_ip, flags)?,
        other => other,
    };
    let registered = made.and_then(|fd| {
        uffd::enable_api(fd.as_fd(), 0)?;
        for area in &plan.fill_areas {
            uffd::register_missing(fd.as_fd(), area.start, area.end - area.start)
                .map_err(|e| io::Error::new(e.kind(), format!("register {:#x}-{:#x}: {e}", area.start, area.end)))?;
        }
        Ok(fd)
    });
    let mem;
    let (target, how) = match &registered {
        Ok(fd) => (Target::Uffd(fd.as_fd()), "userfaultfd".to_string()),
        Err(error) => {
            mem = fs::File::options()
                .write(true)
                .open(format!("/proc/{pid}/mem"))
                .map_err(|e| FinishError::Child { pid, what: format!("open /proc/{pid}/mem to put its pages in: {e}") })?;
            (Target::Mem(&mem), format!("/proc/{pid}/mem (no userfaultfd: {error})"))
        }
    };
    let filled = fill::fill(target, &plan.fill_areas, &plan.fill_checks)
        .map_err(|e| FinishError::Child { pid, what: format!("put the pages of its big areas in: {e}") })?;
    // Closing the userfaultfd unregisters the areas: pages the images do not hold fault
    // in as zeros from now on, as they did in the dumped process.
    drop(registered);
    log::info!(
        "pid {pid}: {} MiB of {} areas put in through {how} on {} threads in {:?}, {} MiB of them checksummed",
        filled.bytes >> 20,
        plan.fill_areas.len(),
        filled.threads,
        started.elapsed(),
        filled.checked >> 20
    );
    Ok(())
}

/// An injected syscall whose failure (-errno) is an error: `what` names it.
fn checked_call(remote: &mut RemoteThread, pid: i32, call: Sys, args: [u64; 6], what: impl FnOnce() -> String) -> Result<i64, FinishError> {
    let result = remote.syscall(call, args).map_err(|source| FinishError::Infect { pid, source })?;
    if (-4095..0).contains(&result) {
        return Err(FinishError::Child { pid, what: format!("{}: {}", what(), io::Error::from_raw_os_error(-result as i32)) });
    }
    Ok(result)
}

/// Once every process exists, in process `pid`: opens its files under /proc/PID of the
/// tree, each path naming the restored process as this host numbers it (the tree reads
/// crust's /proc), then sets its files' owners (F_SETOWN_EX, the owner as the tree
/// numbers it: the process is in the tree's pid namespace) and signals (F_SETSIG). Paths
/// and `struct f_owner_ex` are written on a page mapped for the purpose (through
/// `/proc/PID/mem`) and unmapped at the end; each /proc file is opened with openat,
/// moved to its number with dup3 and sought to its offset.
fn open_proc_files_and_set_owners(pid: i32, syscall_ip: u64, plan: &Plan, host: &BTreeMap<i32, i32>) -> Result<(), FinishError> {
    use std::os::unix::fs::FileExt;
    let now = HostArch::read_regs(pid).map_err(|source| FinishError::Arch { pid, source })?;
    let mut remote = RemoteThread::new(pid, syscall_ip, now.gpr);
    let mem = fs::OpenOptions::new().read(true).write(true).open(format!("/proc/{pid}/mem")).map_err(|source| FinishError::Io { pid, what: "open its /proc/PID/mem".into(), source })?;
    let page = 4096u64;
    let mapped = remote
        .mmap(&mem, [0, page, (libc::PROT_READ | libc::PROT_WRITE) as u64, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, -1i64 as u64, 0])
        .map_err(|source| FinishError::Infect { pid, source })?;
    if (-4095..0).contains(&mapped) {
        return Err(FinishError::Child { pid, what: format!("map a page for /proc paths: {}", io::Error::from_raw_os_error(-mapped as i32)) });
    }
    let scratch = mapped as u64;
    let result = (|| -> Result<(), FinishError> {
        for file in &plan.proc_files {
            let number = file.fd;
            let target = *host.get(&file.pid).ok_or_else(|| FinishError::Child { pid, what: format!("fd {number}: /proc/{}{}: no such process in the tree", file.pid, file.rest) })?;
            let path = format!("/proc/{target}{}", file.rest);
            let mut bytes = path.clone().into_bytes();
            bytes.push(0);
            if bytes.len() as u64 > page {
                return Err(FinishError::Unsupported { pid, what: format!("fd {number}: a /proc path of {} bytes", bytes.len()) });
            }
            mem.write_all_at(&bytes, scratch).map_err(|source| FinishError::Io { pid, what: format!("write path {path}"), source })?;
            let mut call = |call: Sys, args: [u64; 6], what: &str| checked_call(&mut remote, pid, call, args, || format!("fd {number}: {what} {path}"));
            let fd = call(Sys::Openat, [libc::AT_FDCWD as i64 as u64, scratch, file.flags as u32 as u64, 0, 0, 0], "open")?;
            let cloexec_flag = if file.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            if fd != i64::from(number) {
                call(Sys::Dup3, [fd as u64, number as u64, cloexec_flag, 0, 0, 0], "dup3")?;
                call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0], "close")?;
            } else if file.cloexec {
                call(Sys::Fcntl, [number as u64, libc::F_SETFD as u64, libc::FD_CLOEXEC as u64, 0, 0, 0], "set close-on-exec of")?;
            }
            if file.pos != 0 {
                call(Sys::Lseek, [number as u64, file.pos, libc::SEEK_SET as u64, 0, 0, 0], "seek")?;
            }
        }
        const F_SETSIG: u64 = 10;
        const F_SETOWN_EX: u64 = 15;
        for (number, owner) in &plan.owners {
            let mut call = |call: Sys, args: [u64; 6], what: &str| checked_call(&mut remote, pid, call, args, || format!("fd {number}: {what}"));
            if owner.pid != 0 {
                let mut bytes = (owner.pid_type as i32).to_ne_bytes().to_vec();
                bytes.extend((owner.pid as i32).to_ne_bytes());
                mem.write_all_at(&bytes, scratch).map_err(|source| FinishError::Io { pid, what: format!("fd {number}: write its owner"), source })?;
                call(Sys::Fcntl, [*number as u64, F_SETOWN_EX, scratch, 0, 0, 0], &format!("F_SETOWN_EX type {} pid {}", owner.pid_type, owner.pid))?;
            }
            if owner.signum != 0 {
                call(Sys::Fcntl, [*number as u64, F_SETSIG, u64::from(owner.signum), 0, 0, 0], &format!("F_SETSIG {}", owner.signum))?;
            }
            // O_ASYNC set again from this fd: the signal's si_fd is the number O_ASYNC
            // was set through, which for a description opened by the broker was its own.
            let flags = call(Sys::Fcntl, [*number as u64, libc::F_GETFL as u64, 0, 0, 0, 0], "F_GETFL")? as u64;
            if flags & libc::O_ASYNC as u64 != 0 {
                call(Sys::Fcntl, [*number as u64, libc::F_SETFL as u64, flags & !(libc::O_ASYNC as u64), 0, 0, 0], "F_SETFL without O_ASYNC")?;
                call(Sys::Fcntl, [*number as u64, libc::F_SETFL as u64, flags, 0, 0, 0], "F_SETFL with O_ASYNC")?;
            }
        }
        Ok(())
    })();
    let unmapped = remote.syscall(Sys::Munmap, [scratch, page, 0, 0, 0, 0]).map_err(|source| FinishError::Infect { pid, source });
    result?;
    match unmapped? {
        0 => Ok(()),
        error => Err(FinishError::Child { pid, what: format!("unmap the page for /proc paths: {}", io::Error::from_raw_os_error(-error as i32)) }),
    }
}

/// A restored thread with its dumped registers (its interrupted syscall entered again
/// if it restarts), in a stop until [`release`] lets it go with its signal mask and the
/// signal it is detached with (the stop signal of a stopped process, on its last thread).
pub(crate) struct ReadyThread {
    tid: i32,
    sigmask: u64,
    detach_signal: i32,
}

/// For one process: injects each thread's own state, unmaps the restorer through one
/// injected syscall, then sets every thread's dumped registers; each thread stays in
/// its stop, traced, until [`release`] (a crust killed before then takes the whole tree
/// with it through PTRACE_O_EXITKILL). With `leave_stopped` the process goes stopped
/// (SIGSTOP), as one dumped stopped.
pub(crate) fn finish_process(
    process: &ProcessImages,
    plan: &Plan,
    host: &BTreeMap<i32, i32>,
    leave_stopped: bool,
    lazy: Option<&mut crate::lazy::handoff::Handoff>,
) -> Result<Vec<ReadyThread>, FinishError> {
    let syscall_ip = plan.area + HostArch::restorer_syscall_offset() as u64;
    let tids: Vec<i32> = process.pstree.threads.iter().map(|&t| host[&(t as i32)]).collect();
    // The thread that makes the process's remaining calls (the leader, unless it exits).
    let acting = process.acting_thread();
    let pid = tids[acting];
    // Lazy areas go to the daemon before any injected call can touch them.
    if let (Some(handoff), false) = (lazy, plan.lazy_areas.is_empty()) {
        hand_over_lazy_areas(pid, u64::from(process.pid() as u32), syscall_ip, plan, handoff)?;
    }
    // pidfds first: every process of the tree exists now. pidfd_open puts the fd at the
    // lowest free number; dup3 moves it to its own.
    if !plan.pidfds.is_empty() {
        let now = HostArch::read_regs(pid).map_err(|source| FinishError::Arch { pid, source })?;
        let mut remote = RemoteThread::new(pid, syscall_ip, now.gpr);
        for &(number, target, flags, cloexec) in &plan.pidfds {
            let mut call = |call: Sys, args: [u64; 6], what: &str| -> Result<i64, FinishError> {
                let result = remote.syscall(call, args).map_err(|source| FinishError::Infect { pid, source })?;
                if (-4095..0).contains(&result) {
                    return Err(FinishError::Child { pid, what: format!("fd {number}: {what} of pid {target}: {}", io::Error::from_raw_os_error(-result as i32)) });
                }
                Ok(result)
            };
            let fd = call(Sys::PidfdOpen, [target as u64, flags, 0, 0, 0, 0], "pidfd_open")?;
            let cloexec_flag = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            if fd != number as i64 {
                call(Sys::Dup3, [fd as u64, number as u64, cloexec_flag, 0, 0, 0], "dup3 pidfd")?;
                call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0], "close pidfd")?;
            } else if !cloexec {
                call(Sys::Fcntl, [number as u64, libc::F_SETFD as u64, 0, 0, 0, 0], "clear close-on-exec of pidfd")?;
            }
        }
    }
    if !plan.proc_files.is_empty() || !plan.owners.is_empty() {
        open_proc_files_and_set_owners(pid, syscall_ip, plan, host)?;
    }
    let mut ext_templates = Vec::new();
    for (&tid, ops) in tids.iter().zip(&plan.thread_ops) {
        let now = HostArch::read_regs(tid).map_err(|source| FinishError::Arch { pid: tid, source })?;
        let mut remote = RemoteThread::new(tid, syscall_ip, now.gpr);
        for (call, args, description) in ops {
            let result = remote.syscall(*call, *args).map_err(|source| FinishError::Infect { pid: tid, source })?;
            if (-4095..0).contains(&result) {
                return Err(FinishError::Child { pid: tid, what: format!("{description}: {}", io::Error::from_raw_os_error(-result as i32)) });
            }
        }
        ext_templates.push(now.ext);
    }
    if process.leader_gone() {
        // Before the restorer's code goes: the leader runs its exit from there.
        exit_thread(tids[0], syscall_ip)?;
    }
    // The last injected call starts from the dumped registers, so any register the
    // kernel keeps from the syscall stop (aarch64's x7) is already the dumped one.
    let leader_dumped = HostArch::regs_from_core(&process.cores[acting], &ext_templates[acting])
        .map_err(|what| FinishError::BadImage { image: format!("core-{}.img", process.pstree.threads[acting]), what: what.to_string() })?;
    let mut remote = RemoteThread::new(pid, syscall_ip, leader_dumped.gpr);
    log::debug!("pid {pid}: unmapping restorer {:#x}+{:#x}", plan.area, plan.area_size);
    let result = remote
        .syscall(Sys::Munmap, [plan.area, plan.area_size, 0, 0, 0, 0])
        .map_err(|source| FinishError::Infect { pid, source })?;
    if result != 0 {
        return Err(FinishError::Child { pid, what: format!("unmap restorer: {}", io::Error::from_raw_os_error(-result as i32)) });
    }
    // A stopped process gets its stop signal as its last thread leaves the tracer: the
    // whole group stops before any of it runs.
    let stop_signal = if leave_stopped {
        libc::SIGSTOP
    } else if process.task_state() == TASK_STOPPED {
        process.stop_signal()
    } else {
        0
    };
    for ((&tid, &dumped_tid), core) in tids.iter().zip(&process.pstree.threads).zip(&process.cores).skip(acting) {
        if let Some(scheduling) = core.thread_core.as_ref().and_then(scheduling) {
            sys::set_scheduling(tid, scheduling)
                .map_err(io_err(dumped_tid as i32, format!("scheduling policy {:#x}, priority {}, nice {}", scheduling.policy, scheduling.rt_priority, scheduling.nice)))?;
        }
    }
    let mut ready = Vec::new();
    for (index, ((&tid, core), ext)) in tids.iter().zip(&process.cores).zip(&ext_templates).enumerate().skip(acting) {
        let detach_signal = if index + 1 == tids.len() { stop_signal } else { 0 };
        let dumped = HostArch::regs_from_core(core, ext)
            .map_err(|what| FinishError::BadImage { image: format!("core-{tid}.img"), what: what.to_string() })?;
        let gpr = HostArch::resume_regs(&dumped.gpr, false);
        // Registers stored the raw way (crust before 2026-12-06) restart here; those
        // stored with the restart applied (CRIU's way, and crust's) sit on the syscall
        // instruction already: either way the thread re-enters the syscall first.
        let restarts = HostArch::ip(&gpr) != HostArch::ip(&dumped.gpr)
            || (HostArch::restart_applied(&dumped.gpr) && syscall_insn_at(tid, HostArch::ip(&gpr)));
        HostArch::write_ext(tid, &dumped.ext).map_err(|source| FinishError::Arch { pid: tid, source })?;
        let mask = core
            .thread_core
            .as_ref()
            .and_then(|t| t.blk_sigset)
            .or(core.tc.as_ref().map(|t| t.blk_sigset))
            .unwrap_or(0);
        crate::infect::ready_thread(tid, &gpr, restarts).map_err(|source| FinishError::Infect { pid: tid, source })?;
        ready.push(ReadyThread { tid, sigmask: mask, detach_signal });
    }
    Ok(ready)
}

/// A thread's dumped scheduling, if its core says anything of it (a thread restored
/// without it keeps crust's: SCHED_OTHER, and crust's nice value).
fn scheduling(thread: &pb::ThreadCoreEntry) -> Option<sys::Scheduling> {
    if thread.sched_policy.is_none() && thread.sched_prio.is_none() && thread.sched_nice.is_none() {
        return None;
    }
    Some(sys::Scheduling {
        policy: thread.sched_policy.unwrap_or(0) as i32,
        rt_priority: thread.sched_prio.unwrap_or(0) as i32,
        nice: thread.sched_nice.unwrap_or(0),
    })
}

/// Lets every ready thread of the tree go, with its own signal mask, in one tight loop:
/// the only moment a killed crust leaves part of the tree running and part killed.
pub(crate) fn release(ready: &[ReadyThread]) -> Result<(), FinishError> {
    for thread in ready {
        crate::infect::let_go(thread.tid, thread.sigmask, thread.detach_signal).map_err(|source| FinishError::Infect { pid: thread.tid, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::first_reported;

    #[test]
    fn several_reported_errors_make_one_line() {
        assert_eq!(first_reported(""), None);
        assert_eq!(first_reported("\n  \n"), None);
        assert_eq!(first_reported("pid 7: chdir /x: No such file or directory (os error 2)\n").as_deref(), Some("pid 7: chdir /x: No such file or directory (os error 2)"));
        let two = "pid 7: chdir /x: No such file or directory (os error 2)\npid 8: chdir /x: No such file or directory (os error 2)\n";
        assert_eq!(first_reported(two).as_deref(), Some("pid 7: chdir /x: No such file or directory (os error 2) (and 1 more process failed, in the log)"));
        assert!(!first_reported("a\nb\nc\n").unwrap().contains('\n'));
    }
}
