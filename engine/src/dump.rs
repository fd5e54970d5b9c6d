//! The dump pipeline: freeze a process tree (every thread of every process), collect,
//! dump memory and files, write images, then kill or release the tree.
//!
//! Invariant: until the last image is written the tree is only ever stopped; any error
//! (or an injected fault) releases it exactly as it was, through [`Frozen`]'s Drop.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crust_arch::{Abi, Host, HostArch, Sys, ThreadRegs};
use crust_images::pb;
use crust_images::{ImageKind, ImageWriter};

use crate::infect::{self, RemoteThread};
use crate::files::{DumpedFd, FileTable};
use crate::procfs;
use crate::sys;

type Regs = <HostArch as Abi>::Regs;

/// What `crust dump` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// The process to dump.
    pub pid: i32,
    /// Directory the images are written to.
    pub dir: PathBuf,
    /// Leave the target running after a good dump (default: kill it).
    pub leave_running: bool,
    /// Dump established TCP connections with TCP_REPAIR, locking them with nftables
    /// until the restore.
    pub tcp_established: bool,
    /// The target is attached to the caller's terminal session.
    pub shell_job: bool,
    /// With `leave_running`: copy every page while the tree is frozen, instead of
    /// the copy-on-write snapshot (`snapshot.rs`) that releases the tree first.
    pub frozen_copy: bool,
    /// Fault injection for tests: fail right after this step.
    pub fail_after: Option<DumpStep>,
    /// An earlier dump (a pre-dump) this one builds on, relative to `dir` unless
    /// absolute: pages equal to its pages are not written again (`--prev-images-dir`).
    pub parent: Option<PathBuf>,
}

/// The steps of a dump, in order (fault injection names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DumpStep {
    Seize,
    Collect,
    Parasite,
    Memory,
    Files,
    Images,
    /// Pages copied after the tree runs again (copy-on-write `--leave-running`); an
    /// injected fault hits halfway through them.
    Pages,
    /// The same place, but crust kills itself (SIGKILL) instead of failing: what the
    /// kernel does with the target when crust dies mid-copy.
    PagesKilled,
}

impl DumpStep {
    /// All steps in order.
    pub const ALL: [DumpStep; 8] = [
        Self::Seize,
        Self::Collect,
        Self::Parasite,
        Self::Memory,
        Self::Files,
        Self::Images,
        Self::Pages,
        Self::PagesKilled,
    ];

    /// The step's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seize => "seize",
            Self::Collect => "collect",
            Self::Parasite => "parasite",
            Self::Memory => "memory",
            Self::Files => "files",
            Self::Images => "images",
            Self::Pages => "pages",
            Self::PagesKilled => "pages-killed",
        }
    }

    /// Parses a step name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Figures of a finished dump.
#[derive(Clone, Debug, Default)]
pub struct DumpReport {
    /// How long the target was stopped.
    pub frozen: Duration,
    /// Wall time of the whole dump.
    pub total: Duration,
    /// Pages written, over all processes.
    pub pages: u64,
    /// Memory areas recorded, over all processes.
    pub vmas: usize,
    /// Processes dumped (zombies included).
    pub processes: usize,
    /// Threads dumped.
    pub threads: usize,
}

/// Why a dump failed. The target was released unchanged.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {source}")]
    Parse { pid: i32, source: procfs::ParseError },
    #[error("dump pid {pid}: {source}")]
    Infect { pid: i32, source: infect::InfectError },
    #[error("dump pid {pid}: {source}")]
    Arch { pid: i32, source: crust_arch::HostError },
    #[error("dump pid {pid}: {source}")]
    Image { pid: i32, source: crust_images::ImageError },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    #[error("dump pid {pid}: remote {call:?} failed: errno {errno}")]
    RemoteSyscall { pid: i32, call: Sys, errno: i64 },
    #[error("dump pid {pid}: fault injected after step {step}")]
    FaultInjected { pid: i32, step: &'static str },
    /// The copy after a copy-on-write release failed; `frozen`: how long the tree had
    /// been frozen before that release.
    #[error("dump pid {pid}: {source}")]
    Snapshot { pid: i32, source: crate::snapshot::CopyError, frozen: Duration },
}

pub(crate) fn io_err(pid: i32, what: impl Into<String>) -> impl FnOnce(io::Error) -> DumpError {
    let what = what.into();
    move |source| DumpError::Io { pid, what, source }
}

/// One stopped thread and what is needed to let it go unchanged.
struct FrozenThread {
    tid: i32,
    rseq: Option<sys::RseqConfig>,
    regs: ThreadRegs<Regs>,
    sigmask: u64,
    /// SECCOMP_MODE_* of the thread, and its filters oldest first (filter mode).
    seccomp_mode: u32,
    seccomp_filters: Vec<Vec<u8>>,
}

/// One process of the tree.
struct FrozenProcess {
    pid: i32,
    ppid: i32,
    /// /proc/PID/stat as read before the seize (state, session, group).
    stat: procfs::Stat,
    /// Seized threads, the leader first; empty for a zombie.
    threads: Vec<FrozenThread>,
    /// It was stopped (SIGSTOP/SIGTSTP) before the dump.
    stopped: bool,
    /// Its leader thread exited (pthread_exit) while other threads run on: /proc/PID
    /// then shows a zombie with no memory or files, which only the live threads'
    /// /proc entries show.
    leader_gone: bool,
}

impl FrozenProcess {
    fn is_zombie(&self) -> bool {
        self.stat.state == 'Z' && !self.leader_gone
    }

    /// The pid whose /proc entries (memory, files, cwd) and whose ptrace stop serve for
    /// the whole process: the leader, or its first live thread once the leader is gone.
    /// /proc/TID works for any thread, listed or not.
    fn proc_pid(&self) -> i32 {
        self.threads.first().map(|t| t.tid).unwrap_or(self.pid)
    }

    /// The signal that stopped a stopped process (stat's exit_code holds it).
    fn stop_signal(&self) -> i32 {
        if (1..32).contains(&self.stat.exit_code) {
            self.stat.exit_code
        } else {
            libc::SIGSTOP
        }
    }
}

/// The seized tree. Dropping it releases every thread exactly as it was.
struct Frozen {
    processes: Vec<FrozenProcess>,
    /// Pids and tids as the tree sees them (its own pid namespace), by host pid.
    virt: BTreeMap<i32, i32>,
    /// The tree runs in a pid namespace of its own, whose init is the root.
    own_pid_ns: bool,
    /// Registers were changed by remote syscalls and must be put back.
    touched: bool,
    finished: bool,
}

fn seize_one(pid: i32, tid: i32) -> Result<FrozenThread, DumpError> {
    // Seccomp filters must not see the injected syscalls (strict mode would kill the
    // target at the first one): suspend them while seized, if crust may (CAP_SYS_ADMIN).
    let suspended = match sys::seize_thread(tid, libc::PTRACE_O_TRACESYSGOOD | sys::PTRACE_O_SUSPEND_SECCOMP) {
        Ok(()) => true,
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
            sys::seize_thread(tid, libc::PTRACE_O_TRACESYSGOOD).map_err(io_err(pid, format!("seize tid {tid}")))?;
            false
        }
        Err(error) => return Err(io_err(pid, format!("seize tid {tid}"))(error)),
    };
    sys::interrupt_thread(tid).map_err(io_err(pid, format!("interrupt tid {tid}")))?;
    loop {
        match sys::wait_thread(tid).map_err(io_err(pid, format!("wait tid {tid}")))? {
            sys::WaitEvent::Stopped { event, .. } if event == libc::PTRACE_EVENT_STOP => break,
            sys::WaitEvent::Stopped { signal, .. } => {
                // A signal arrived first: keep it for the thread, stop again.
                sys::continue_thread(tid, signal).map_err(io_err(pid, "re-inject signal"))?;
            }
            _ => {
                return Err(DumpError::Io {
                    pid,
                    what: format!("tid {tid} exited while being seized"),
                    source: io::Error::from_raw_os_error(libc::ESRCH),
                })
            }
        }
    }
    let regs = HostArch::read_regs(tid).map_err(|source| DumpError::Arch { pid, source })?;
    let sigmask = sys::read_sigmask(tid).map_err(io_err(pid, "PTRACE_GETSIGMASK"))?;
    let rseq = sys::read_rseq_config(tid).map_err(io_err(pid, "PTRACE_GET_RSEQ_CONFIGURATION"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).map_err(io_err(pid, "read thread status"))?;
    let seccomp_mode: u32 = procfs::parse_key_values(&status).get("Seccomp").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut seccomp_filters = Vec::new();
    if seccomp_mode != 0 && !suspended {
        return Err(DumpError::Unsupported { pid, what: format!("tid {tid} under seccomp without CAP_SYS_ADMIN to suspend it") });
    }
    if seccomp_mode == SECCOMP_MODE_FILTER {
        while let Some(filter) =
            sys::read_seccomp_filter(tid, seccomp_filters.len() as u64).map_err(io_err(pid, format!("tid {tid}: PTRACE_SECCOMP_GET_FILTER")))?
        {
            seccomp_filters.push(filter);
        }
    }
    Ok(FrozenThread { tid, rseq, regs, sigmask, seccomp_mode, seccomp_filters })
}

impl Frozen {
    /// Seizes `root` and every descendant, each process's threads until no new one
    /// appears, parents before children (a stopped process cannot fork).
    fn seize_tree(root: i32) -> Result<Frozen, DumpError> {
        let mut frozen = Frozen { processes: Vec::new(), virt: BTreeMap::new(), own_pid_ns: false, touched: false, finished: false };
        let ns_of = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        frozen.own_pid_ns = ns_of(root) != fs::read_link("/proc/self/ns/pid").ok();
        if frozen.own_pid_ns && virtual_pid(root)? != 1 {
            return Err(DumpError::Unsupported {
                pid: root,
                what: "a tree in a pid namespace whose root is not the namespace's init (pid 1)".into(),
            });
        }
        let mut queue = std::collections::VecDeque::from([(root, 0)]);
        while let Some((pid, ppid)) = queue.pop_front() {
            let stat = read_stat(pid)?;
            let leader_gone = stat.state == 'Z' && list_threads(pid)?.iter().any(|&t| t != pid);
            let process = FrozenProcess { pid, ppid, stopped: stat.state == 'T', stat, threads: Vec::new(), leader_gone };
            if process.is_zombie() {
                frozen.processes.push(process);
                continue;
            }
            // A stopped (SIGSTOP/SIGTSTP) process would re-enter its group stop before any
            // injected syscall ran: continue it first, and stop it again on release (the
            // images record it as stopped, so restore stops it too).
            if process.stopped {
                sys::send_signal(pid, libc::SIGCONT).map_err(io_err(pid, "SIGCONT a stopped process"))?;
                for _ in 0..2000 {
                    if read_stat(pid)?.state != 'T' {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            frozen.processes.push(process);
            let index = frozen.processes.len() - 1;
            loop {
                let known: Vec<i32> = frozen.processes[index].threads.iter().map(|t| t.tid).collect();
                let gone = frozen.processes[index].leader_gone;
                let fresh: Vec<i32> = list_threads(pid)?.into_iter().filter(|t| !known.contains(t) && (!gone || *t != pid)).collect();
                if fresh.is_empty() {
                    break;
                }
                for tid in fresh {
                    let thread = seize_one(pid, tid)?;
                    frozen.processes[index].threads.push(thread);
                }
            }
            for child in children_of(pid, &frozen.processes[index].threads)? {
                queue.push_back((child, pid));
            }
        }
        for process in &frozen.processes {
            frozen.virt.insert(process.pid, virtual_pid(process.pid)?);
            for thread in &process.threads {
                frozen.virt.insert(thread.tid, virtual_pid_of_thread(process.pid, thread.tid)?);
            }
        }
        Ok(frozen)
    }

    /// Puts registers and masks back and detaches every thread.
    fn release(&mut self) {
        for process in &self.processes {
            for thread in &process.threads {
                if self.touched {
                    // The thread stopped at an injected syscall's exit: restart what it
                    // was doing the way the kernel would have.
                    let resume = HostArch::resume_regs(&thread.regs.gpr, true);
                    let restarts = HostArch::ip(&resume) != HostArch::ip(&thread.regs.gpr);
                    if infect::release_thread(thread.tid, &resume, restarts, thread.sigmask, 0).is_ok() {
                        continue;
                    }
                }
                let _ = sys::write_sigmask(thread.tid, thread.sigmask);
                let _ = sys::detach_thread(thread.tid, 0);
            }
            if process.stopped {
                let _ = sys::send_signal(process.pid, process.stop_signal());
            }
        }
        self.finished = true;
    }

    /// Kills the tree after a good dump and waits until every thread is gone.
    fn kill(&mut self) {
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

/// A pid as its own (innermost) pid namespace sees it: the last `NSpid:` field.
fn virtual_pid(pid: i32) -> Result<i32, DumpError> {
    virtual_pid_of_thread(pid, pid)
}

fn virtual_pid_of_thread(pid: i32, tid: i32) -> Result<i32, DumpError> {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).map_err(io_err(pid, "read status"))?;
    procfs::parse_key_values(&status)
        .get("NSpid")
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
        .ok_or_else(|| DumpError::Unsupported { pid, what: format!("tid {tid} without an NSpid line") })
}

impl Frozen {
    /// The tree's own view of a host pid; outside the tree, the host pid itself unless
    /// the tree has its own pid namespace (then the pid cannot be represented).
    fn to_virtual(&self, host: i32, what: &str) -> Result<i32, DumpError> {
        match self.virt.get(&host) {
            Some(&v) => Ok(v),
            None if !self.own_pid_ns => Ok(host),
            None => Err(DumpError::Unsupported { pid: host, what: format!("{what} {host} outside the dumped pid namespace") }),
        }
    }
}

fn read_stat(pid: i32) -> Result<procfs::Stat, DumpError> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(io_err(pid, "read stat"))?;
    procfs::parse_stat(&text).map_err(|source| DumpError::Parse { pid, source })
}

fn list_threads(pid: i32) -> Result<Vec<i32>, DumpError> {
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

/// The children of every thread of a stopped process, in pid order.
fn children_of(pid: i32, threads: &[FrozenThread]) -> Result<Vec<i32>, DumpError> {
    let mut children = Vec::new();
    for thread in threads {
        let path = format!("/proc/{pid}/task/{}/children", thread.tid);
        let text = fs::read_to_string(&path).map_err(io_err(pid, format!("read {path}")))?;
        children.extend(text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
    }
    children.sort_unstable();
    children.dedup();
    Ok(children)
}

/// Dumps the process tree rooted at `options.pid` into `options.dir`.
pub fn dump(options: &DumpOptions) -> Result<DumpReport, DumpError> {
    match dump_once(options) {
        Err(DumpError::Snapshot { pid, source: source @ crate::snapshot::CopyError::Broken { .. }, frozen }) => {
            // The target runs on unharmed; a dump that copies while frozen does not
            // depend on what it does next. The report counts both freezes.
            log::warn!("dump pid {pid}: {source}; dumping again, copying the pages while frozen");
            let mut report = dump_once(&DumpOptions { frozen_copy: true, ..options.clone() })?;
            report.frozen += frozen;
            Ok(report)
        }
        other => other,
    }
}

fn dump_once(options: &DumpOptions) -> Result<DumpReport, DumpError> {
    let root = options.pid;
    let started = Instant::now();
    let fault = |step: DumpStep| -> Result<(), DumpError> {
        if options.fail_after == Some(step) {
            if step == DumpStep::PagesKilled {
                // What the kernel does with the target when crust dies right here.
                let _ = sys::send_signal(std::process::id() as i32, libc::SIGKILL);
            }
            return Err(DumpError::FaultInjected { pid: root, step: step.name() });
        }
        Ok(())
    };
    fs::create_dir_all(&options.dir).map_err(io_err(root, format!("create {}", options.dir.display())))?;
    let parent_dir = options.parent.as_ref().map(|p| link_parent(root, &options.dir, p)).transpose()?;
    if read_stat(root)?.state == 'Z' && !list_threads(root)?.iter().any(|&t| t != root) {
        return Err(DumpError::Unsupported { pid: root, what: "a zombie as the root of the tree".into() });
    }

    let mut frozen = Frozen::seize_tree(root)?;
    let frozen_at = Instant::now();
    log::info!(
        "seized {} processes, {} threads",
        frozen.processes.len(),
        frozen.processes.iter().map(|p| p.threads.len()).sum::<usize>()
    );
    fault(DumpStep::Seize)?;
    let live: Vec<i32> = frozen.processes.iter().filter(|p| !p.is_zombie()).map(|p| p.proc_pid()).collect();
    let own_ipc_ns = crate::ipc::tree_has_own_namespace(&live).map_err(|(pid, what)| DumpError::Unsupported { pid, what })?;

    let mut collected = Vec::new();
    for process in frozen.processes.iter().filter(|p| !p.is_zombie()) {
        collected.push(collect(process.proc_pid())?);
    }
    fault(DumpStep::Collect)?;

    frozen.touched = true;
    let mut queries = Vec::new();
    for (process, collected) in frozen.processes.iter().filter(|p| !p.is_zombie()).zip(&collected) {
        queries.push(query_process(process, collected)?);
    }
    fault(DumpStep::Parasite)?;

    let mut files = FileTable::default();
    files.tcp_established = options.tcp_established;
    let mut memory = Vec::new();
    let (mut pages, mut vma_count) = (0, 0);
    // Processes whose pages are copied after the release (copy-on-write snapshot); their
    // userfaultfds close (lifting every protection) on every error path.
    let mut armed = Vec::new();
    let cow = options.leave_running && !options.frozen_copy;
    for (index, (process, collected)) in frozen.processes.iter().filter(|p| !p.is_zombie()).zip(&collected).enumerate() {
        let pid = process.proc_pid();
        let mem = fs::File::open(format!("/proc/{pid}/mem")).map_err(io_err(pid, "open /proc/PID/mem"))?;
        // Images name processes by their pid in the tree's own namespace.
        let image_pid = frozen.to_virtual(process.pid, "pid")?;
        let parent = match &parent_dir {
            Some(dir) => crate::incremental::Parent::open(dir, image_pid as u64, sys::page_size())
                .map_err(|what| DumpError::Io { pid, what: "read the parent dump".into(), source: io::Error::other(what) })?,
            None => None,
        };
        // Pages compared with a parent dump are read while frozen: no snapshot then.
        if cow && parent.is_none() {
            match open_snapshot(process, collected, &mem) {
                Ok(arming) => {
                    let (vmas, written, process_armed) = crate::memory::dump_memory_armed(
                        pid, &options.dir, collected, &mem, &mut files, index as u32 + 1, image_pid, arming,
                    )?;
                    pages += written;
                    vma_count += vmas.len();
                    memory.push(vmas);
                    armed.push(process_armed);
                    continue;
                }
                Err(error) => log::info!("pid {pid}: no copy-on-write snapshot, pages copied while frozen: {error}"),
            }
        }
        let pipes = if parent.is_some() { None } else { open_page_pipes(process, collected, &mem) };
        let (vmas, written) = crate::memory::dump_memory(
            pid,
            &options.dir,
            collected,
            &mem,
            &mut files,
            index as u32 + 1,
            image_pid,
            pipes,
            parent.as_ref(),
        )?;
        pages += written;
        vma_count += vmas.len();
        memory.push(vmas);
    }
    // The fault handler runs from here on: the tree stays frozen until the images are
    // written, but a thread leaving its stop may already write a protected page.
    let snapshot = crate::snapshot::Snapshot::start(armed).map_err(io_err(root, "start the userfaultfd handler"))?;
    fault(DumpStep::Memory)?;

    let mut process_files = Vec::new();
    for (process, collected) in frozen.processes.iter().filter(|p| !p.is_zombie()).zip(&collected) {
        let pid = process.proc_pid();
        let fds = crate::files::collect_fds(pid, options.shell_job, &mut files)?;
        let cwd_id = files.add_path(pid, &collected.cwd, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let root_id = files.add_path(pid, &collected.root, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let exe_id = files.add_path(pid, &collected.exe, libc::O_RDONLY)?;
        process_files.push((fds, cwd_id, root_id, exe_id));
    }
    crate::files::check_tree(&files)?;
    let virtual_of = |host: i32| {
        let in_tree = frozen.processes.iter().any(|p| p.pid == host || p.threads.iter().any(|t| t.tid == host));
        in_tree.then(|| frozen.to_virtual(host, "pid").ok()).flatten()
    };
    crate::files::resolve_pidfds(&mut files, virtual_of)?;
    crate::files::finish_ptys(&mut files, options.shell_job, virtual_of)?;
    fault(DumpStep::Files)?;

    if own_ipc_ns {
        let dumped = crate::ipc::dump_namespace(frozen.processes[0].proc_pid(), &options.dir)
            .map_err(|what| DumpError::Io { pid: root, what: "IPC namespace".into(), source: io::Error::other(what) })?;
        log::info!(
            "IPC namespace: {} shared memory segments, {} semaphore sets, {} message queues",
            dumped.segments,
            dumped.semaphore_sets,
            dumped.queues
        );
    }
    write_images(options, &frozen, &collected, &queries, &files, &process_files, memory, own_ipc_ns)?;
    fault(DumpStep::Images)?;

    let processes = frozen.processes.len();
    let threads = frozen.processes.iter().map(|p| p.threads.len()).sum();
    if options.leave_running {
        if snapshot.is_empty() {
            fault(DumpStep::Pages)?;
            fault(DumpStep::PagesKilled)?;
        }
        files.release_tcp();
        frozen.release();
    } else {
        fault(DumpStep::Pages)?;
        fault(DumpStep::PagesKilled)?;
        files.keep_tcp_locked();
        frozen.kill();
    }
    let frozen_for = frozen_at.elapsed();
    if !snapshot.is_empty() {
        let mut copy_options = crate::snapshot::CopyOptions::default();
        if matches!(options.fail_after, Some(DumpStep::Pages | DumpStep::PagesKilled)) {
            copy_options.fail_after_pages = Some(pages / 2);
            copy_options.kill_instead = options.fail_after == Some(DumpStep::PagesKilled);
        }
        snapshot.copy(copy_options).map_err(|source| match source {
            crate::snapshot::CopyError::FaultInjected => DumpError::FaultInjected { pid: root, step: DumpStep::Pages.name() },
            source => DumpError::Snapshot { pid: root, source, frozen: frozen_for },
        })?;
    }
    Ok(DumpReport { frozen: frozen_for, total: started.elapsed(), pages, vmas: vma_count, processes, threads })
}

/// Links `dir/parent` to the parent dump `parent` (kept as given, like CRIU, so a
/// relative path stays relative to `dir`) and returns the link.
fn link_parent(pid: i32, dir: &Path, parent: &Path) -> Result<PathBuf, DumpError> {
    let link = dir.join(crate::page_sources::PARENT_LINK);
    let target = if parent.is_absolute() { parent.to_path_buf() } else { dir.join(parent) };
    if !target.join(ImageKind::Inventory.file_name(0)).exists() {
        return Err(DumpError::Io {
            pid,
            what: format!("--prev-images-dir {}: no dump there ({} has no inventory.img)", parent.display(), target.display()),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
    }
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(parent, &link).map_err(io_err(pid, format!("link {} to {}", link.display(), parent.display())))?;
    Ok(link)
}

/// What /proc tells about the target.
pub(crate) struct Collected {
    stat: procfs::Stat,
    status: BTreeMap<String, String>,
    pub(crate) smaps: Vec<procfs::SmapsEntry>,
    auxv: Vec<u64>,
    exe: PathBuf,
    cwd: PathBuf,
    root: PathBuf,
    personality: u32,
    rlimits: Vec<(u64, u64)>,
}

fn collect(pid: i32) -> Result<Collected, DumpError> {
    let read = |name: &str| {
        fs::read_to_string(format!("/proc/{pid}/{name}")).map_err(io_err(pid, format!("read /proc/{pid}/{name}")))
    };
    let link = |name: &str| {
        fs::read_link(format!("/proc/{pid}/{name}")).map_err(io_err(pid, format!("readlink /proc/{pid}/{name}")))
    };
    let stat = procfs::parse_stat(&read("stat")?).map_err(|source| DumpError::Parse { pid, source })?;
    let status = procfs::parse_key_values(&read("status")?);
    let smaps = procfs::parse_smaps(&read("smaps")?).map_err(|source| DumpError::Parse { pid, source })?;
    let auxv_bytes = fs::read(format!("/proc/{pid}/auxv")).map_err(io_err(pid, "read auxv"))?;
    let auxv = auxv_bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
    let personality = u32::from_str_radix(read("personality")?.trim(), 16).unwrap_or(0);
    let mut rlimits = Vec::new();
    for resource in 0..16u32 {
        match sys::read_rlimit(pid, resource) {
            Ok(limit) => rlimits.push(limit),
            // Another user's limits need CAP_SYS_RESOURCE: the process itself tells them
            // (`query_process`).
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                rlimits.clear();
                break;
            }
            Err(error) => return Err(io_err(pid, format!("prlimit {resource}"))(error)),
        }
    }
    Ok(Collected {
        stat,
        status,
        smaps,
        auxv,
        exe: link("exe")?,
        cwd: link("cwd")?,
        root: link("root")?,
        personality,
        rlimits,
    })
}

/// Per-thread state only the thread itself can tell, asked through remote syscalls.
struct ThreadQueries {
    altstack: pb::ThreadSasEntry,
    clear_tid_addr: u64,
    private_pending: Vec<[u8; sys::SIGINFO_SIZE]>,
    robust_list: (u64, u64),
    comm: String,
    creds: pb::CredsEntry,
    pdeath_sig: u32,
}

/// Per-process state asked through remote syscalls (in the leader).
struct ProcessQueries {
    sigactions: Vec<pb::SaEntry>,
    itimers: [pb::ItimerEntry; 3],
    /// Resource limits, asked here when `Collected::rlimits` could not read them.
    rlimits: Vec<(u64, u64)>,
    /// POSIX timers, `notify_thread_id` still the host tid.
    posix_timers: Vec<pb::PosixTimerEntry>,
    brk: u64,
    dumpable: i32,
    shared_pending: Vec<[u8; sys::SIGINFO_SIZE]>,
    threads: Vec<ThreadQueries>,
    child_subreaper: bool,
    thp_disabled: bool,
}

/// A process with fewer resident bytes has its pages copied without pipes.
const PIPES_FROM_RESIDENT: u64 = 16 << 20;

/// Pipes the target fills with its own pages (`remote_pipes.rs`), or `None` where they
/// cannot be made (no vDSO, no free fd, ...): its pages are then copied through crust.
fn open_page_pipes(
    process: &FrozenProcess,
    collected: &Collected,
    mem: &fs::File,
) -> Option<(crate::remote_pipes::RemotePipes, Vec<std::os::fd::OwnedFd>)> {
    let pid = process.proc_pid();
    // Setting the pipes up costs about 14 injected syscalls: not worth it for a small
    // process (its resident pages from /proc/PID/statm).
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    if resident_pages * sys::page_size() < PIPES_FROM_RESIDENT {
        return None;
    }
    let leader = process.threads.first()?;
    let vdso = collected.smaps.iter().find(|e| e.map.name == "[vdso]")?;
    let opened = infect::find_syscall_in_vdso(leader.tid, mem, vdso.map.start, vdso.map.end)
        .map_err(std::io::Error::other)
        .and_then(|syscall_ip| crate::remote_pipes::RemotePipes::open(pid, leader.tid, syscall_ip, leader.regs.gpr));
    match opened {
        Ok(pipes) => Some(pipes),
        Err(error) => {
            log::debug!("pid {pid}: pages copied through crust, no pipes in the target: {error}");
            None
        }
    }
}

/// The process's userfaultfd for the copy-on-write snapshot (`snapshot.rs`), made in its
/// leader; an error where it cannot have one (then its pages are copied while frozen).
fn open_snapshot(
    process: &FrozenProcess,
    collected: &Collected,
    mem: &fs::File,
) -> Result<crate::snapshot::Arming, String> {
    let leader = process.threads.first().ok_or("no thread")?;
    let vdso = collected.smaps.iter().find(|e| e.map.name == "[vdso]").ok_or("no vdso")?;
    let syscall_ip = infect::find_syscall_in_vdso(leader.tid, mem, vdso.map.start, vdso.map.end).map_err(|e| e.to_string())?;
    crate::snapshot::Arming::open(process.proc_pid(), leader.tid, syscall_ip, leader.regs.gpr).map_err(|e| format!("userfaultfd: {e}"))
}

fn query_process(process: &FrozenProcess, collected: &Collected) -> Result<ProcessQueries, DumpError> {
    let pid = process.proc_pid();
    let leader = &process.threads[0];
    let shared_pending =
        sys::peek_pending_signals(leader.tid, true).map_err(io_err(pid, "PTRACE_PEEKSIGINFO shared"))?;
    // Written only where mmap's arguments go through memory (`RemoteThread::mmap`).
    let mem = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(io_err(pid, "open /proc/PID/mem"))?;
    let vdso = collected
        .smaps
        .iter()
        .find(|e| e.map.name == "[vdso]")
        .ok_or_else(|| DumpError::Unsupported { pid, what: "a process without a vdso".into() })?;
    let syscall_ip = infect::find_syscall_in_vdso(leader.tid, &mem, vdso.map.start, vdso.map.end)
        .map_err(|source| DumpError::Infect { pid, source })?;
    // Nothing is delivered while syscalls run in the threads.
    for thread in &process.threads {
        sys::write_sigmask(thread.tid, !0u64).map_err(io_err(pid, "PTRACE_SETSIGMASK"))?;
    }
    let call = |remote: &mut RemoteThread, call: Sys, args: [u64; 6]| -> Result<i64, DumpError> {
        let result = remote.syscall(call, args).map_err(|source| DumpError::Infect { pid, source })?;
        if (-4095..0).contains(&result) {
            return Err(DumpError::RemoteSyscall { pid, call, errno: -result });
        }
        Ok(result)
    };
    let mut remote = RemoteThread::new(leader.tid, syscall_ip, leader.regs.gpr);
    let page = sys::page_size();
    let scratch = remote
        .mmap(
            &mem,
            [0, page, (libc::PROT_READ | libc::PROT_WRITE) as u64, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, u64::MAX, 0],
        )
        .map_err(|source| DumpError::Infect { pid, source })?;
    if (-4095..0).contains(&scratch) {
        return Err(DumpError::RemoteSyscall { pid, call: Sys::Mmap, errno: -scratch });
    }
    let scratch = scratch as u64;
    let read_scratch = |len: usize| -> Result<Vec<u8>, DumpError> {
        let mut buf = vec![0u8; len];
        mem.read_exact_at(&mut buf, scratch).map_err(io_err(pid, "read scratch page"))?;
        Ok(buf)
    };
    let word = |b: &[u8], i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    // An `int` the kernel wrote at byte `offset` (the first half of a word only on
    // little-endian hosts).
    let int = |b: &[u8], offset: usize| u32::from_ne_bytes(b[offset..offset + 4].try_into().expect("4 bytes"));

    let result = (|| {
        let mut sigactions = Vec::new();
        for signal in 1..=64u64 {
            if signal == libc::SIGKILL as u64 || signal == libc::SIGSTOP as u64 {
                continue;
            }
            call(&mut remote, Sys::RtSigaction, [signal, 0, scratch, 8, 0, 0])?;
            let b = read_scratch(32)?;
            sigactions.push(pb::SaEntry {
                sigaction: word(&b, 0),
                flags: word(&b, 1),
                restorer: word(&b, 2),
                mask: word(&b, 3),
                ..Default::default()
            });
        }
        let mut itimers: [pb::ItimerEntry; 3] = Default::default();
        for (which, timer) in itimers.iter_mut().enumerate() {
            call(&mut remote, Sys::Getitimer, [which as u64, scratch, 0, 0, 0, 0])?;
            let b = read_scratch(32)?;
            *timer = pb::ItimerEntry { isec: word(&b, 0), iusec: word(&b, 1), vsec: word(&b, 2), vusec: word(&b, 3) };
        }
        let timers_text =
            fs::read_to_string(format!("/proc/{pid}/timers")).map_err(io_err(pid, "read /proc/PID/timers"))?;
        let listed = procfs::parse_timers(&timers_text)
            .map_err(|e| DumpError::Unsupported { pid, what: format!("/proc/{pid}/timers that does not parse ({e})") })?;
        let mut posix_timers = Vec::new();
        for timer in listed {
            call(&mut remote, Sys::TimerGettime, [timer.id as u64, scratch, 0, 0, 0, 0])?;
            let b = read_scratch(32)?;
            let overrun = call(&mut remote, Sys::TimerGetoverrun, [timer.id as u64, 0, 0, 0, 0, 0])?;
            posix_timers.push(pb::PosixTimerEntry {
                it_id: timer.id,
                clock_id: timer.clock,
                si_signo: timer.signo,
                it_sigev_notify: timer.notify,
                sival_ptr: timer.sival,
                overrun: overrun as u32,
                isec: word(&b, 0),
                insec: word(&b, 1),
                vsec: word(&b, 2),
                vnsec: word(&b, 3),
                notify_thread_id: (timer.notify & SIGEV_THREAD_ID != 0).then_some(timer.notify_pid),
            });
        }
        // The kernel lists them newest first.
        posix_timers.sort_by_key(|t| t.it_id);
        let mut rlimits = collected.rlimits.clone();
        if rlimits.is_empty() {
            for resource in 0..16u64 {
                call(&mut remote, Sys::Prlimit64, [0, resource, 0, scratch, 0, 0])?;
                let b = read_scratch(16)?;
                rlimits.push((word(&b, 0), word(&b, 1)));
            }
        }
        let brk = call(&mut remote, Sys::Brk, [0; 6])? as u64;
        let dumpable = call(&mut remote, Sys::Prctl, [libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0, 0])? as i32;
        let mut threads = Vec::new();
        for thread in &process.threads {
            let mut remote = RemoteThread::new(thread.tid, syscall_ip, thread.regs.gpr);
            call(&mut remote, Sys::Sigaltstack, [0, scratch, 0, 0, 0, 0])?;
            let b = read_scratch(24)?;
            let altstack = pb::ThreadSasEntry { ss_sp: word(&b, 0), ss_flags: int(&b, 8), ss_size: word(&b, 2) };
            call(&mut remote, Sys::Prctl, [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0])?;
            let clear_tid_addr = word(&read_scratch(8)?, 0);
            let private_pending =
                sys::peek_pending_signals(thread.tid, false).map_err(io_err(pid, "PTRACE_PEEKSIGINFO"))?;
            let robust_list = sys::read_robust_list(thread.tid).map_err(io_err(pid, "get_robust_list"))?;
            let comm = fs::read_to_string(format!("/proc/{pid}/task/{}/comm", thread.tid))
                .map_err(io_err(pid, "read thread comm"))?
                .trim_end_matches('\n')
                .to_string();
            let status = fs::read_to_string(format!("/proc/{pid}/task/{}/status", thread.tid))
                .map_err(io_err(pid, "read thread status"))?;
            let mut creds = creds_from_status(&procfs::parse_key_values(&status));
            creds.secbits = call(&mut remote, Sys::Prctl, [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0])? as u32;
            call(&mut remote, Sys::Prctl, [libc::PR_GET_PDEATHSIG as u64, scratch, 0, 0, 0, 0])?;
            let pdeath_sig = int(&read_scratch(4)?, 0);
            threads.push(ThreadQueries { altstack, clear_tid_addr, private_pending, robust_list, comm, creds, pdeath_sig });
        }
        call(&mut remote, Sys::Prctl, [libc::PR_GET_CHILD_SUBREAPER as u64, scratch, 0, 0, 0, 0])?;
        let child_subreaper = int(&read_scratch(4)?, 0) != 0;
        let thp_disabled = call(&mut remote, Sys::Prctl, [libc::PR_GET_THP_DISABLE as u64, 0, 0, 0, 0, 0])? != 0;
        Ok((sigactions, itimers, rlimits, posix_timers, brk, dumpable, threads, child_subreaper, thp_disabled))
    })();
    // The scratch page goes whatever happened.
    let unmapped = call(&mut remote, Sys::Munmap, [scratch, page, 0, 0, 0, 0]);
    let (sigactions, itimers, rlimits, posix_timers, brk, dumpable, threads, child_subreaper, thp_disabled) = result?;
    unmapped?;
    Ok(ProcessQueries { sigactions, itimers, rlimits, posix_timers, brk, dumpable, shared_pending, threads, child_subreaper, thp_disabled })
}

/// A process's group or session id as its own pid namespace numbers it: through the
/// dumped tree's pid map, or, for a leader that already exited (so is not in the tree),
/// from the innermost `NSpgid`/`NSsid` of /proc/PID/status.
fn ns_group_id(frozen: &Frozen, pid: i32, host_id: i32, key: &str, what: &str) -> Result<i32, DumpError> {
    match frozen.to_virtual(host_id, what) {
        Ok(id) => Ok(id),
        Err(error) => {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(io_err(pid, "read status"))?;
            let inner = procfs::parse_key_values(&status)
                .get(key)
                .and_then(|v| v.split_whitespace().last()?.parse::<i32>().ok())
                .filter(|&id| id > 0);
            // 0 there: the leader lives outside the namespace (a parent namespace's session).
            inner.ok_or(error)
        }
    }
}

const SECCOMP_MODE_FILTER: u32 = 2;

/// `sigev_notify`'s flag for a timer that signals one thread.
const SIGEV_THREAD_ID: u32 = 4;

/// CRIU's task states.
const TASK_ALIVE: u32 = 1;
const TASK_DEAD: u32 = 2;
const TASK_STOPPED: u32 = 3;

#[allow(clippy::too_many_arguments)] // one caller; each argument is a different part of the dump
fn write_images(
    options: &DumpOptions,
    frozen: &Frozen,
    collected: &[Collected],
    queries: &[ProcessQueries],
    files: &FileTable,
    process_files: &[(Vec<DumpedFd>, u32, u32, u32)],
    memory: Vec<Vec<pb::VmaEntry>>,
    own_ipc_ns: bool,
) -> Result<(), DumpError> {
    let root = options.pid;
    let dir = &options.dir;
    let image = |pid: i32| move |source| DumpError::Image { pid, source };
    let pid_ns_id = frozen.own_pid_ns.then_some(1);
    let ids_of = |index: usize| {
        let id = index as u32 + 1;
        let ipc_ns_id = own_ipc_ns.then_some(crate::ipc::NS_ID);
        pb::TaskKobjIdsEntry { vm_id: id, files_id: id, fs_id: id, sighand_id: id, pid_ns_id, ipc_ns_id, ..Default::default() }
    };
    let v = |host: i32, what: &str| frozen.to_virtual(host, what);

    let mut w = ImageWriter::create(dir, ImageKind::Inventory, 0).map_err(image(root))?;
    w.write_entry(&pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(ids_of(0)),
        ns_per_id: Some(true),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        ..Default::default()
    })
    .map_err(image(root))?;
    w.finish().map_err(image(root))?;

    // seccomp.img: every distinct filter once, chained to the one before it; a thread
    // names its newest.
    let mut seccomp = pb::SeccompEntry::default();
    let mut seccomp_index: BTreeMap<(Option<u32>, &[u8]), u32> = BTreeMap::new();
    let mut newest_filter: BTreeMap<i32, u32> = BTreeMap::new();
    for thread in frozen.processes.iter().flat_map(|p| p.threads.iter()) {
        let mut prev = None;
        for filter in &thread.seccomp_filters {
            let index = *seccomp_index.entry((prev, filter.as_slice())).or_insert_with(|| {
                seccomp.seccomp_filters.push(pb::SeccompFilter { filter: filter.clone(), prev, flags: None });
                seccomp.seccomp_filters.len() as u32 - 1
            });
            prev = Some(index);
        }
        if let Some(index) = prev {
            newest_filter.insert(thread.tid, index);
        }
    }
    if !seccomp.seccomp_filters.is_empty() {
        let mut w = ImageWriter::create(dir, ImageKind::Seccomp, 0).map_err(image(root))?;
        w.write_entry(&seccomp).map_err(image(root))?;
        w.finish().map_err(image(root))?;
    }

    let mut w = ImageWriter::create(dir, ImageKind::Pstree, 0).map_err(image(root))?;
    for process in &frozen.processes {
        let mut threads: Vec<u32> = if process.is_zombie() || process.leader_gone {
            vec![v(process.pid, "pid")? as u32]
        } else {
            Vec::new()
        };
        for thread in &process.threads {
            threads.push(v(thread.tid, "tid")? as u32);
        }
        let ppid = if process.pid == root { 0 } else { v(process.ppid, "parent")? as u32 };
        w.write_entry(&pb::PstreeEntry {
            pid: v(process.pid, "pid")? as u32,
            ppid,
            pgid: ns_group_id(frozen, process.pid, process.stat.pgid, "NSpgid", "process group")? as u32,
            sid: if process.stat.sid == 0 { 0 } else { ns_group_id(frozen, process.pid, process.stat.sid, "NSsid", "session")? as u32 },
            threads,
        })
        .map_err(image(root))?;
    }
    w.finish().map_err(image(root))?;

    let siginfos = |list: &[[u8; sys::SIGINFO_SIZE]]| pb::SignalQueueEntry {
        signals: list.iter().map(|s| pb::SiginfoEntry { siginfo: s.to_vec() }).collect(),
    };
    // Zombies: a core with the exit status only.
    for process in frozen.processes.iter().filter(|p| p.is_zombie()) {
        let core = pb::CoreEntry {
            mtype: HostArch::CORE_MTYPE,
            tc: Some(pb::TaskCoreEntry {
                task_state: TASK_DEAD,
                exit_code: process.stat.exit_code as u32,
                comm: process.stat.comm.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut w = ImageWriter::create(dir, ImageKind::Core, v(process.pid, "pid")? as u64).map_err(image(process.pid))?;
        w.write_entry(&core).map_err(image(process.pid))?;
        w.finish().map_err(image(process.pid))?;
    }

    let live = frozen.processes.iter().filter(|p| !p.is_zombie());
    for (index, (((process, collected), queries), vmas)) in live.zip(collected).zip(queries).zip(memory).enumerate() {
        let pid = process.pid;
        let ids = ids_of(index);
        let stat = &collected.stat;
        let mut posix_timers = queries.posix_timers.clone();
        for timer in &mut posix_timers {
            if let Some(host_tid) = timer.notify_thread_id {
                timer.notify_thread_id = Some(v(host_tid, "timer's thread")?);
            }
        }
        let tc = pb::TaskCoreEntry {
            task_state: if process.stopped { TASK_STOPPED } else { TASK_ALIVE },
            exit_code: 0,
            personality: collected.personality,
            flags: stat.flags as u32,
            blk_sigset: process.threads[0].sigmask,
            comm: stat.comm.clone(),
            timers: Some(pb::TaskTimersEntry {
                real: queries.itimers[0],
                virt: queries.itimers[1],
                prof: queries.itimers[2],
                posix: posix_timers,
            }),
            rlimits: Some(pb::TaskRlimitsEntry {
                rlimits: queries.rlimits.iter().map(|&(cur, max)| pb::RlimitEntry { cur, max }).collect(),
            }),
            signals_s: Some(siginfos(&queries.shared_pending)),
            sigactions: queries.sigactions.clone(),
            stop_signo: process.stopped.then_some(process.stop_signal() as u32),
            child_subreaper: Some(queries.child_subreaper),
            oom_score_adj: fs::read_to_string(format!("/proc/{}/oom_score_adj", process.proc_pid())).ok().and_then(|v| v.trim().parse().ok()),
            ..Default::default()
        };
        if process.leader_gone {
            // The exited leader: the process's own state, its name, and no registers
            // (restore has it exit again once its threads exist).
            let comm = fs::read_to_string(format!("/proc/{pid}/task/{pid}/comm")).map(|c| c.trim_end_matches('\n').to_string()).ok();
            let core = pb::CoreEntry {
                mtype: HostArch::CORE_MTYPE,
                ids: Some(ids),
                tc: Some(tc.clone()),
                thread_core: Some(pb::ThreadCoreEntry { comm, ..Default::default() }),
                ..Default::default()
            };
            let mut w = ImageWriter::create(dir, ImageKind::Core, v(pid, "pid")? as u64).map_err(image(pid))?;
            w.write_entry(&core).map_err(image(pid))?;
            w.finish().map_err(image(pid))?;
        }
        for (thread_index, (thread, tq)) in process.threads.iter().zip(&queries.threads).enumerate() {
            let mut core = pb::CoreEntry {
                mtype: HostArch::CORE_MTYPE,
                ids: Some(ids),
                thread_core: Some(pb::ThreadCoreEntry {
                    futex_rla: tq.robust_list.0,
                    futex_rla_len: tq.robust_list.1 as u32,
                    blk_sigset: Some(thread.sigmask),
                    sas: Some(tq.altstack),
                    signals_p: Some(siginfos(&tq.private_pending)),
                    creds: Some(tq.creds.clone()),
                    pdeath_sig: Some(tq.pdeath_sig),
                    comm: Some(tq.comm.clone()),
                    seccomp_mode: (thread.seccomp_mode != 0).then_some(thread.seccomp_mode as i32),
                    seccomp_filter: newest_filter.get(&thread.tid).copied(),
                    rseq_entry: thread.rseq.map(|r| pb::RseqEntry {
                        rseq_abi_pointer: r.pointer,
                        rseq_abi_size: r.size,
                        signature: r.signature,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            if thread_index == 0 && !process.leader_gone {
                core.tc = Some(tc.clone());
            }
            HostArch::regs_to_core(&mut core, &thread.regs, tq.clear_tid_addr);
            let mut w = ImageWriter::create(dir, ImageKind::Core, v(thread.tid, "tid")? as u64).map_err(image(pid))?;
            w.write_entry(&core).map_err(image(pid))?;
            w.finish().map_err(image(pid))?;
        }

        let (fds, cwd_id, root_id, exe_id) = &process_files[index];
        let mm = pb::MmEntry {
            mm_start_code: stat.start_code,
            mm_end_code: stat.end_code,
            mm_start_data: stat.start_data,
            mm_end_data: stat.end_data,
            mm_start_stack: stat.start_stack,
            mm_start_brk: stat.start_brk,
            mm_brk: queries.brk,
            mm_arg_start: stat.arg_start,
            mm_arg_end: stat.arg_end,
            mm_env_start: stat.env_start,
            mm_env_end: stat.env_end,
            exe_file_id: *exe_id,
            mm_saved_auxv: collected.auxv.clone(),
            vmas,
            dumpable: Some(queries.dumpable),
            thp_disabled: Some(queries.thp_disabled),
            ..Default::default()
        };
        let vpid = v(pid, "pid")? as u64;
        let mut w = ImageWriter::create(dir, ImageKind::Mm, vpid).map_err(image(pid))?;
        w.write_entry(&mm).map_err(image(pid))?;
        w.finish().map_err(image(pid))?;

        crate::files::write_fdinfo(pid, dir, fds, ids.files_id)?;

        let umask = collected.status.get("Umask").and_then(|v| u32::from_str_radix(v, 8).ok());
        let mut w = ImageWriter::create(dir, ImageKind::Fs, vpid).map_err(image(pid))?;
        w.write_entry(&pb::FsEntry { cwd_id: *cwd_id, root_id: *root_id, umask }).map_err(image(pid))?;
        w.finish().map_err(image(pid))?;

        let mut w = ImageWriter::create(dir, ImageKind::Ids, vpid).map_err(image(pid))?;
        w.write_entry(&ids).map_err(image(pid))?;
        w.finish().map_err(image(pid))?;
    }
    crate::files::write_images(root, dir, files, collected.len() as u32 + 1)?;
    Ok(())
}

fn creds_from_status(status: &BTreeMap<String, String>) -> pb::CredsEntry {
    let ids = |key: &str| status.get(key).and_then(|v| procfs::parse_id_quad(v)).unwrap_or([0; 4]);
    let caps = |key: &str| {
        let value = status.get(key).and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
        vec![value as u32, (value >> 32) as u32]
    };
    let [uid, euid, suid, fsuid] = ids("Uid");
    let [gid, egid, sgid, fsgid] = ids("Gid");
    pb::CredsEntry {
        uid,
        gid,
        euid,
        egid,
        suid,
        sgid,
        fsuid,
        fsgid,
        cap_inh: caps("CapInh"),
        cap_prm: caps("CapPrm"),
        cap_eff: caps("CapEff"),
        cap_bnd: caps("CapBnd"),
        cap_amb: caps("CapAmb"),
        secbits: 0,
        no_new_privs: status.get("NoNewPrivs").and_then(|v| v.parse().ok()),
        groups: status
            .get("Groups")
            .map(|g| g.split_whitespace().filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default(),
        ..Default::default()
    }
}
