//! The freeze stage of a dump: seize every thread of every process of the tree, parents
//! before children, and keep what is needed to let each go exactly as it was.
//!
//! Invariant: [`Frozen`]'s Drop releases every thread unchanged (registers, signal mask,
//! stop state) unless the tree was released or killed on purpose; a thread seized
//! inside an rseq critical section is released at the section's abort handler, where
//! the kernel would have sent it (`rseq.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::time::{Duration, Instant};

use crust_arch::{Abi, Host, HostArch, ThreadRegs};

use crate::error::io_failure;
use crate::cgroups::freezer::Freezer;
use crate::model::SECCOMP_MODE_FILTER;
use crate::procfs;
use crate::rseq;
use crate::sys;

type Regs = <HostArch as Abi>::Regs;

/// Why the tree could not be seized. Nothing is left stopped.
#[derive(Debug, thiserror::Error)]
pub enum SeizeError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Parse { pid: i32, source: procfs::ParseError },
    #[error("dump pid {pid}: {source}")]
    Arch { pid: i32, source: crust_arch::HostError },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    /// `--freeze-cgroup`'s cgroup could not be thawed.
    #[error("dump pid {pid}: {what}")]
    Freezer { pid: i32, what: String },
    /// A thread did not stop within `--timeout` (in uninterruptible sleep, say).
    #[error("dump pid {pid}: tid {tid} did not stop within {seconds} s of PTRACE_INTERRUPT (--timeout {seconds}; state {state}); the tree was let go")]
    Timeout { pid: i32, tid: i32, seconds: u64, state: char },
}
io_failure!(SeizeError);

/// A pid the images must name as the tree's pid namespace numbers it, but which lives
/// outside that namespace.
#[derive(Debug, thiserror::Error)]
#[error("dump pid {pid}: {what} is not supported yet")]
pub struct OutsideNamespace {
    pub pid: i32,
    pub what: String,
}

/// One stopped thread and what is needed to let it go unchanged.
pub(crate) struct FrozenThread {
    pub(crate) tid: i32,
    pub(crate) rseq: Option<sys::RseqConfig>,
    pub(crate) regs: ThreadRegs<Regs>,
    pub(crate) sigmask: u64,
    /// SECCOMP_MODE_* of the thread, and its filters oldest first (filter mode).
    pub(crate) seccomp_mode: u32,
    pub(crate) seccomp_filters: Vec<Vec<u8>>,
    /// The tid as the thread's own (innermost) pid namespace sees it.
    pub(crate) nspid: i32,
    /// /proc/PID/task/TID/status, read once the thread stopped (credentials and the
    /// rest cannot change while the tree is frozen).
    pub(crate) status: String,
}

/// One process of the tree.
pub(crate) struct FrozenProcess {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    /// /proc/PID/stat as read before the seize (state, session, group).
    pub(crate) stat: procfs::Stat,
    /// Seized threads, the leader first; empty for a zombie.
    pub(crate) threads: Vec<FrozenThread>,
    /// It was stopped (SIGSTOP/SIGTSTP) before the dump.
    pub(crate) stopped: bool,
    /// Stopped in a frozen cgroup, it was sent SIGCONT to be seized: the release stops it
    /// again.
    pub(crate) continued: bool,
    /// Its leader thread exited (pthread_exit) while other threads run on: /proc/PID
    /// then shows a zombie with no memory or files, which only the live threads'
    /// /proc entries show.
    pub(crate) leader_gone: bool,
}

impl FrozenProcess {
    pub(crate) fn is_zombie(&self) -> bool {
        self.stat.state == 'Z' && !self.leader_gone
    }

    /// The pid whose /proc entries (memory, files, cwd) and whose ptrace stop serve for
    /// the whole process: the leader, or its first live thread once the leader is gone.
    /// /proc/TID works for any thread, listed or not.
    pub(crate) fn proc_pid(&self) -> i32 {
        self.threads.first().map(|t| t.tid).unwrap_or(self.pid)
    }

    /// The signal that stopped a stopped process (stat's exit_code holds it).
    pub(crate) fn stop_signal(&self) -> i32 {
        if (1..32).contains(&self.stat.exit_code) {
            self.stat.exit_code
        } else {
            libc::SIGSTOP
        }
    }
}

/// The seized tree. Dropping it releases every thread exactly as it was.
pub(crate) struct Frozen {
    pub(crate) processes: Vec<FrozenProcess>,
    /// Pids and tids as the tree sees them (its own pid namespace), by host pid.
    pub(crate) virt: BTreeMap<i32, i32>,
    /// The tree runs in a pid namespace of its own, whose init is the root.
    pub(crate) own_pid_ns: bool,
    finished: bool,
}

/// The next ptrace stop (or exit) of `tid`, waiting until `deadline` at most.
fn wait_stop(pid: i32, tid: i32, deadline: Option<(Instant, Duration)>) -> Result<sys::WaitEvent, SeizeError> {
    let Some((deadline, timeout)) = deadline else {
        return sys::wait_thread(tid).map_err(io_err(pid, format!("wait tid {tid}")));
    };
    let mut pause = Duration::from_micros(20);
    loop {
        if let Some(event) = sys::try_wait_thread(tid).map_err(io_err(pid, format!("wait tid {tid}")))? {
            return Ok(event);
        }
        if Instant::now() >= deadline {
            let state = read_stat(pid).map(|s| s.state).unwrap_or('?');
            return Err(SeizeError::Timeout { pid, tid, seconds: timeout.as_secs(), state });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

fn seize_one(pid: i32, tid: i32, deadline: Option<(Instant, Duration)>) -> Result<FrozenThread, SeizeError> {
    let suspended = seize_start(pid, tid)?;
    seize_finish(pid, tid, suspended, deadline)
}

/// PTRACE_SEIZE and PTRACE_INTERRUPT of `tid`, without waiting for its stop; true when
/// its seccomp filters are suspended.
fn seize_start(pid: i32, tid: i32) -> Result<bool, SeizeError> {
    // Seccomp filters must not see the injected syscalls (strict mode would kill the
    // target at the first one): suspend them while seized, if crust may (CAP_SYS_ADMIN).
    let suspended = match sys::seize_thread(tid, libc::PTRACE_O_TRACESYSGOOD | sys::PTRACE_O_SUSPEND_SECCOMP) {
        Ok(()) => true,
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
            sys::seize_thread(tid, libc::PTRACE_O_TRACESYSGOOD).map_err(|error| seize_failed(pid, tid, error))?;
            false
        }
        Err(error) => return Err(seize_failed(pid, tid, error)),
    };
    sys::interrupt_thread(tid).map_err(io_err(pid, format!("interrupt tid {tid}")))?;
    Ok(suspended)
}

/// Waits for the stop of a thread `seize_start` seized and reads what its release needs.
fn seize_finish(pid: i32, tid: i32, suspended: bool, deadline: Option<(Instant, Duration)>) -> Result<FrozenThread, SeizeError> {
    loop {
        match wait_stop(pid, tid, deadline)? {
            sys::WaitEvent::Stopped { event, .. } if event == libc::PTRACE_EVENT_STOP => break,
            sys::WaitEvent::Stopped { signal, .. } => {
                // A signal arrived first: keep it for the thread, stop again.
                sys::continue_thread(tid, signal).map_err(io_err(pid, "re-inject signal"))?;
            }
            _ => {
                return Err(SeizeError::Io {
                    pid,
                    what: format!("tid {tid} exited while being seized"),
                    source: io::Error::from_raw_os_error(libc::ESRCH),
                })
            }
        }
    }
    let mut regs = HostArch::read_regs(tid).map_err(|source| SeizeError::Arch { pid, source })?;
    let sigmask = sys::read_sigmask(tid).map_err(io_err(pid, "PTRACE_GETSIGMASK"))?;
    let rseq = sys::read_rseq_config(tid).map_err(io_err(pid, "PTRACE_GET_RSEQ_CONFIGURATION"))?;
    if let Some(abort_ip) = rseq.and_then(|config| rseq_abort_ip(tid, config, HostArch::ip(&regs.gpr))) {
        // Moved now, before any injected call, as the kernel would move it on its way
        // back to user space: the release and the image both take these registers.
        let moved = HostArch::with_ip(&regs.gpr, abort_ip);
        HostArch::write_gpr(tid, &moved).map_err(|source| SeizeError::Arch { pid, source })?;
        log::info!("dump pid {pid}: tid {tid} was inside an rseq critical section at {:#x}: resumes at its abort handler {abort_ip:#x}", HostArch::ip(&regs.gpr));
        regs.gpr = moved;
    }
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).map_err(io_err(pid, "read thread status"))?;
    let seccomp_mode: u32 = status.lines().find_map(|line| line.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let nspid = procfs::parse_nspid(&status).ok_or_else(|| SeizeError::Unsupported { pid, what: format!("tid {tid} without an NSpid line") })?;
    let mut seccomp_filters = Vec::new();
    if seccomp_mode != 0 && !suspended {
        return Err(SeizeError::Unsupported { pid, what: format!("tid {tid} under seccomp without CAP_SYS_ADMIN to suspend it") });
    }
    if seccomp_mode == SECCOMP_MODE_FILTER {
        while let Some(filter) =
            sys::read_seccomp_filter(tid, seccomp_filters.len() as u64).map_err(io_err(pid, format!("tid {tid}: PTRACE_SECCOMP_GET_FILTER")))?
        {
            seccomp_filters.push(filter);
        }
    }
    Ok(FrozenThread { tid, rseq, regs, sigmask, seccomp_mode, seccomp_filters, nspid, status })
}

/// The abort handler of the rseq critical section thread `tid` is stopped inside, if
/// any (`rseq.rs`). The area or the section unreadable: none (the kernel would kill the
/// thread with SIGSEGV at its next return to user space; that stays the kernel's call).
fn rseq_abort_ip(tid: i32, config: sys::RseqConfig, ip: u64) -> Option<u64> {
    let mut pointer = [0u8; 8];
    let read = sys::read_remote(tid, &mut pointer, config.pointer + rseq::RSEQ_CS_FIELD_OFFSET).ok()?;
    let section_at = u64::from_ne_bytes(pointer);
    if read != pointer.len() || section_at == 0 {
        return None;
    }
    let mut section = [0u8; rseq::RSEQ_CS_SIZE];
    if sys::read_remote(tid, &mut section, section_at).ok()? != section.len() {
        return None;
    }
    rseq::CriticalSection::parse(&section).resume_ip(ip)
}

/// A failed PTRACE_SEIZE, explained: a thread traced by someone else is named with its
/// tracer (TracerPid and its comm).
fn seize_failed(pid: i32, tid: i32, error: io::Error) -> SeizeError {
    match crate::access::tracer_of(pid, tid) {
        Some((tracer, comm)) if error.raw_os_error() == Some(libc::EPERM) => SeizeError::Io {
            pid,
            what: format!("seize tid {tid}: already traced by pid {tracer} ({comm}); a thread has one tracer at a time"),
            source: error,
        },
        _ => io_err(pid, format!("seize tid {tid}"))(error),
    }
}

impl Frozen {
    /// Seizes `root` and every descendant, each process's threads until no new one
    /// appears, parents before children (a stopped process cannot fork). Each thread
    /// must stop within `timeout` of its seize (`--timeout`), or the tree is let go.
    /// With a `freezer` (`--freeze-cgroup`, the tree frozen already) every thread is
    /// seized and interrupted first, the cgroup thawed (a v1 freezer holds the stops
    /// back until then), and only then are the stops waited for.
    pub(crate) fn seize_tree(root: i32, timeout: Option<Duration>, freezer: Option<&Freezer>) -> Result<Frozen, SeizeError> {
        let mut frozen = Frozen { processes: Vec::new(), virt: BTreeMap::new(), own_pid_ns: false, finished: false };
        // Threads seized and interrupted whose stop is not waited for yet (freezer):
        // (process index, tid, seccomp suspended).
        let mut pending: Vec<(usize, i32, bool)> = Vec::new();
        let seized = frozen.seize_all(root, timeout, freezer, &mut pending);
        if let Err(error) = seized {
            abandon(&pending, freezer);
            return Err(error);
        }
        // Each thread's was read at its seize; a zombie's is read now.
        for process in &frozen.processes {
            let leader = process.threads.iter().find(|t| t.tid == process.pid).map(|t| t.nspid);
            frozen.virt.insert(process.pid, match leader {
                Some(nspid) => nspid,
                None => virtual_pid(process.pid)?,
            });
            for thread in &process.threads {
                frozen.virt.insert(thread.tid, thread.nspid);
            }
        }
        Ok(frozen)
    }

    fn seize_all(&mut self, root: i32, timeout: Option<Duration>, freezer: Option<&Freezer>, pending: &mut Vec<(usize, i32, bool)>) -> Result<(), SeizeError> {
        let frozen = self;
        // An unreadable link (EACCES: not crust's to read) is an error, not a namespace.
        let ns_of = |pid: i32| {
            let path = format!("/proc/{pid}/ns/pid");
            fs::read_link(&path).map_err(io_err(pid, format!("read {path}")))
        };
        frozen.own_pid_ns = ns_of(root)? != ns_of(std::process::id() as i32)?;
        if frozen.own_pid_ns && virtual_pid(root)? != 1 {
            return Err(SeizeError::Unsupported {
                pid: root,
                what: "a tree in a pid namespace whose root is not the namespace's init (pid 1)".into(),
            });
        }
        // Level by level (parents before children): every process of a level is
        // seized and interrupted first, then their stops are waited for, so siblings
        // stop side by side instead of one after the other (a stop comes once the
        // interrupted thread is scheduled: 0.1-0.2 ms each here). A process's children
        // are listed once all its threads are stopped (a stopped process cannot fork).
        let mut level = vec![(root, 0)];
        while !level.is_empty() {
            let mut started: Vec<(usize, Vec<i32>)> = Vec::new();
            for (pid, ppid) in level.drain(..) {
                let stat = read_stat(pid)?;
                let leader_gone = stat.state == 'Z' && list_threads(pid)?.iter().any(|&t| t != pid);
                let stopped = stat.state == 'T' || (freezer.is_some() && stopped_while_frozen(pid, stat.state));
                let mut process = FrozenProcess { pid, ppid, stopped, continued: false, stat, threads: Vec::new(), leader_gone };
                if process.is_zombie() {
                    frozen.processes.push(process);
                    continue;
                }
                // A stopped (SIGSTOP/SIGTSTP) process is seized in its group stop, which it
                // reports as its PTRACE_EVENT_STOP; crust steps its threads on from such
                // stops (`infect::step_to_syscall_stop`), and once they are detached the
                // kernel puts them back into the group stop by itself. No SIGCONT reaches
                // it, its parent hears of no stop or continue, and a SIGCONT sent meanwhile
                // ends the stop as it would have. The images record it as stopped, so
                // restore stops it too.
                // In a frozen cgroup it cannot be: PTRACE_SEIZE of a stopped task waits until
                // the task runs to take its trap (JOBCTL_TRAPPING), which a frozen task never
                // does. There SIGCONT takes the stop away at once, the task carries on from
                // its group stop only once thawed, by then seized and interrupted, and the
                // release stops it again with its stop signal.
                if process.stopped && process.stat.state != 'T' {
                    sys::send_signal(pid, libc::SIGCONT).map_err(io_err(pid, "SIGCONT a stopped process"))?;
                    process.continued = true;
                }
                frozen.processes.push(process);
                let index = frozen.processes.len() - 1;
                let tids: Vec<i32> = list_threads(pid)?.into_iter().filter(|&t| !leader_gone || t != pid).collect();
                for &tid in &tids {
                    let suspended = seize_start(pid, tid)?;
                    pending.push((index, tid, suspended));
                }
                started.push((index, tids));
            }
            for (index, mut tids) in started {
                let pid = frozen.processes[index].pid;
                if freezer.is_none() {
                    while let Some(&(pending_index, tid, suspended)) = pending.first() {
                        if pending_index != index {
                            break;
                        }
                        let deadline = timeout.map(|t| (Instant::now() + t, t));
                        let thread = seize_finish(pid, tid, suspended, deadline)?;
                        frozen.processes[index].threads.push(thread);
                        pending.remove(0);
                    }
                }
                // Threads made before their siblings stopped are seized until none is new.
                loop {
                    let gone = frozen.processes[index].leader_gone;
                    let fresh: Vec<i32> = list_threads(pid)?.into_iter().filter(|t| !tids.contains(t) && (!gone || *t != pid)).collect();
                    if fresh.is_empty() {
                        break;
                    }
                    for tid in fresh {
                        tids.push(tid);
                        if freezer.is_some() {
                            let suspended = seize_start(pid, tid)?;
                            pending.push((index, tid, suspended));
                        } else {
                            let deadline = timeout.map(|t| (Instant::now() + t, t));
                            let thread = seize_one(pid, tid, deadline)?;
                            frozen.processes[index].threads.push(thread);
                        }
                    }
                }
                for child in children_of(pid, &tids)? {
                    level.push((child, pid));
                }
            }
        }
        if let Some(freezer) = freezer {
            if freezer.delays_stops() {
                freezer.thaw().map_err(|e| SeizeError::Freezer { pid: root, what: e.to_string() })?;
            }
            while let Some(&(index, tid, suspended)) = pending.first() {
                let deadline = timeout.map(|t| (Instant::now() + t, t));
                let thread = seize_finish(frozen.processes[index].pid, tid, suspended, deadline)?;
                frozen.processes[index].threads.push(thread);
                pending.remove(0);
            }
            freezer.thaw().map_err(|e| SeizeError::Freezer { pid: root, what: e.to_string() })?;
        }
        Ok(())
    }

    /// Detaches every thread. Each is in the PTRACE_EVENT_STOP of its seize, or back in
    /// one with its own registers and mask (the parasite's guarantee), so the kernel
    /// restarts an interrupted syscall exactly as it would have without the dump; a
    /// thread that restarts one is detached at its entry (`release_thread`).
    pub(crate) fn release(&mut self) {
        self.release_with(false);
    }

    /// Like `release`, but every process is left stopped: `--leave-stopped`. SIGSTOP
    /// goes to each process once its threads are detached (queued before, a thread
    /// run to its syscall's restart would take it as a ptrace stop instead).
    pub(crate) fn release_stopped(&mut self) {
        self.release_with(true);
    }

    fn release_with(&mut self, leave_stopped: bool) {
        for process in &self.processes {
            for thread in &process.threads {
                release_thread(process.pid, thread);
            }
            if leave_stopped && !process.is_zombie() {
                let _ = sys::send_signal(process.pid, libc::SIGSTOP);
            } else if process.continued {
                let _ = sys::send_signal(process.pid, process.stop_signal());
            }
        }
        self.finished = true;
        if leave_stopped {
            // Return once the tree is stopped, not merely sent its SIGSTOP (a thread
            // running on a busy CPU takes it a moment later).
            let deadline = Instant::now() + Duration::from_secs(2);
            for thread in self.processes.iter().filter(|p| !p.is_zombie()).flat_map(|p| &p.threads) {
                while fs::read_to_string(format!("/proc/{}/stat", thread.tid))
                    .is_ok_and(|text| procfs::parse_stat(&text).is_ok_and(|stat| stat.state == 'R' || stat.state == 'S' || stat.state == 'D'))
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// Kills the tree after a good dump and waits until every thread is gone.
    pub(crate) fn kill(&mut self) {
        for process in &self.processes {
            let _ = sys::send_signal(process.pid, libc::SIGKILL);
        }
        // Children before parents and other threads before leaders: a leader's exit is
        // reported only after its threads', and a pid namespace's init finishes dying
        // only once every other task in it is gone.
        for process in self.processes.iter().rev() {
            for thread in process.threads.iter().rev() {
                while let Ok(sys::WaitEvent::Stopped { .. }) = sys::wait_thread(thread.tid) {}
            }
        }
        self.finished = true;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.finished {
            self.release();
        }
    }
}

/// Whether process `pid`, in a frozen cgroup, is group-stopped (SIGSTOP, SIGTSTP). A
/// frozen task reads `D` in /proc/PID/stat whatever it did before, so its stop shows
/// only in where it sleeps: `do_signal_stop` (/proc/PID/wchan).
fn stopped_while_frozen(pid: i32, state: char) -> bool {
    state == 'D' && fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|wchan| wchan.trim() == "do_signal_stop")
}

/// Detaches `thread`, in the PTRACE_EVENT_STOP of its seize with its seized registers
/// and mask. A thread seized inside a syscall that the kernel restarts (pause, read,
/// futex wait, a sleep) is first let run, untouched, with PTRACE_SYSCALL: the kernel
/// restarts the syscall as it does when any stop ends, and the thread is detached at
/// the syscall's entry, so that a signal sent at any moment after the release
/// interrupts the syscall as it would have without the dump. Detached in its stop, the
/// thread would leave the stop, have the syscall restarted, and only then go back to
/// the syscall instruction in user space: a signal arriving in between (the thread
/// preempted on a busy machine) was handled there, before the syscall began again,
/// which then slept through it (a lost wake-up for `while (!flag) pause();`). A signal
/// already pending when the thread leaves its stop stops it in get_signal first
/// (signal-delivery-stop, registers as seized): it is detached there with that signal,
/// which the kernel then delivers with its own siginfo, the syscall interrupted.
fn release_thread(pid: i32, thread: &FrozenThread) {
    let tid = thread.tid;
    let gpr = &thread.regs.gpr;
    let restarts = HostArch::ip(&HostArch::resume_regs(gpr, true)) != HostArch::ip(gpr);
    let mut signal = 0;
    if restarts && sys::continue_to_syscall(tid).is_ok() {
        let deadline = Instant::now() + RELEASE_STOP_TIMEOUT;
        match wait_stop(pid, tid, Some((deadline, RELEASE_STOP_TIMEOUT))) {
            Ok(sys::WaitEvent::Stopped { signal: stopped, event: 0 }) if stopped != (libc::SIGTRAP | 0x80) => signal = stopped,
            Ok(sys::WaitEvent::Stopped { .. }) => {}
            // Gone, or not stopped in time (frozen by someone else's freezer, say): the
            // detach below fails, and crust's exit lets it go.
            Ok(_) => return,
            Err(error) => log::warn!("release tid {tid}: {error}"),
        }
    }
    if let Err(error) = sys::detach_thread(tid, signal) {
        log::debug!("release tid {tid}: PTRACE_DETACH: {error}");
    }
}

/// How long a released thread may take from its seize stop to its syscall's entry.
const RELEASE_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed seize: the cgroup (if any) is thawed, and each thread seized but not yet
/// waited for is waited for (its interrupt's stop comes once it runs) and detached.
fn abandon(pending: &[(usize, i32, bool)], freezer: Option<&Freezer>) {
    if let Some(freezer) = freezer {
        let _ = freezer.thaw();
    }
    for &(_, tid, _) in pending {
        let deadline = Instant::now() + Duration::from_secs(2);
        // A signal that stopped the thread before the interrupt goes back with it.
        let signal = match wait_stop(tid, tid, Some((deadline, Duration::from_secs(2)))) {
            Ok(sys::WaitEvent::Stopped { event, signal, .. }) if event != libc::PTRACE_EVENT_STOP => signal,
            _ => 0,
        };
        let _ = sys::detach_thread(tid, signal);
    }
}

/// A pid as its own (innermost) pid namespace sees it: the last `NSpid:` field.
fn virtual_pid(pid: i32) -> Result<i32, SeizeError> {
    virtual_pid_of_thread(pid, pid)
}

fn virtual_pid_of_thread(pid: i32, tid: i32) -> Result<i32, SeizeError> {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).map_err(io_err(pid, "read status"))?;
    procfs::parse_nspid(&status)
        .ok_or_else(|| SeizeError::Unsupported { pid, what: format!("tid {tid} without an NSpid line") })
}

impl Frozen {
    /// The tree's own view of a host pid; outside the tree, the host pid itself unless
    /// the tree has its own pid namespace (then the pid cannot be represented).
    pub(crate) fn to_virtual(&self, host: i32, what: &str) -> Result<i32, OutsideNamespace> {
        match self.virt.get(&host) {
            Some(&v) => Ok(v),
            None if !self.own_pid_ns => Ok(host),
            None => Err(OutsideNamespace { pid: host, what: format!("{what} {host} outside the dumped pid namespace") }),
        }
    }
}

pub(crate) fn read_stat(pid: i32) -> Result<procfs::Stat, SeizeError> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(io_err(pid, "read stat"))?;
    procfs::parse_stat(&text).map_err(|source| SeizeError::Parse { pid, source })
}

pub(crate) fn list_threads(pid: i32) -> Result<Vec<i32>, SeizeError> {
    let dir = format!("/proc/{pid}/task");
    let mut tids: Vec<i32> = fs::read_dir(&dir)
        .map_err(io_err(pid, format!("read {dir}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    // The leader first.
    if let Some(index) = tids.iter().position(|&t| t == pid) {
        tids.remove(index);
        tids.insert(0, pid);
    }
    Ok(tids)
}

/// The children of every thread `tids` of a stopped process, in pid order.
fn children_of(pid: i32, tids: &[i32]) -> Result<Vec<i32>, SeizeError> {
    let mut children = Vec::new();
    for tid in tids {
        let path = format!("/proc/{pid}/task/{tid}/children");
        let text = fs::read_to_string(&path).map_err(io_err(pid, format!("read {path}")))?;
        children.extend(text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
    }
    children.sort_unstable();
    children.dedup();
    Ok(children)
}

