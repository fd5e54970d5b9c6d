//! The restore pipeline: read the images of a process tree, fork every process with its
//! dumped PID (parents fork their children, so parentage, sessions and groups come out
//! right), let each rebuild its fds and then run the restorer's op program, which
//! replaces its whole address space with the dumped one and creates its threads with
//! their dumped TIDs; finally put every thread's registers back through ptrace and let
//! the tree go.
//!
//! Invariant: until the restored tree is released, every task in it is traced with
//! PTRACE_O_EXITKILL, so if anything fails (or crust dies) it is killed: no
//! half-restored process outlives a failed restore.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crust_arch::{Abi, Host, HostArch, RestorerOp, RestorerOutcome, Sys};
use crust_images::pb;
use crust_images::{ImageKind, ImageReader};

use crate::infect::RemoteThread;
use crate::procfs;
use crate::program::Program;
use crate::sys;
use crate::vma_status as vs;

/// What `crust restore` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Directory holding the images.
    pub dir: PathBuf,
    /// Return once the restored process runs on its own (`-d`).
    pub detach: bool,
    /// Write the restored root's PID here.
    pub pidfile: Option<PathBuf>,
    /// Keep the caller's session and process group.
    pub shell_job: bool,
}

/// How a restore ended.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The restored root process.
    pub pid: i32,
    /// Processes restored (zombies included).
    pub processes: usize,
    /// Wall time until it ran on its own.
    pub total: Duration,
    /// With `detach` off: the restored process's exit code once it ended.
    pub exit_code: Option<i32>,
}

/// Why a restore failed. No restored process is left behind.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore: {image}: {source}", image = image.rsplit_once('/').map(|d| d.0).unwrap_or("."))]
    Image { image: String, source: crust_images::ImageError },
    #[error("restore: {image}: {what}")]
    BadImage { image: String, what: String },
    #[error("restore pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("restore pid {pid}: pid is busy (a process with that pid exists); kill it or restore in a new pid namespace")]
    PidBusy { pid: i32 },
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

fn io_err(pid: i32, what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Io { pid, what, source }
}

fn image_path(dir: &Path, kind: ImageKind, id: u64) -> PathBuf {
    dir.join(kind.file_name(id))
}

/// Ops that recreate POSIX timers with their ids, signals, values and intervals. With
/// Linux 6.17's PR_TIMER_CREATE_RESTORE_IDS the id is asked for; before it, a fresh
/// process hands out ids 0, 1, 2, ... in order, so gaps are filled with placeholder
/// timers, deleted afterwards, and each wanted id is checked to exist.
fn posix_timers(program: &mut Program, pid: i32, timers: &[pb::PosixTimerEntry]) -> Result<(), RestoreError> {
    if timers.is_empty() {
        return Ok(());
    }
    const SIGEV_NONE: u32 = 1;
    const SIGEV_THREAD_ID: u32 = 4;
    const MAX_PLACEHOLDERS: u32 = 4096;
    let mut sorted: Vec<&pb::PosixTimerEntry> = timers.iter().collect();
    sorted.sort_by_key(|t| t.it_id);
    if sorted.windows(2).any(|w| w[0].it_id == w[1].it_id) {
        return Err(RestoreError::BadImage { image: format!("core-{pid}.img"), what: "two POSIX timers with one id (tc.timers.posix.it_id)".into() });
    }
    // struct sigevent: sigval, int signo, int notify, int tid, padding to 64 bytes.
    let sigevent = |program: &mut Program, sival: u64, signo: u32, notify: u32, tid: i32| {
        let mut bytes = [0u8; 64];
        bytes[0..8].copy_from_slice(&sival.to_ne_bytes());
        bytes[8..12].copy_from_slice(&signo.to_ne_bytes());
        bytes[12..16].copy_from_slice(&notify.to_ne_bytes());
        bytes[16..20].copy_from_slice(&tid.to_ne_bytes());
        program.data(&bytes)
    };
    let by_id = sys::timer_restore_ids_supported();
    let mut placeholders = Vec::new();
    if by_id {
        program.call(
            Sys::Prctl,
            [sys::PR_TIMER_CREATE_RESTORE_IDS, sys::PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            "timer ids: restore mode on".into(),
        );
    } else if let Some(last) = sorted.last().filter(|t| t.it_id >= MAX_PLACEHOLDERS) {
        return Err(RestoreError::Unsupported {
            pid,
            what: format!("POSIX timer id {} on a kernel without PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17)", last.it_id),
        });
    }
    let mut next = 0u32;
    for timer in &sorted {
        if timer.it_sigev_notify & !SIGEV_THREAD_ID > SIGEV_NONE {
            return Err(RestoreError::BadImage {
                image: format!("core-{pid}.img"),
                what: format!("POSIX timer {} has unknown sigev_notify {} (tc.timers.posix.it_sigev_notify)", timer.it_id, timer.it_sigev_notify),
            });
        }
        if !by_id {
            while next < timer.it_id {
                let event = sigevent(program, 0, 0, SIGEV_NONE, 0);
                let id = program.words(&[0]);
                program.call(Sys::TimerCreate, [libc::CLOCK_MONOTONIC as u64, event, id, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("placeholder timer {next}"));
                placeholders.push(next);
                next += 1;
            }
            next = timer.it_id + 1;
        }
        let tid = timer.notify_thread_id.unwrap_or(0);
        let event = sigevent(program, timer.sival_ptr, timer.si_signo, timer.it_sigev_notify, tid);
        let id = program.data(&(timer.it_id as i32).to_ne_bytes());
        program.call(
            Sys::TimerCreate,
            [timer.clock_id as u64, event, id, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            format!("timer_create id {} clock {}", timer.it_id, timer.clock_id),
        );
        if timer.vsec | timer.vnsec != 0 {
            let spec = program.words(&[timer.isec, timer.insec, timer.vsec, timer.vnsec]);
            program.call(Sys::TimerSettime, [timer.it_id as u64, 0, spec, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("timer_settime id {}", timer.it_id));
        }
    }
    if by_id {
        program.call(
            Sys::Prctl,
            [sys::PR_TIMER_CREATE_RESTORE_IDS, sys::PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            0,
            "timer ids: restore mode off".into(),
        );
    }
    for id in placeholders {
        program.call(Sys::TimerDelete, [id as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("delete placeholder timer {id}"));
    }
    // Each wanted id must be there (without the prctl the kernel chose them).
    for timer in &sorted {
        let spec = program.words(&[0; 4]);
        program.call(Sys::TimerGettime, [timer.it_id as u64, spec, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("timer {} exists", timer.it_id));
    }
    Ok(())
}

fn read_all<M: prost::Message + Default>(dir: &Path, kind: ImageKind, id: u64) -> Result<Vec<M>, RestoreError> {
    let path = image_path(dir, kind, id);
    crust_images::read_entries::<M>(&path)
        .map_err(|source| RestoreError::Image { image: path.display().to_string(), source })
}

fn read_one<M: prost::Message + Default>(dir: &Path, kind: ImageKind, id: u64) -> Result<M, RestoreError> {
    let path = image_path(dir, kind, id);
    let mut all = read_all::<M>(dir, kind, id)?;
    if all.len() != 1 {
        return Err(RestoreError::BadImage {
            image: path.display().to_string(),
            what: format!("expected one entry, found {}", all.len()),
        });
    }
    Ok(all.remove(0))
}


/// The images of one process.
struct ProcessImages {
    pstree: pb::PstreeEntry,
    /// One core per thread, in `pstree.threads` order (the leader first).
    cores: Vec<pb::CoreEntry>,
    /// Everything below is empty for a zombie.
    mm: pb::MmEntry,
    pages_id: u32,
    pagemap: Vec<pb::PagemapEntry>,
    fds: Vec<pb::FdinfoEntry>,
    fs: pb::FsEntry,
}

impl ProcessImages {
    fn pid(&self) -> i32 {
        self.pstree.pid as i32
    }

    fn task_state(&self) -> u32 {
        self.cores[0].tc.as_ref().map(|t| t.task_state).unwrap_or(TASK_ALIVE)
    }

    fn is_zombie(&self) -> bool {
        self.task_state() == TASK_DEAD
    }

    /// The leader thread had exited while the others ran on: its core has no registers.
    /// Restore recreates it to run the restorer, then has it exit again.
    fn leader_gone(&self) -> bool {
        let leader = &self.cores[0];
        !self.is_zombie()
            && self.cores.len() > 1
            && leader.thread_info.is_none()
            && leader.ti_aarch64.is_none()
            && leader.ti_ppc64.is_none()
            && leader.ti_s390.is_none()
    }

    /// Index of the thread that acts for the process once restored: the leader, or the
    /// first live thread when the leader had exited.
    fn acting_thread(&self) -> usize {
        usize::from(self.leader_gone())
    }

    /// The signal that stopped a stopped task (SIGSTOP when the image does not say).
    fn stop_signal(&self) -> i32 {
        self.cores[0].tc.as_ref().and_then(|t| t.stop_signo).filter(|&s| s > 0 && s < 32).unwrap_or(libc::SIGSTOP as u32) as i32
    }
}

/// CRIU's task states.
const TASK_ALIVE: u32 = 1;
const TASK_DEAD: u32 = 2;
const TASK_STOPPED: u32 = 3;

/// Everything read from the images of a tree.
struct Images {
    /// In pstree order: the root first, every parent before its children.
    processes: Vec<ProcessImages>,
    files: BTreeMap<u32, pb::RegFileEntry>,
    /// reg-file id → ghost id
    ghosts: BTreeMap<u32, u32>,
    /// seccomp.img's filters (threads name their newest by index).
    seccomp: Vec<pb::SeccompFilter>,
    /// pidfd entries of files.img by file id.
    pidfds: BTreeMap<u32, pb::PidfdEntry>,
    /// Files in flight in socket queues (SCM_RIGHTS), which no process holds.
    in_flight: std::collections::BTreeSet<u32>,
}

fn read_images(dir: &Path) -> Result<Images, RestoreError> {
    let pstrees: Vec<pb::PstreeEntry> = read_all(dir, ImageKind::Pstree, 0)?;
    if pstrees.is_empty() {
        let image = image_path(dir, ImageKind::Pstree, 0).display().to_string();
        return Err(RestoreError::BadImage { image, what: "no process".into() });
    }
    let mut processes = Vec::new();
    for pstree in pstrees {
        let pid = pstree.pid as u64;
        let mut cores = Vec::new();
        for &tid in &pstree.threads {
            cores.push(read_one::<pb::CoreEntry>(dir, ImageKind::Core, tid as u64)?);
        }
        if cores.is_empty() {
            cores.push(read_one::<pb::CoreEntry>(dir, ImageKind::Core, pid)?);
        }
        let zombie = cores[0].tc.as_ref().is_some_and(|t| t.task_state == TASK_DEAD);
        if zombie {
            processes.push(ProcessImages {
                pstree,
                cores,
                mm: Default::default(),
                pages_id: 0,
                pagemap: Vec::new(),
                fds: Vec::new(),
                fs: Default::default(),
            });
            continue;
        }
        let mm: pb::MmEntry = read_one(dir, ImageKind::Mm, pid)?;
        let pagemap_path = image_path(dir, ImageKind::Pagemap, pid);
        let pagemap_name = pagemap_path.display().to_string();
        let image_err = |source| RestoreError::Image { image: pagemap_name.clone(), source };
        let mut reader = ImageReader::open(&pagemap_path).map_err(image_err)?;
        let head: pb::PagemapHead = reader
            .next_entry()
            .map_err(image_err)?
            .ok_or_else(|| RestoreError::BadImage { image: pagemap_name.clone(), what: "no pagemap head".into() })?;
        let mut pagemap = Vec::new();
        while let Some(entry) = reader.next_entry::<pb::PagemapEntry>().map_err(image_err)? {
            pagemap.push(entry);
        }
        let ids = cores[0].ids.unwrap_or_default();
        let fds = read_all(dir, ImageKind::Fdinfo, ids.files_id as u64)?;
        let fs = read_one(dir, ImageKind::Fs, pid)?;
        processes.push(ProcessImages { pstree, cores, mm, pages_id: head.pages_id, pagemap, fds, fs });
    }
    let file_entries = read_all::<pb::FileEntry>(dir, ImageKind::Files, 0)?;
    let pidfds = file_entries.iter().filter_map(|f| f.pidfd.map(|p| (f.id, p))).collect();
    let files = file_entries.into_iter().filter_map(|f| f.reg.map(|reg| (f.id, reg))).collect();
    let ghosts = if image_path(dir, ImageKind::RemapFpath, 0).exists() {
        read_all::<pb::RemapFilePathEntry>(dir, ImageKind::RemapFpath, 0)?
            .into_iter()
            .map(|r| (r.orig_id, r.remap_id))
            .collect()
    } else {
        BTreeMap::new()
    };
    let seccomp = if image_path(dir, ImageKind::Seccomp, 0).exists() {
        read_all::<pb::SeccompEntry>(dir, ImageKind::Seccomp, 0)?.into_iter().flat_map(|e| e.seccomp_filters).collect()
    } else {
        Vec::new()
    };
    let in_flight = crate::files::in_flight_ids(dir).map_err(|what| RestoreError::BadImage { image: "sk-queues.img".into(), what })?;
    Ok(Images { processes, files, ghosts, seccomp, pidfds, in_flight })
}

/// Restores the process tree dumped in `options.dir`.
pub fn restore(options: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let images = read_images(&options.dir)?;
    let root = images.processes[0].pid();
    // A tree dumped in its own pid namespace comes back in a new one, where its pids are
    // always free; otherwise every pid and tid must be free here.
    let new_pid_ns = images.processes[0].cores[0].ids.as_ref().and_then(|i| i.pid_ns_id).is_some();
    if new_pid_ns && root != 1 {
        return Err(RestoreError::BadImage { image: "pstree.img".into(), what: format!("pid namespace root has pid {root}, not 1") });
    }
    if !new_pid_ns {
        for process in &images.processes {
            for &tid in process.pstree.threads.iter().chain(std::iter::once(&process.pstree.pid)) {
                if Path::new(&format!("/proc/{tid}")).exists() {
                    return Err(RestoreError::PidBusy { pid: tid as i32 });
                }
            }
        }
    }
    let tree = plan_tree(options, &images)?;
    // The premap arena is reserved at once (inaccessible, no memory): nothing crust maps
    // from here on (a buffer, a thread stack) may land where the slots go. The tree
    // inherits the reservation; each process maps its slots over it and its restorer
    // drops the rest.
    if let Some((start, end)) = tree.premap_arena {
        sys::reserve_at(start, (end - start) as usize).map_err(io_err(root, format!("reserve the premap arena {start:#x}-{end:#x}")))?;
    }
    sys::raise_nofile_limit().map_err(io_err(root, "raise RLIMIT_NOFILE"))?;
    let broker = crate::files::Broker::open(&images.files, &images.ghosts, &options.dir, broker_ids(&images), tree.broker_base)
        .map_err(|what| RestoreError::Child { pid: root, what })?;
    for (&shmid, &(number, size)) in &tree.shmem {
        let created = sys::create_shared_anon(size).and_then(|fd| {
            sys::place_fd(fd, number, true)?;
            if fd != number {
                sys::close_fd(fd);
            }
            Ok(())
        });
        if let Err(source) = created {
            broker.close();
            return Err(RestoreError::Io { pid: root, what: format!("create shared anonymous memory {shmid} of {size} bytes"), source });
        }
    }

    let (sync_read, sync_write) = pipe(root)?;
    let (error_read, error_write) = pipe(root)?;
    let forked = sys::fork_root(root, new_pid_ns, tree.new_ipc_ns);
    let child = match forked {
        Ok(0) => {
            drop(sync_write);
            drop(error_read);
            root_main(&tree, &images, options, &broker, sync_read, error_write)
        }
        Ok(child) => child,
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => return Err(RestoreError::PidBusy { pid: root }),
        Err(error) => return Err(RestoreError::Io { pid: root, what: "clone3 with set_tid".into(), source: error }),
    };
    drop(sync_read);
    drop(error_write);
    broker.close();
    if let Some((start, end)) = tree.premap_arena {
        sys::release_reservation(start, (end - start) as usize);
    }
    for &(number, _) in tree.shmem.values() {
        sys::close_fd(number);
    }
    // In a new pid namespace, killing its init (`child`) kills the whole tree.
    let guard_pids = if new_pid_ns { vec![child] } else { images.processes.iter().map(|p| p.pid()).collect() };
    let mut guard = TreeGuard { pids: guard_pids, released: false };
    let uses_seccomp = images.processes.iter().flat_map(|p| p.cores.iter()).any(|c| {
        c.thread_core.as_ref().and_then(|t| t.seccomp_mode).unwrap_or(0) != 0
    });
    let options_word = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_EXITKILL
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        // Filters installed by the restorer must not see the tracer's calls after them.
        | if uses_seccomp { sys::PTRACE_O_SUSPEND_SECCOMP } else { 0 };
    sys::seize_thread(child, options_word).map_err(io_err(root, "seize restored root"))?;
    let mut sync_write = fs::File::from(sync_write);
    sync_write.write_all(b"g").map_err(io_err(root, "release child"))?;
    drop(sync_write);

    let host = wait_for_restorers(&tree, &images, error_read)?;
    for process in images.processes.iter().filter(|p| !p.is_zombie()) {
        if let Some(adj) = process.cores[0].tc.as_ref().and_then(|t| t.oom_score_adj) {
            let path = format!("/proc/{}/oom_score_adj", host[&process.pid()]);
            fs::write(&path, adj.to_string()).map_err(io_err(process.pid(), format!("write {path}")))?;
        }
    }
    for (process, plan) in images.processes.iter().zip(&tree.plans) {
        if let Some(plan) = plan {
            finish_process(process, plan, &host)?;
        }
    }
    // Segments removed while attached go again, now that every process has attached them.
    if tree.new_ipc_ns {
        let removed = crate::ipc::removed_segments(&options.dir).map_err(|what| RestoreError::BadImage { image: "ipcns-shm".into(), what })?;
        crate::ipc::remove_segments(child, &removed).map_err(|what| RestoreError::Child { pid: root, what })?;
    }
    // The tree runs: let the traffic of its TCP connections through again.
    crate::files::unlock_tcp(&options.dir).map_err(|what| RestoreError::Child { pid: root, what })?;
    // Return only once the stopped ones are stopped (their stop is already pending).
    for process in images.processes.iter().filter(|p| p.task_state() == TASK_STOPPED) {
        for &tid in process.pstree.threads.iter().skip(process.acting_thread()) {
            wait_until_stopped(process.pid(), host[&(tid as i32)])?;
        }
    }
    guard.released = true;
    // From here on, the root is named by its pid on this host.
    let root = child;
    if let Some(pidfile) = &options.pidfile {
        fs::write(pidfile, format!("{root}")).map_err(io_err(root, format!("write {}", pidfile.display())))?;
    }
    let total = started.elapsed();
    let exit_code = if options.detach {
        None
    } else {
        match sys::wait_thread(root).map_err(io_err(root, "wait for restored process"))? {
            sys::WaitEvent::Exited(code) => Some(code),
            sys::WaitEvent::Signaled(signal) => Some(128 + signal),
            sys::WaitEvent::Stopped { .. } => None,
        }
    };
    Ok(RestoreReport { pid: root, processes: images.processes.len(), total, exit_code })
}

/// Waits until host task `tid` shows state T in /proc (its stop signal is pending: the
/// kernel acts on it as soon as the task is scheduled), for at most two seconds.
fn wait_until_stopped(pid: i32, tid: i32) -> Result<(), RestoreError> {
    wait_for_state(pid, tid, 'T', "stop within 2 s of its stop signal")
}

/// Waits until task `tid` (of process `pid`) shows `state` in /proc, at most 2 s;
/// `what` says what it failed to do.
fn wait_for_state(pid: i32, tid: i32, state: char, what: &str) -> Result<(), RestoreError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = fs::read_to_string(format!("/proc/{tid}/stat")).map_err(io_err(pid, format!("read /proc/{tid}/stat")))?;
        if procfs::parse_stat(&stat).is_ok_and(|s| s.state == state) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(RestoreError::Child { pid, what: format!("task {tid} did not {what}") });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Kills the tree unless it was released.
struct TreeGuard {
    pids: Vec<i32>,
    released: bool,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        for &pid in &self.pids {
            let _ = sys::send_signal(pid, libc::SIGKILL);
        }
        // Reap (as tracer and, for the root, as parent) until nothing is left.
        loop {
            match sys::wait_any() {
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}

fn pipe(pid: i32) -> Result<(OwnedFd, OwnedFd), RestoreError> {
    let (read, write) = std::io::pipe().map_err(io_err(pid, "pipe"))?;
    Ok((OwnedFd::from(read), OwnedFd::from(write)))
}

/// What one live process needs, computed before the first fork.
struct Plan {
    area: u64,
    area_size: u64,
    code_size: u64,
    /// Bytes of the data arena followed by the ops.
    data: Vec<u8>,
    ops_offset: u64,
    ops_bytes: Vec<u8>,
    descriptions: Vec<String>,
    /// Helper fds: (number, path, open flags) opened in the child before the restorer.
    helpers: Vec<(i32, PathBuf, i32)>,
    /// Helper fds copied from the broker (unlinked mapped files): (number, file id).
    broker_helpers: Vec<(i32, u32)>,
    /// Shared anonymous objects this process maps (their fds are closed by the restorer).
    shmem_used: Vec<u64>,
    /// Per thread (the leader first): syscalls the tracer injects before release.
    thread_ops: Vec<Vec<(Sys, [u64; 6], String)>>,
    /// pidfds of live processes of the tree, opened by the leader once every process
    /// exists: (fd number, pid as the tree numbers it, pidfd_open flags, close-on-exec).
    pidfds: Vec<(i32, i32, u64, bool)>,
    /// Private anonymous areas filled before the children are forked (`premap`).
    premap: Vec<Premap>,
    /// The pages images this process's pages are in (this dump's first, then parent
    /// dumps'), as `Premap` runs name them.
    page_files: Vec<PathBuf>,
}

/// A private anonymous area shared copy-on-write with a parent or child at dump time: it
/// is filled in a slot of the premap arena before the children are forked, so that they
/// inherit its pages; a child that inherited the slot rewrites only the pages whose
/// contents differ, drops the pages it did not have, and so keeps sharing the rest. The
/// restorer moves the slot into place with mremap.
#[derive(Debug)]
struct Premap {
    slot: u64,
    start: u64,
    end: u64,
    /// The slot came from the parent through fork (else it is mapped here).
    inherited: bool,
    /// The area's runs of dumped pages: (address, bytes, index of the pages image in
    /// `Plan::page_files`, offset in it).
    runs: Vec<(u64, u64, usize, u64)>,
    noreserve: bool,
    no_huge: bool,
}

/// Whether an area may be premapped: private anonymous memory that is not a stack.
fn premappable(v: &pb::VmaEntry) -> bool {
    v.status & vs::ANON_PRIVATE != 0
        && v.status & (vs::STACK | vs::VDSO | vs::VVAR | vs::VSYSCALL | vs::SYSVIPC) == 0
        && v.flags as i32 & libc::MAP_PRIVATE != 0
        && v.flags as i32 & libc::MAP_GROWSDOWN == 0
}

/// Per process: premapped area start → (slot address, inherited from the parent).
type PremapSlots = BTreeMap<u64, (u64, bool)>;

/// The premap arena of the tree: per process, the slot of each premapped area (by its
/// start) and whether it is inherited from the parent; and the arena's range. An area
/// is premapped when the parent or a child has an area of the same range (fork left
/// them sharing pages); one that is not inherited gets a slot of its own.
fn plan_premaps(pid: i32, images: &Images) -> Result<(Vec<PremapSlots>, Option<(u64, u64)>), RestoreError> {
    let page = sys::page_size();
    let live = |p: &ProcessImages| !p.is_zombie();
    let index_of: BTreeMap<u32, usize> = images.processes.iter().enumerate().map(|(i, p)| (p.pstree.pid, i)).collect();
    let ranges = |p: &ProcessImages| -> std::collections::BTreeSet<(u64, u64)> {
        p.mm.vmas.iter().filter(|v| premappable(v)).map(|v| (v.start, v.end)).collect()
    };
    let all_ranges: Vec<_> = images.processes.iter().map(|p| if live(p) { ranges(p) } else { Default::default() }).collect();
    // Offsets inside the arena first; addresses once its size is known.
    let mut slots: Vec<PremapSlots> = vec![BTreeMap::new(); images.processes.len()];
    let mut arena_len = 0u64;
    for (index, process) in images.processes.iter().enumerate() {
        if !live(process) {
            continue;
        }
        let parent = index_of.get(&process.pstree.ppid).copied().filter(|&i| i < index);
        let children: Vec<usize> = images.processes.iter().enumerate().filter(|(i, c)| *i > index && c.pstree.ppid == process.pstree.pid && live(c)).map(|(i, _)| i).collect();
        for &(start, end) in &all_ranges[index] {
            let from_parent = parent.and_then(|p| slots[p].get(&start).copied()).filter(|_| parent.is_some_and(|p| all_ranges[p].contains(&(start, end))));
            if let Some((offset, _)) = from_parent {
                slots[index].insert(start, (offset, true));
            } else if children.iter().any(|&c| all_ranges[c].contains(&(start, end))) {
                slots[index].insert(start, (arena_len, false));
                arena_len += end - start + page;
            }
        }
    }
    if arena_len == 0 {
        return Ok((slots, None));
    }
    let mut used: Vec<(u64, u64)> = images.processes.iter().flat_map(|p| p.mm.vmas.iter().map(|v| (v.start, v.end))).collect();
    let own = procfs::parse_maps(&fs::read_to_string("/proc/self/maps").map_err(io_err(pid, "read /proc/self/maps"))?)
        .map_err(|e| RestoreError::Child { pid, what: e.to_string() })?;
    used.extend(own.iter().map(|m| (m.start, m.end)));
    let base = gap_below_top(pid, used, arena_len)?;
    for map in &mut slots {
        for slot in map.values_mut() {
            slot.0 += base;
        }
    }
    Ok((slots, Some((base, base + arena_len))))
}

/// Plans of the whole tree.
struct TreePlan {
    /// Stand-ins for session and group leaders that had exited at dump time.
    helpers: Vec<HelperPlan>,
    /// One per process, `None` for zombies.
    plans: Vec<Option<Plan>>,
    /// fd numbers above every fd of the tree, kept for crust: the error pipe, the
    /// root's sync pipe, then the broker's descriptions, then each process's helpers.
    error_fd: i32,
    sync_fd: i32,
    broker_base: i32,
    /// Shared anonymous memory objects (MAP_SHARED|MAP_ANONYMOUS areas, shared through
    /// fork): shmid → (fd number, size). crust creates each before the first fork.
    shmem: BTreeMap<u64, (i32, u64)>,
    /// The tree had an IPC namespace of its own: the root makes a new one.
    new_ipc_ns: bool,
    /// The premap arena (`plan_premaps`), reserved before the root is forked.
    premap_arena: Option<(u64, u64)>,
}

/// The file ids the broker opens: every fd's, and every unlinked mapped file's.
fn broker_ids(images: &Images) -> std::collections::BTreeSet<u32> {
    let mut ids = crate::files::broker_ids(
        images.processes.iter().map(|p| (p.fds.as_slice(), p.mm.vmas.as_slice())),
        &images.files,
        &images.ghosts,
        vs::FILE_PRIVATE | vs::FILE_SHARED,
    );
    ids.extend(images.in_flight.iter().copied());
    ids
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

fn plan_tree(options: &RestoreOptions, images: &Images) -> Result<TreePlan, RestoreError> {
    let max_fd = images.processes.iter().flat_map(|p| p.fds.iter().map(|f| f.fd as i32)).max().unwrap_or(2).max(2);
    let error_fd = max_fd + 1;
    let sync_fd = max_fd + 2;
    let broker_base = max_fd + 3;
    let descriptions = broker_ids(images);
    let mut shmem: BTreeMap<u64, (i32, u64)> = BTreeMap::new();
    for vma in images.processes.iter().flat_map(|p| p.mm.vmas.iter()).filter(|v| v.status & vs::ANON_SHARED != 0) {
        let end = vma.pgoff + (vma.end - vma.start);
        let next = broker_base + descriptions.len() as i32 + shmem.len() as i32;
        let entry = shmem.entry(vma.shmid).or_insert((next, 0));
        entry.1 = entry.1.max(end);
    }
    let helper_base = broker_base + descriptions.len() as i32 + shmem.len() as i32;
    let helpers = plan_helpers(options, images)?;
    let (premaps, arena) = plan_premaps(images.processes[0].pid(), images)?;
    let mut plans = Vec::new();
    for (process, premapped) in images.processes.iter().zip(&premaps) {
        plans.push(if process.is_zombie() {
            None
        } else {
            Some(plan(options, images, process, helper_base, error_fd, sync_fd, &shmem, premapped, arena)?)
        });
    }
    let new_ipc_ns = images.processes[0].cores[0].ids.as_ref().and_then(|i| i.ipc_ns_id).is_some();
    if new_ipc_ns && !crate::ipc::image_has_namespace(&options.dir) {
        return Err(RestoreError::BadImage {
            image: ImageKind::IpcVar.file_name(crate::ipc::NS_ID as u64),
            what: "missing, but the tree had an IPC namespace of its own (ids.ipc_ns_id)".into(),
        });
    }
    Ok(TreePlan { helpers, plans, error_fd, sync_fd, broker_base, shmem, new_ipc_ns, premap_arena: arena })
}

/// A session or process group whose leader had exited at dump time. A helper process
/// with the leader's pid, forked by the members' parent, calls setsid() (a session) or
/// setpgid(0, 0) (a group), forks the members and exits: they are orphaned to their
/// parent, which must therefore be a child subreaper (or its pid namespace's init), as
/// it was when they were first orphaned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HelperPlan {
    pid: u32,
    /// The process that forks the helper and then reaps it.
    parent: u32,
    session: bool,
    /// Indices into `images.processes`, in the order they are forked.
    members: Vec<usize>,
}

/// Checks that every session and group can be rebuilt and plans the helpers for those
/// whose leader is gone; refuses the shapes this restore cannot rebuild.
fn plan_helpers(options: &RestoreOptions, images: &Images) -> Result<Vec<HelperPlan>, RestoreError> {
    let by_pid: BTreeMap<u32, &ProcessImages> = images.processes.iter().map(|p| (p.pstree.pid, p)).collect();
    let root_pid = images.processes[0].pstree.pid;
    let mut helpers: Vec<HelperPlan> = Vec::new();
    for (index, process) in images.processes.iter().enumerate() {
        let p = &process.pstree;
        let parent = if index == 0 { None } else { by_pid.get(&p.ppid).copied() };
        if index > 0 && parent.is_none() {
            return Err(RestoreError::BadImage { image: "pstree.img".into(), what: format!("pid {} has parent {} outside the tree", p.pid, p.ppid) });
        }
        if index == 0 && options.shell_job {
            continue;
        }
        let gone = |id: u32| !by_pid.contains_key(&id);
        let mut helper: Option<(u32, bool)> = None;
        let inherited_sid = parent.map(|q| q.pstree.sid);
        if p.sid != p.pid && inherited_sid != Some(p.sid) {
            if index == 0 || !gone(p.sid) {
                return Err(RestoreError::Unsupported {
                    pid: p.pid as i32,
                    what: format!(
                        "session {} whose leader is not its parent's session{}",
                        p.sid,
                        if index == 0 { " (try --shell-job)" } else { "" }
                    ),
                });
            }
            helper = Some((p.sid, true));
        }
        // A group is led by the process itself, by an ancestor in the same session, by a
        // sibling (forked first), or by the session helper; else by a group helper.
        let mut group_ok = p.pgid == p.pid || helper.is_some_and(|(sid, _)| sid == p.pgid);
        let mut ancestor = parent;
        while let (false, Some(a)) = (group_ok, ancestor) {
            group_ok = a.pstree.pgid == p.pgid && a.pstree.sid == p.sid;
            ancestor = by_pid.get(&a.pstree.ppid).copied().filter(|_| a.pstree.pid != root_pid);
        }
        if !group_ok {
            if let Some(leader) = by_pid.get(&p.pgid) {
                let l = &leader.pstree;
                let sibling = index > 0 && l.ppid == p.ppid && l.pgid == l.pid && l.sid == p.sid && l.sid != l.pid;
                if !sibling {
                    return Err(RestoreError::Unsupported { pid: p.pid as i32, what: format!("process group {} led outside its ancestors and siblings", p.pgid) });
                }
            } else if helper.is_none() && index > 0 {
                helper = Some((p.pgid, false));
            } else {
                return Err(RestoreError::Unsupported {
                    pid: p.pid as i32,
                    what: format!("process group {} and session {} both led by exited processes", p.pgid, p.sid),
                });
            }
        }
        let Some((helper_pid, session)) = helper else { continue };
        let parent = parent.expect("index > 0");
        let subreaper = parent.cores.first().and_then(|c| c.tc.as_ref()).and_then(|t| t.child_subreaper) == Some(true);
        if !(subreaper || parent.pstree.pid == 1) {
            return Err(RestoreError::Unsupported {
                pid: p.pid as i32,
                what: format!(
                    "{} {helper_pid} whose leader exited, with members under pid {}, which is not a child subreaper",
                    if session { "session" } else { "process group" },
                    p.ppid
                ),
            });
        }
        match helpers.iter_mut().find(|h| h.pid == helper_pid) {
            Some(h) if h.parent == p.ppid && h.session == session => h.members.push(index),
            Some(_) => {
                return Err(RestoreError::Unsupported {
                    pid: p.pid as i32,
                    what: format!("exited leader {helper_pid} whose members have different parents or kinds"),
                })
            }
            None => helpers.push(HelperPlan { pid: helper_pid, parent: p.ppid, session, members: vec![index] }),
        }
    }
    for helper in &mut helpers {
        let leaders_first = fork_order(images, &helper.members);
        helper.members = leaders_first;
    }
    Ok(helpers)
}

/// `children` (indices into `images.processes`) reordered so that group leaders come
/// first: their siblings may join their groups.
fn fork_order(images: &Images, children: &[usize]) -> Vec<usize> {
    let leads = |&index: &usize| {
        let p = &images.processes[index].pstree;
        p.pgid == p.pid
    };
    children.iter().copied().filter(leads).chain(children.iter().copied().filter(|i| !leads(i))).collect()
}

/// Makes a just-forked child the leader of its group from the parent's side, so that
/// siblings forked after it can join the group whatever the scheduler does. A session
/// leader makes its group itself (setsid fails for a group leader). Errors are left to
/// the child's own setpgid: this fails only once the child has done it and exited.
fn lead_group_early(images: &Images, index: usize, host_pid: i32) {
    let p = &images.processes[index].pstree;
    if p.pgid == p.pid && p.sid != p.pid {
        let _ = sys::set_child_process_group(host_pid, host_pid);
    }
}

/// A helper for an exited session or group leader: see [`HelperPlan`]. Never returns.
fn helper_main(tree: &TreePlan, images: &Images, options: &RestoreOptions, helper: &HelperPlan, broker: &crate::files::Broker) -> ! {
    let result = (|| -> Result<(), String> {
        if helper.session {
            sys::new_session().map_err(|e| format!("setsid: {e}"))?;
        } else {
            sys::set_process_group(0).map_err(|e| format!("setpgid: {e}"))?;
        }
        for &index in &helper.members {
            let member = images.processes[index].pid();
            match sys::fork_with_pid(member) {
                Ok(0) => process_main(tree, images, options, index, broker),
                Ok(host) => lead_group_early(images, index, host),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(format!("pid {member} is busy")),
                Err(e) => return Err(format!("fork {member}: {e}")),
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => sys::exit_now(0),
        Err(message) => die(tree, helper.pid as i32, &format!("helper for exited leader: {message}")),
    }
}

#[allow(clippy::too_many_arguments)] // one caller, which plans the whole tree
fn plan(
    options: &RestoreOptions,
    images: &Images,
    process: &ProcessImages,
    helper_base: i32,
    error_fd: i32,
    sync_fd: i32,
    shmem: &BTreeMap<u64, (i32, u64)>,
    premapped: &PremapSlots,
    arena: Option<(u64, u64)>,
) -> Result<Plan, RestoreError> {
    let pid = process.pid();
    let page = sys::page_size();
    let mm = &process.mm;
    let leader_core = &process.cores[0];
    let check_vdso = check_vdso_layout(pid, mm)?;

    let mut helpers: Vec<(i32, PathBuf, i32)> = Vec::new();
    let pages_path = options.dir.join(ImageKind::Pages.file_name(process.pages_id as u64));
    let pages_fd = helper_base;
    helpers.push((pages_fd, pages_path.clone(), libc::O_RDONLY));
    let mut file_fds: BTreeMap<u32, i32> = BTreeMap::new();
    let mut broker_helpers = Vec::new();
    for vma in &mm.vmas {
        let id = vma.shmid as u32;
        // Unlinked files and memfds cannot be opened by name: the broker has them.
        let from_broker = images.ghosts.contains_key(&id) || !images.files.contains_key(&id);
        if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) != 0 && !file_fds.contains_key(&id) && from_broker {
            let fd = helper_base + 1 + file_fds.len() as i32;
            file_fds.insert(id, fd);
            broker_helpers.push((fd, id));
            continue;
        }
        if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) != 0 && !file_fds.contains_key(&id) {
            let reg = images.files.get(&(vma.shmid as u32)).ok_or_else(|| RestoreError::BadImage {
                image: format!("mm-{pid}.img"),
                what: format!("vma {:#x} names file id {} that files.img lacks", vma.start, vma.shmid),
            })?;
            let path = PathBuf::from(&reg.name);
            if !path.exists() {
                return Err(RestoreError::Io {
                    pid,
                    what: format!("file {} mapped at {:#x}", reg.name, vma.start),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
            let fd = helper_base + 1 + file_fds.len() as i32;
            file_fds.insert(vma.shmid as u32, fd);
            helpers.push((fd, path, (vma.fdflags.unwrap_or(0) as i32) & libc::O_ACCMODE));
        }
    }
    let exe_fd = helper_base + 1 + file_fds.len() as i32;
    let exe = images.files.get(&mm.exe_file_id).ok_or_else(|| RestoreError::BadImage {
        image: format!("mm-{pid}.img"),
        what: format!("exe_file_id {} not in files.img", mm.exe_file_id),
    })?;
    helpers.push((exe_fd, PathBuf::from(&exe.name), libc::O_RDONLY));
    // Where every dumped page is: this dump's pages file (helper fd `pages_fd`), or a
    // parent dump's (pre-dump), each of those a helper fd after the exe's.
    let sources = crate::page_sources::resolve(&options.dir, pid as u64, page)
        .map_err(|what| RestoreError::BadImage { image: format!("pagemap-{pid}.img"), what })?;
    let mut page_fds = vec![pages_fd];
    for (index, path) in sources.files.iter().enumerate().skip(1) {
        let fd = exe_fd + index as i32;
        helpers.push((fd, path.clone(), libc::O_RDONLY));
        page_fds.push(fd);
    }
    for fd in process.fds.iter().filter(|fd| fd.r#type == pb::FdTypes::Reg as i32) {
        let reg = images.files.get(&fd.id).ok_or_else(|| RestoreError::BadImage {
            image: "fdinfo".into(),
            what: format!("pid {pid} fd {} names file id {} that files.img lacks", fd.fd, fd.id),
        })?;
        if !images.ghosts.contains_key(&fd.id) && !Path::new(&reg.name).exists() {
            return Err(RestoreError::Io {
                pid,
                what: format!("file {} for fd {}", reg.name, fd.fd),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
    }

    // The area: code, then data, then ops; size estimated generously first.
    let code = HostArch::restorer_blob();
    let code_size = round_up(code.len() as u64, page);
    let estimate = code_size
        + round_up(
            64 * 1024 + (mm.vmas.len() as u64 + process.pagemap.len() as u64 + process.cores.len() as u64) * 4 * 80 + 32 * 1024,
            page,
        );
    let attaches = sysv_attaches(pid, &options.dir, mm)?;
    let mut whole: Vec<(u64, u64)> = attaches.iter().map(|a| (a.base, a.base + a.segment_len)).collect();
    whole.extend(arena);
    let area = find_gap(pid, mm, estimate, &whole)?;
    let own_block = own_vdso_block(pid)?;
    let block_size = own_block.iter().map(|&(s, e)| e - s).sum::<u64>().max(page);
    let mut used = whole.clone();
    used.push((area, area + estimate));
    let scratch = find_gap(pid, mm, block_size, &used)?;
    let mut program = Program::new(area + code_size);

    // 1. Drop everything but the area (and, where the architecture moves it, crust's
    //    own vDSO block): crust's own mappings go.
    let mut keep: Vec<(u64, u64)> = vec![(area, area + estimate)];
    if HostArch::MOVES_OWN_VDSO {
        keep.extend(own_block.iter().copied());
    }
    // This process's premapped slots stay until they move into place.
    for vma in mm.vmas.iter().filter(|v| premapped.contains_key(&v.start)) {
        let slot = premapped[&vma.start].0;
        keep.push((slot, slot + vma.end - vma.start));
    }
    keep.sort_unstable();
    let mut from = 0u64;
    for &(start, end) in keep.iter().chain(std::iter::once(&(HostArch::TASK_SIZE, HostArch::TASK_SIZE))) {
        if start > from {
            program.call(Sys::Munmap, [from, start - from, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("unmap {from:#x}-{start:#x}"));
        }
        from = from.max(end);
    }
    // 2. vDSO and vvar where they were.
    if let Some(block_start) = check_vdso {
        for op in HostArch::map_vdso_ops(block_start, &own_block, scratch) {
            program.raw(op, format!("map vdso block at {block_start:#x}"));
        }
    }
    // 3. System V shared memory, attached before the other areas are mapped: a partial
    //    attach maps the whole segment first and unmaps what the process had not kept.
    for attach in &attaches {
        let flags = SHM_REMAP | if attach.writable { 0 } else { libc::SHM_RDONLY as u64 };
        program.call(
            Sys::Shmat,
            [attach.id as u64, attach.base, flags, 0, 0, 0],
            RestorerOp::CHECK_EQ,
            attach.base,
            format!("attach System V shared memory {} at {:#x}", attach.id, attach.base),
        );
        for (from, to) in [(attach.base, attach.start), (attach.end, attach.base + attach.segment_len)] {
            if to > from {
                program.call(Sys::Munmap, [from, to - from, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("unmap {from:#x}-{to:#x} of shared memory {}", attach.id));
            }
        }
    }
    // 4. Every memory area, with its pages (premapped ones are moved into place).
    let mut premap = Vec::new();
    let mut pagemap = sources.runs.iter().peekable();
    for vma in &mm.vmas {
        if vma.status & (vs::VDSO | vs::VVAR | vs::VSYSCALL) != 0 {
            continue;
        }
        let len = vma.end - vma.start;
        let mut runs = Vec::new();
        while let Some(entry) = pagemap.peek() {
            if entry.vaddr >= vma.end {
                break;
            }
            if entry.vaddr < vma.start || entry.vaddr + entry.bytes > vma.end {
                return Err(RestoreError::BadImage {
                    image: format!("pagemap-{pid}.img"),
                    what: format!("pages {:#x}+{:#x} cross vma {:#x}-{:#x}", entry.vaddr, entry.bytes, vma.start, vma.end),
                });
            }
            runs.push((entry.vaddr, entry.bytes, entry.file, entry.offset));
            pagemap.next();
        }
        let prot = vma.prot as i32;
        if let Some(&(slot, inherited)) = premapped.get(&vma.start) {
            let madv = vma.madv.unwrap_or(0);
            premap.push(Premap {
                slot,
                start: vma.start,
                end: vma.end,
                inherited,
                runs,
                noreserve: vma.flags as i32 & libc::MAP_NORESERVE != 0,
                no_huge: madv & (1 << libc::MADV_NOHUGEPAGE) != 0,
            });
            program.call(
                Sys::Mremap,
                [slot, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, vma.start, 0],
                RestorerOp::CHECK_EQ,
                vma.start,
                format!("move premapped vma {:#x}-{:#x} into place from {slot:#x}", vma.start, vma.end),
            );
            if prot != libc::PROT_READ | libc::PROT_WRITE {
                program.call(Sys::Mprotect, [vma.start, len, prot as u64, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("protect vma {:#x}-{:#x}", vma.start, vma.end));
            }
            add_madvise(&mut program, vma, len);
            continue;
        }
        if vma.status & vs::SYSVIPC != 0 {
            if !runs.is_empty() {
                return Err(RestoreError::BadImage {
                    image: "pagemap".into(),
                    what: format!("pages at {:#x} in System V shared memory, whose pages the segment holds", vma.start),
                });
            }
            program.call(Sys::Mprotect, [vma.start, len, prot as u64, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("protect vma {:#x}-{:#x}", vma.start, vma.end));
            add_madvise(&mut program, vma, len);
            continue;
        }
        let map_prot = if runs.is_empty() { prot } else { prot | libc::PROT_WRITE };
        let keep = libc::MAP_SHARED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN | libc::MAP_NORESERVE;
        let mut flags = (vma.flags as i32 & keep) | libc::MAP_FIXED;
        let fd = if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) != 0 {
            file_fds[&(vma.shmid as u32)] as i64 as u64
        } else if vma.status & vs::ANON_SHARED != 0 {
            // One shmem object per shmid, shared by every process (and area) mapping it.
            flags &= !libc::MAP_ANONYMOUS;
            shmem[&vma.shmid].0 as u64
        } else {
            u64::MAX
        };
        let offset = if fd == u64::MAX { 0 } else { vma.pgoff };
        program.call(
            Sys::Mmap,
            [vma.start, len, map_prot as u64, flags as u64, fd, offset],
            RestorerOp::CHECK_EQ,
            vma.start,
            format!("map vma {:#x}-{:#x}", vma.start, vma.end),
        );
        let madv = vma.madv.unwrap_or(0);
        // MADV_NOHUGEPAGE before the pages are faulted in, so that a THP "always" kernel
        // puts no huge page where the dumped area forbade them. MADV_HUGEPAGE stays after
        // the pages (below): faulting 1 GiB as huge pages here took 0.25-3.8 s (direct
        // compaction under defrag=madvise) against 0.85-1.0 s as small pages.
        let no_huge = libc::MADV_NOHUGEPAGE as u64;
        if madv & (1 << no_huge) != 0 && !runs.is_empty() {
            program.call(
                Sys::Madvise,
                [vma.start, len, no_huge, 0, 0, 0],
                RestorerOp::CHECK_NONE,
                0,
                format!("madvise({no_huge}) vma {:#x}-{:#x} before its pages", vma.start, vma.end),
            );
        }
        let private = vma.flags as i32 & libc::MAP_PRIVATE != 0;
        for (addr, bytes, file, file_offset) in runs {
            if private && bytes >= POPULATE_AT_LEAST {
                // Fault the run's pages in with one call (batched, no exception per page)
                // before pread copies into them: measured here on 1 GiB, populate + pread
                // 0.65 s against 0.8-2.4 s for the pread alone. Only the run: pages the
                // image does not hold stay absent. Lenient: kernels before 5.14 lack it.
                program.call(
                    Sys::Madvise,
                    [addr, bytes, MADV_POPULATE_WRITE, 0, 0, 0],
                    RestorerOp::CHECK_NONE,
                    0,
                    format!("populate pages {:#x}-{:#x}", addr, addr + bytes),
                );
            }
            program.call(
                Sys::Pread64,
                [page_fds[file] as u64, addr, bytes, file_offset, 0, 0],
                RestorerOp::CHECK_EQ,
                bytes,
                format!("read pages {:#x}-{:#x} from {}", addr, addr + bytes, sources.files[file].display()),
            );
        }
        if map_prot != prot {
            program.call(
                Sys::Mprotect,
                [vma.start, len, prot as u64, 0, 0, 0],
                RestorerOp::CHECK_EQ,
                0,
                format!("protect vma {:#x}-{:#x}", vma.start, vma.end),
            );
        }
        add_madvise(&mut program, vma, len);
    }
    if pagemap.peek().is_some() {
        return Err(RestoreError::BadImage { image: "pagemap".into(), what: "entries outside every vma".into() });
    }
    // 5. The mm fields, auxv and exe link.
    let auxv = program.words(&mm.mm_saved_auxv);
    let mm_map = [
        mm.mm_start_code, mm.mm_end_code, mm.mm_start_data, mm.mm_end_data, mm.mm_start_brk,
        mm.mm_brk, mm.mm_start_stack, mm.mm_arg_start, mm.mm_arg_end, mm.mm_env_start,
        mm.mm_env_end, auxv,
    ];
    // `struct prctl_mm_map` ends in two u32s (auxv_size, exe_fd), in the host's order.
    let mut mm_map_bytes: Vec<u8> = mm_map.iter().flat_map(|word| word.to_ne_bytes()).collect();
    mm_map_bytes.extend_from_slice(&(mm.mm_saved_auxv.len() as u32 * 8).to_ne_bytes());
    mm_map_bytes.extend_from_slice(&(exe_fd as u32).to_ne_bytes());
    let mm_map_addr = program.data(&mm_map_bytes);
    program.call(
        Sys::Prctl,
        [libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64, mm_map_addr, 104, 0, 0],
        RestorerOp::CHECK_EQ,
        0,
        "prctl(PR_SET_MM_MAP)".into(),
    );
    if mm.thp_disabled == Some(true) {
        program.call(Sys::Prctl, [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "disable THP".into());
    }
    if leader_core.tc.as_ref().and_then(|t| t.child_subreaper) == Some(true) {
        program.call(Sys::Prctl, [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, "child subreaper".into());
    }
    // 5. Signal handlers, altstack, timers, limits, personality.
    let tc = leader_core.tc.clone().unwrap_or_default();
    let signals = (1..=64u64).filter(|&s| s != libc::SIGKILL as u64 && s != libc::SIGSTOP as u64);
    // SIGTRAP's action goes in after the restorer's traps: a trap while the signal is
    // blocked resets its action to the default.
    let mut sigtrap_action = None;
    for (signal, sa) in signals.zip(tc.sigactions.iter()) {
        let act = program.words(&[sa.sigaction, sa.flags, sa.restorer, sa.mask]);
        if signal == libc::SIGTRAP as u64 {
            sigtrap_action = Some(act);
            continue;
        }
        program.call(Sys::RtSigaction, [signal, act, 0, 8, 0, 0], RestorerOp::CHECK_EQ, 0, format!("sigaction {signal}"));
    }
    if let Some(timers) = &tc.timers {
        for (which, t) in [&timers.real, &timers.virt, &timers.prof].into_iter().enumerate() {
            if t.isec | t.iusec | t.vsec | t.vusec == 0 {
                continue;
            }
            // The kernel adds a tick to CPU-time timers as they are set: take it off
            // again, or each dump and restore would push the expiry a tick later.
            let mut left = t.vsec.saturating_mul(1_000_000).saturating_add(t.vusec);
            if which != libc::ITIMER_REAL as usize {
                left = left.saturating_sub(sys::cpu_itimer_tick_us());
            }
            // A timer due at this very moment still has to fire.
            let (vsec, vusec) = if left == 0 { (0, 1) } else { (left / 1_000_000, left % 1_000_000) };
            let value = program.words(&[t.isec, t.iusec, vsec, vusec]);
            program.call(Sys::Setitimer, [which as u64, value, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("setitimer {which}"));
        }
    }
    if let Some(rlimits) = &tc.rlimits {
        for (resource, limit) in rlimits.rlimits.iter().enumerate() {
            let value = program.words(&[limit.cur, limit.max]);
            program.call(Sys::Prlimit64, [0, resource as u64, value, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("setrlimit {resource}"));
        }
    }
    program.call(Sys::Personality, [tc.personality as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0, "personality".into());
    // 6. Pending signals of the process (every signal is blocked until the tracer sets
    //    the real masks); each thread's own are queued by the thread itself, later.
    for info in tc.signals_s.iter().flat_map(|q| q.signals.iter()) {
        let (signo, addr) = siginfo_data(&mut program, &info.siginfo);
        program.call(Sys::RtSigqueueinfo, [pid as u64, signo, addr, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("queue signal {signo}"));
    }
    // 7. The other threads, each with its dumped tid; each traps at once for the tracer.
    for &tid in process.pstree.threads.iter().skip(1) {
        // set_tid is an array of pid_t.
        let tids = program.data(&tid.to_ne_bytes());
        let flags = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD | libc::CLONE_SYSVSEM) as u64;
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        // stack_size, tls, set_tid, set_tid_size, cgroup.
        let args = program.words(&[flags, 0, 0, 0, 0, 0, 0, 0, tids, 1, 0]);
        program.call(Sys::Clone3, [args, 88, 0, 0, 0, 0], RestorerOp::CHECK_CLONE, tid as u64, format!("create thread {tid}"));
    }
    // 7b. POSIX timers, once the threads they may signal exist.
    if let Some(timers) = &tc.timers {
        posix_timers(&mut program, pid, &timers.posix)?;
    }
    // 8. Close the helpers, then drop privileges last.
    let shmem_used: Vec<u64> = {
        let mut used: Vec<u64> = mm.vmas.iter().filter(|v| v.status & vs::ANON_SHARED != 0).map(|v| v.shmid).collect();
        used.sort_unstable();
        used.dedup();
        used
    };
    for fd in helpers.iter().map(|h| h.0).chain(broker_helpers.iter().map(|h| h.0)).chain(shmem_used.iter().map(|id| shmem[id].0)) {
        program.call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_EQ, 0, format!("close helper fd {fd}"));
    }
    for fd in [error_fd, sync_fd] {
        program.call(Sys::Close, [fd as u64, 0, 0, 0, 0, 0], RestorerOp::CHECK_NONE, 0, format!("close helper fd {fd}"));
    }
    // Per-thread state the tracer injects into each thread, with its data in the arena.
    let mut thread_ops: Vec<Vec<(Sys, [u64; 6], String)>> = Vec::new();
    let acting = process.pstree.threads[process.acting_thread()] as i32;
    for (index, (core, &tid)) in process.cores.iter().zip(process.pstree.threads.iter()).enumerate() {
        let mut ops: Vec<(Sys, [u64; 6], String)> = Vec::new();
        let tcore = core.thread_core.clone().unwrap_or_default();
        if index == 0 && process.leader_gone() {
            // It only exits again (`finish_process`), under its own name.
            if let Some(comm) = &tcore.comm {
                ops.push(set_name_op(&mut program, comm, tid));
            }
            thread_ops.push(ops);
            continue;
        }
        if let Some(rseq) = &tcore.rseq_entry {
            ops.push((Sys::Rseq, [rseq.rseq_abi_pointer, rseq.rseq_abi_size as u64, 0, rseq.signature as u64, 0, 0], format!("tid {tid}: register rseq")));
        }
        // Always set: a disabled altstack must be disabled explicitly, or the leader keeps
        // the one it inherited from crust's forking thread (now unmapped), and the first
        // SA_ONSTACK handler would fault building its frame there.
        let disabled = pb::ThreadSasEntry { ss_sp: 0, ss_size: 0, ss_flags: libc::SS_DISABLE as u32 };
        let sas = tcore.sas.filter(|s| s.ss_flags & libc::SS_DISABLE as u32 == 0).unwrap_or(disabled);
        // `stack_t`: ss_sp, the int ss_flags and its padding, ss_size.
        let mut stack_bytes = sas.ss_sp.to_ne_bytes().to_vec();
        stack_bytes.extend_from_slice(&(sas.ss_flags & !(libc::SS_ONSTACK as u32)).to_ne_bytes());
        stack_bytes.extend_from_slice(&[0; 4]);
        stack_bytes.extend_from_slice(&sas.ss_size.to_ne_bytes());
        let stack = program.data(&stack_bytes);
        ops.push((Sys::Sigaltstack, [stack, 0, 0, 0, 0, 0], format!("tid {tid}: sigaltstack")));
        if tcore.futex_rla != 0 {
            ops.push((Sys::SetRobustList, [tcore.futex_rla, tcore.futex_rla_len as u64, 0, 0, 0, 0], format!("tid {tid}: set_robust_list")));
        }
        if let Some(clear_tid) = HostArch::clear_tid_address(core) {
            ops.push((Sys::SetTidAddress, [clear_tid, 0, 0, 0, 0, 0], format!("tid {tid}: set_tid_address")));
        }
        if let Some(comm) = &tcore.comm {
            ops.push(set_name_op(&mut program, comm, tid));
        }
        for info in tcore.signals_p.iter().flat_map(|q| q.signals.iter()) {
            let (signo, addr) = siginfo_data(&mut program, &info.siginfo);
            ops.push((Sys::RtTgsigqueueinfo, [pid as u64, tid as u64, signo, addr, 0, 0], format!("tid {tid}: queue signal {signo}")));
        }
        if let Some(signal) = tcore.pdeath_sig.filter(|&s| s != 0) {
            ops.push((Sys::Prctl, [libc::PR_SET_PDEATHSIG as u64, signal as u64, 0, 0, 0, 0], format!("tid {tid}: pdeathsig")));
        }
        // Filters go in while the thread is still root (installing one needs
        // CAP_SYS_ADMIN or no_new_privs); the tracer suspends them for what follows.
        let seccomp_mode = tcore.seccomp_mode.unwrap_or(0) as u32;
        if seccomp_mode == SECCOMP_MODE_FILTER {
            for filter in seccomp_chain(&images.seccomp, tid, tcore.seccomp_filter)? {
                let code = program.data(filter);
                let mut fprog = [0u8; 16];
                fprog[0..2].copy_from_slice(&((filter.len() / 8) as u16).to_ne_bytes());
                fprog[8..16].copy_from_slice(&code.to_ne_bytes());
                let fprog = program.data(&fprog);
                ops.push((Sys::Seccomp, [SECCOMP_SET_MODE_FILTER, 0, fprog, 0, 0, 0], format!("tid {tid}: seccomp filter")));
            }
        } else if seccomp_mode > SECCOMP_MODE_FILTER {
            return Err(RestoreError::BadImage { image: format!("core-{tid}.img"), what: format!("unknown seccomp mode {seccomp_mode} (thread_core.seccomp_mode)") });
        }
        if let Some(creds) = &tcore.creds {
            ops.extend(creds_ops(&mut program, creds, tid));
        }
        if let (Some(act), true) = (sigtrap_action, tid as i32 == acting) {
            ops.push((Sys::RtSigaction, [libc::SIGTRAP as u64, act, 0, 8, 0, 0], "sigaction SIGTRAP".into()));
        }
        // Changing credentials resets dumpable: the process's own value goes last.
        if let (Some(dumpable), true) = (mm.dumpable, tid as i32 == acting) {
            ops.push((Sys::Prctl, [libc::PR_SET_DUMPABLE as u64, dumpable as u64, 0, 0, 0, 0], format!("tid {tid}: dumpable")));
        }
        // Strict mode allows almost nothing: last (the tracer's calls are not filtered).
        if seccomp_mode == SECCOMP_MODE_STRICT {
            ops.push((Sys::Seccomp, [SECCOMP_SET_MODE_STRICT, 0, 0, 0, 0, 0], format!("tid {tid}: seccomp strict mode")));
        }
        thread_ops.push(ops);
    }

    for (fd, path, flags) in &helpers {
        log::debug!("pid {pid} helper fd {fd}: {} (flags {flags:#o})", path.display());
    }
    let ops_bytes = program.finish_ops();
    let ops_offset = code_size + round_up(program.data.len() as u64, 16);
    let area_size = round_up(ops_offset + ops_bytes.len() as u64, page);
    if area_size > estimate {
        return Err(RestoreError::Unsupported { pid, what: format!("a restorer program of {area_size} bytes") });
    }
    let pidfds = process
        .fds
        .iter()
        .filter_map(|fd| {
            let entry = images.pidfds.get(&fd.id).filter(|p| p.nspid != -1)?;
            let flags = (entry.flags as i32 & (libc::O_NONBLOCK | libc::O_EXCL)) as u64;
            Some((fd.fd as i32, entry.nspid, flags, fd.flags & libc::FD_CLOEXEC as u32 != 0))
        })
        .collect();
    Ok(Plan {
        pidfds,
        area,
        area_size: estimate,
        code_size,
        data: program.data,
        ops_offset,
        ops_bytes,
        descriptions: program.descriptions,
        helpers,
        broker_helpers,
        shmem_used,
        thread_ops,
        premap,
        page_files: sources.files.clone(),
    })
}

/// `mremap` flags.
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

/// `madvise` advice that faults a range in for writing (Linux 5.14), `<linux/mman.h>`.
const MADV_POPULATE_WRITE: u64 = 23;
/// Runs of pages at least this long are populated before their pread.
const POPULATE_AT_LEAST: u64 = 64 << 10;

const SECCOMP_MODE_STRICT: u32 = 1;
const SECCOMP_MODE_FILTER: u32 = 2;
const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;

/// A thread's seccomp filters, oldest first: from its newest (`newest`, an index into
/// seccomp.img) back through each filter's `prev`.
fn seccomp_chain(filters: &[pb::SeccompFilter], tid: u32, newest: Option<u32>) -> Result<Vec<&[u8]>, RestoreError> {
    let bad = |what: String| RestoreError::BadImage { image: "seccomp.img".into(), what };
    let mut chain = Vec::new();
    let mut next = Some(newest.ok_or_else(|| bad(format!("thread {tid} in filter mode names no filter (thread_core.seccomp_filter)")))?);
    while let Some(index) = next {
        let filter = filters.get(index as usize).ok_or_else(|| bad(format!("thread {tid}: no filter {index} (seccomp_filters)")))?;
        let instructions = filter.filter.len() / 8;
        if filter.filter.len() % 8 != 0 || instructions == 0 || instructions > 4096 {
            return Err(bad(format!("filter {index} is {} bytes, not 1 to 4096 8-byte instructions (seccomp_filters.filter)", filter.filter.len())));
        }
        if chain.len() >= filters.len() {
            return Err(bad(format!("filter {index} is part of a loop (seccomp_filters.prev)")));
        }
        chain.push(filter.filter.as_slice());
        next = filter.prev;
    }
    chain.reverse();
    Ok(chain)
}

/// The syscalls that give a thread its dumped credentials, in an order that keeps the
/// privilege each step needs until it is done: groups, xids (with SECURE_NO_SETUID_FIXUP
/// so capabilities survive leaving root), securebits, bounding set, capabilities,
/// ambient capabilities, no_new_privs. Nothing when they equal crust's own.
fn creds_ops(program: &mut Program, creds: &pb::CredsEntry, tid: u32) -> Vec<(Sys, [u64; 6], String)> {
    let own = procfs::parse_key_values(&fs::read_to_string("/proc/thread-self/status").unwrap_or_default());
    let quad = |key: &str| own.get(key).and_then(|v| procfs::parse_id_quad(v)).unwrap_or([0; 4]);
    let caps = |key: &str| own.get(key).and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
    let image_caps = |words: &[u32]| words.iter().enumerate().fold(0u64, |acc, (i, w)| acc | ((*w as u64) << (32 * i)));
    let own_groups: Vec<u32> = own.get("Groups").map(|g| g.split_whitespace().filter_map(|v| v.parse().ok()).collect()).unwrap_or_default();
    let same = quad("Uid") == [creds.uid, creds.euid, creds.suid, creds.fsuid]
        && quad("Gid") == [creds.gid, creds.egid, creds.sgid, creds.fsgid]
        && own_groups == creds.groups
        && caps("CapInh") == image_caps(&creds.cap_inh)
        && caps("CapPrm") == image_caps(&creds.cap_prm)
        && caps("CapEff") == image_caps(&creds.cap_eff)
        && caps("CapBnd") == image_caps(&creds.cap_bnd)
        && caps("CapAmb") == image_caps(&creds.cap_amb)
        && creds.secbits == 0;
    let mut ops = Vec::new();
    if !same {
        const SECURE_NO_SETUID_FIXUP: u64 = 1 << 2;
        let groups: Vec<u8> = creds.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        let groups_addr = program.data(&groups);
        ops.push((Sys::Setgroups, [creds.groups.len() as u64, groups_addr, 0, 0, 0, 0], format!("tid {tid}: setgroups")));
        ops.push((Sys::Prctl, [libc::PR_SET_SECUREBITS as u64, SECURE_NO_SETUID_FIXUP, 0, 0, 0, 0], format!("tid {tid}: keep caps across setuid")));
        ops.push((Sys::Setresgid, [creds.gid as u64, creds.egid as u64, creds.sgid as u64, 0, 0, 0], format!("tid {tid}: setresgid")));
        ops.push((Sys::Setfsgid, [creds.fsgid as u64, 0, 0, 0, 0, 0], format!("tid {tid}: setfsgid")));
        ops.push((Sys::Setresuid, [creds.uid as u64, creds.euid as u64, creds.suid as u64, 0, 0, 0], format!("tid {tid}: setresuid")));
        ops.push((Sys::Setfsuid, [creds.fsuid as u64, 0, 0, 0, 0, 0], format!("tid {tid}: setfsuid")));
        ops.push((Sys::Prctl, [libc::PR_SET_SECUREBITS as u64, creds.secbits as u64, 0, 0, 0, 0], format!("tid {tid}: securebits")));
        let last_cap: u64 = fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(40);
        let bounding = image_caps(&creds.cap_bnd);
        for cap in 0..=last_cap {
            if bounding & (1 << cap) == 0 {
                ops.push((Sys::Prctl, [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0], format!("tid {tid}: drop cap {cap} from the bounding set")));
            }
        }
        // capset: header {version 3, pid 0}, then two {effective, permitted, inheritable}.
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let mut header_bytes = LINUX_CAPABILITY_VERSION_3.to_ne_bytes().to_vec();
        header_bytes.extend_from_slice(&0i32.to_ne_bytes());
        let header = program.data(&header_bytes);
        let word = |v: &[u32], i: usize| v.get(i).copied().unwrap_or(0);
        let data: Vec<u8> = [
            word(&creds.cap_eff, 0), word(&creds.cap_prm, 0), word(&creds.cap_inh, 0),
            word(&creds.cap_eff, 1), word(&creds.cap_prm, 1), word(&creds.cap_inh, 1),
        ]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
        let data_addr = program.data(&data);
        ops.push((Sys::Capset, [header, data_addr, 0, 0, 0, 0], format!("tid {tid}: capset")));
        let ambient = image_caps(&creds.cap_amb);
        for cap in 0..=last_cap {
            if ambient & (1 << cap) != 0 {
                ops.push((Sys::Prctl, [libc::PR_CAP_AMBIENT as u64, libc::PR_CAP_AMBIENT_RAISE as u64, cap, 0, 0, 0], format!("tid {tid}: ambient cap {cap}")));
            }
        }
    }
    if creds.no_new_privs == Some(1) {
        ops.push((Sys::Prctl, [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0], format!("tid {tid}: no_new_privs")));
    }
    ops
}

/// The injected `prctl(PR_SET_NAME)` giving thread `tid` the name `comm` (at most 15
/// bytes, as the kernel keeps it).
fn set_name_op(program: &mut Program, comm: &str, tid: u32) -> (Sys, [u64; 6], String) {
    let mut bytes = comm.as_bytes().to_vec();
    bytes.truncate(15);
    bytes.push(0);
    let name = program.data(&bytes);
    (Sys::Prctl, [libc::PR_SET_NAME as u64, name, 0, 0, 0, 0], format!("tid {tid}: set name"))
}

/// Puts a siginfo in the arena; returns its signal number and address.
fn siginfo_data(program: &mut Program, siginfo: &[u8]) -> (u64, u64) {
    let signo = siginfo.get(..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
    let mut bytes = siginfo.to_vec();
    bytes.resize(sys::SIGINFO_SIZE, 0);
    (signo as u64, program.data(&bytes))
}

/// Checks that this kernel's vDSO and vvar pages have the sizes and relative places the
/// image recorded, and returns where the block of vvar and vDSO pages starts.
fn check_vdso_layout(pid: i32, mm: &pb::MmEntry) -> Result<Option<u64>, RestoreError> {
    let image_special: Vec<(u64, u64, bool)> = mm
        .vmas
        .iter()
        .filter(|v| v.status & (vs::VDSO | vs::VVAR) != 0)
        .map(|v| (v.start, v.end, v.status & vs::VDSO != 0))
        .collect();
    let Some(&(vdso_start, _, _)) = image_special.iter().find(|v| v.2) else { return Ok(None) };
    let own_special = own_special_areas(pid)?;
    let own_vdso = own_special.iter().find(|v| v.2).map(|v| v.0).unwrap_or(0);
    let relative = |list: &[(u64, u64, bool)], base: u64| -> Vec<(i64, u64, bool)> {
        list.iter().map(|&(s, e, is_vdso)| (s as i64 - base as i64, e - s, is_vdso)).collect()
    };
    if relative(&image_special, vdso_start) != relative(&own_special, own_vdso) {
        return Err(RestoreError::Unsupported {
            pid,
            what: format!(
                "a vdso/vvar layout {:?} that differs from this kernel's {:?}",
                relative(&image_special, vdso_start),
                relative(&own_special, own_vdso)
            ),
        });
    }
    Ok(image_special.iter().map(|v| v.0).min())
}

/// crust's own vvar and vDSO areas in address order: (start, end, is the vDSO).
fn own_special_areas(pid: i32) -> Result<Vec<(u64, u64, bool)>, RestoreError> {
    let own = procfs::parse_maps(&fs::read_to_string("/proc/self/maps").map_err(io_err(pid, "read /proc/self/maps"))?)
        .map_err(|e| RestoreError::Child { pid, what: e.to_string() })?;
    Ok(own
        .iter()
        .filter(|m| m.name == "[vdso]" || m.name.starts_with("[vvar"))
        .map(|m| (m.start, m.end, m.name == "[vdso]"))
        .collect())
}

/// crust's own vvar and vDSO areas, in address order.
fn own_vdso_block(pid: i32) -> Result<Vec<(u64, u64)>, RestoreError> {
    Ok(own_special_areas(pid)?.into_iter().map(|(start, end, _)| (start, end)).collect())
}

/// Finds an address range free both in the target's layout and in ours (and outside
/// `also_used`), for the restorer.
/// The madvise calls that give area `vma` its advice bits.
fn add_madvise(program: &mut Program, vma: &pb::VmaEntry, len: u64) {
    let madv = vma.madv.unwrap_or(0);
    for advice in 0..64u64 {
        if madv & (1 << advice) != 0 {
            let lenient = advice == libc::MADV_HUGEPAGE as u64 || advice == libc::MADV_NOHUGEPAGE as u64;
            program.call(
                Sys::Madvise,
                [vma.start, len, advice, 0, 0, 0],
                if lenient { RestorerOp::CHECK_NONE } else { RestorerOp::CHECK_EQ },
                0,
                format!("madvise({advice}) vma {:#x}-{:#x}", vma.start, vma.end),
            );
        }
    }
}

/// `shmat` flag: replace whatever is mapped there.
const SHM_REMAP: u64 = 0o40000;

/// One System V shared memory attach to make again: consecutive areas of one segment,
/// at consecutive offsets, are one attach (an mprotect split it).
struct SysvAttach {
    id: i32,
    /// Where the whole segment goes, and its length in whole pages.
    base: u64,
    segment_len: u64,
    /// The part the process had kept.
    start: u64,
    end: u64,
    writable: bool,
}

/// The System V attaches of `mm`, each checked against its segment: the dumped one of
/// the tree's own IPC namespace, or one that must still exist in crust's.
fn sysv_attaches(pid: i32, dir: &Path, mm: &pb::MmEntry) -> Result<Vec<SysvAttach>, RestoreError> {
    let page = sys::page_size();
    if !mm.vmas.iter().any(|v| v.status & vs::SYSVIPC != 0) {
        return Ok(Vec::new());
    }
    let dumped = if crate::ipc::image_has_namespace(dir) {
        Some(crate::ipc::segment_sizes(dir).map_err(|what| RestoreError::BadImage { image: "ipcns-shm".into(), what })?)
    } else {
        None
    };
    let mut out: Vec<SysvAttach> = Vec::new();
    for vma in mm.vmas.iter().filter(|v| v.status & vs::SYSVIPC != 0) {
        let id = vma.shmid as i32;
        let writable = vma.fdflags.unwrap_or(0) as i32 & libc::O_ACCMODE == libc::O_RDWR;
        if let Some(last) = out.last_mut() {
            if last.id == id && last.end == vma.start && vma.pgoff == last.end - last.base {
                last.end = vma.end;
                last.writable |= writable;
                continue;
            }
        }
        let bad = |what: String| RestoreError::BadImage { image: format!("mm-{pid}.img"), what };
        let size = match &dumped {
            Some(sizes) => *sizes.get(&id).ok_or_else(|| bad(format!("vma {:#x} attaches System V shared memory {id}, not in ipcns-shm (vma_entry.shmid)", vma.start)))?,
            None => crate::ipc::host_segment_size(id).map_err(|what| RestoreError::Child { pid, what })?,
        };
        let segment_len = size.div_ceil(page) * page;
        let base = vma.start.checked_sub(vma.pgoff).filter(|_| vma.pgoff % page == 0 && vma.pgoff + (vma.end - vma.start) <= segment_len);
        let Some(base) = base else {
            return Err(bad(format!("vma {:#x}-{:#x} at offset {:#x} outside System V shared memory {id} of {size} bytes (vma_entry.pgoff)", vma.start, vma.end, vma.pgoff)));
        };
        out.push(SysvAttach { id, base, segment_len, start: vma.start, end: vma.end, writable });
    }
    Ok(out)
}

fn find_gap(pid: i32, mm: &pb::MmEntry, size: u64, also_used: &[(u64, u64)]) -> Result<u64, RestoreError> {
    let own = procfs::parse_maps(&fs::read_to_string("/proc/self/maps").map_err(io_err(pid, "read /proc/self/maps"))?)
        .map_err(|e| RestoreError::Child { pid, what: e.to_string() })?;
    let mut used: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    used.extend(own.iter().map(|m| (m.start, m.end)));
    used.extend(also_used.iter().copied());
    gap_below_top(pid, used, size)
}

/// The highest gap of `size` bytes (with guard pages) below the top 1 GiB of the address
/// space that overlaps nothing in `used`.
fn gap_below_top(pid: i32, mut used: Vec<(u64, u64)>, size: u64) -> Result<u64, RestoreError> {
    used.retain(|&(s, _)| s < HostArch::TASK_SIZE);
    used.sort_unstable();
    let page = sys::page_size();
    let guard = 16 * page;
    let mut candidate_end = HostArch::TASK_SIZE - (1 << 30);
    for &(start, end) in used.iter().rev() {
        if end + guard + size + guard <= candidate_end && end < candidate_end {
            return Ok((candidate_end - guard - size) / page * page);
        }
        candidate_end = candidate_end.min(start);
    }
    if candidate_end > size + 2 * guard + (1 << 20) {
        return Ok(candidate_end - guard - size);
    }
    Err(RestoreError::Unsupported { pid, what: "an address space with no room for the restorer".into() })
}

/// The restored root's first life: crust code, forked with the root's PID. Moves its
/// pipes out of the way, waits until the tracer has seized it, and becomes the root.
fn root_main(tree: &TreePlan, images: &Images, options: &RestoreOptions, broker: &crate::files::Broker, sync: OwnedFd, error: OwnedFd) -> ! {
    let result = (|| -> Result<(), String> {
        // Move the pipes to their numbers (through copies above both, so neither lands on
        // the other).
        let above = tree.broker_base + broker.fds.len() as i32 + 4096;
        let error_copy = sys::dup_at_least(error.as_raw_fd(), above).map_err(|e| format!("copy error pipe: {e}"))?;
        let sync_copy = sys::dup_at_least(sync.as_raw_fd(), above).map_err(|e| format!("copy sync pipe: {e}"))?;
        drop(error);
        drop(sync);
        sys::place_fd(error_copy, tree.error_fd, true).map_err(|e| format!("place error pipe: {e}"))?;
        sys::place_fd(sync_copy, tree.sync_fd, true).map_err(|e| format!("place sync pipe: {e}"))?;
        sys::close_fd(error_copy);
        sys::close_fd(sync_copy);
        let mut keep = broker.numbers();
        keep.extend([tree.error_fd, tree.sync_fd]);
        keep.extend(tree.shmem.values().map(|s| s.0));
        close_all_but(&keep)?;
        broker.make_dead_pidfds()?;
        // The tree's IPC objects, before any process attaches a segment.
        if tree.new_ipc_ns {
            crate::ipc::restore_namespace(&options.dir).map_err(|e| format!("System V IPC namespace: {e}"))?;
        }
        // Wait until the tracer has seized us.
        let mut byte = [0u8; 1];
        let mut sync_file = fd_file(tree.sync_fd);
        sync_file.read_exact(&mut byte).map_err(|e| format!("wait for tracer: {e}"))?;
        std::mem::forget(sync_file);
        Ok(())
    })();
    match result {
        Ok(()) => process_main(tree, images, options, 0, broker),
        Err(message) => die(tree, images.processes[0].pid(), &message),
    }
}

/// Writes `message` to the error pipe and exits.
fn die(tree: &TreePlan, pid: i32, message: &str) -> ! {
    let mut out = fd_file(tree.error_fd);
    let _ = out.write_all(format!("pid {pid}: {message}\n").as_bytes());
    std::mem::forget(out);
    sys::exit_now(1)
}

/// Closes every fd of this process but `keep`.
fn close_all_but(keep: &[i32]) -> Result<(), String> {
    let open: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("list own fds: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        if !keep.contains(&fd) {
            sys::close_fd(fd);
        }
    }
    Ok(())
}

/// One process of the tree, in crust code with its dumped PID: session and group, fds
/// (installed from the broker's descriptions, inherited through fork), children, then
/// the restorer. Never returns.
fn process_main(tree: &TreePlan, images: &Images, options: &RestoreOptions, index: usize, broker: &crate::files::Broker) -> ! {
    let process = &images.processes[index];
    let pid = process.pid();
    let result = (|| -> Result<(), String> {
        let p = &process.pstree;
        if !(index == 0 && options.shell_job) {
            if p.sid == p.pid {
                sys::new_session().map_err(|e| format!("setsid: {e}"))?;
            } else if p.pgid == p.pid {
                sys::set_process_group(0).map_err(|e| format!("setpgid: {e}"))?;
            } else {
                sys::set_process_group(p.pgid as i32).map_err(|e| format!("setpgid {}: {e}", p.pgid))?;
            }
            if p.sid == p.pid && p.pgid != p.pid {
                sys::set_process_group(p.pgid as i32).map_err(|e| format!("setpgid {}: {e}", p.pgid))?;
            }
        }
        if !(index == 0 && options.shell_job) {
            broker.terminals(p.pid, p.sid, p.pgid)?;
        }
        if process.is_zombie() {
            if let Some(tc) = &process.cores[0].tc {
                let _ = sys::set_comm(&tc.comm);
            }
            let status = process.cores[0].tc.as_ref().map(|t| t.exit_code as i32).unwrap_or(0);
            let _ = close_all_but(&[]);
            if libc::WIFSIGNALED(status) {
                sys::die_by_signal(libc::WTERMSIG(status));
            }
            sys::exit_now(libc::WEXITSTATUS(status));
        }
        let mut keep = broker.numbers();
        keep.push(tree.error_fd);
        keep.extend(tree.shmem.values().map(|s| s.0));
        close_all_but(&keep)?;
        broker.install(&process.fds, &images.files, &options.dir)?;
        let earlier = images.processes[..index].iter().flat_map(|p| p.fds.iter().map(|f| f.id)).collect();
        broker.after_install(&process.fds, &earlier)?;
        // Orphans of a helper come here only if this process is a subreaper already.
        if process.cores.first().and_then(|c| c.tc.as_ref()).and_then(|t| t.child_subreaper) == Some(true) {
            sys::become_child_subreaper().map_err(|e| format!("become child subreaper: {e}"))?;
        }
        let plan = tree.plans[index].as_ref().expect("live processes have a plan");
        // Areas shared copy-on-write with children: filled before they are forked.
        fill_premapped(&plan.premap, &plan.page_files)?;
        // Children, group leaders first, then the helpers of exited leaders (which fork
        // their members and exit, leaving them to us); they inherit the broker too.
        let by_helper: Vec<usize> = tree.helpers.iter().flat_map(|h| h.members.iter().copied()).collect();
        let own: Vec<usize> = (index + 1..images.processes.len())
            .filter(|&i| images.processes[i].pstree.ppid == p.pid && !by_helper.contains(&i))
            .collect();
        let ordered = fork_order(images, &own);
        let (leaders, others) = ordered.split_at(ordered.iter().take_while(|&&i| images.processes[i].pstree.pgid == images.processes[i].pstree.pid).count());
        let fork_child = |child_index: usize| -> Result<(), String> {
            let child = &images.processes[child_index];
            match sys::fork_with_pid(child.pid()) {
                Ok(0) => process_main(tree, images, options, child_index, broker),
                Ok(host) => {
                    lead_group_early(images, child_index, host);
                    Ok(())
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Err(format!("child pid {} is busy", child.pid())),
                Err(e) => Err(format!("fork child {}: {e}", child.pid())),
            }
        };
        for &child_index in leaders {
            fork_child(child_index)?;
        }
        for helper in tree.helpers.iter().filter(|h| h.parent == p.pid) {
            match sys::fork_with_pid(helper.pid as i32) {
                Ok(0) => helper_main(tree, images, options, helper, broker),
                Ok(host) => match sys::wait_thread(host) {
                    Ok(sys::WaitEvent::Exited(0)) => {}
                    Ok(other) => return Err(format!("helper {} for an exited leader ended with {other:?}", helper.pid)),
                    Err(e) => return Err(format!("wait for helper {}: {e}", helper.pid)),
                },
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(format!("pid {} (exited session or group leader) is busy", helper.pid)),
                Err(e) => return Err(format!("fork helper {}: {e}", helper.pid)),
            }
        }
        for &child_index in others {
            fork_child(child_index)?;
        }
        for &(number, id) in &plan.broker_helpers {
            let source = broker.fds.get(&id).ok_or(format!("mapped file id {id} was not opened"))?;
            sys::place_fd(*source, number, true).map_err(|e| format!("place mapped file {id}: {e}"))?;
        }
        broker.close();
        broker.take_locks()?;
        // Shared anonymous objects stay at their numbers until the restorer maps them.
        for (&shmid, &(number, _)) in &tree.shmem {
            if !plan.shmem_used.contains(&shmid) {
                sys::close_fd(number);
            }
        }
        for (number, path, flags) in &plan.helpers {
            let fd = sys::open_raw(path, *flags | libc::O_CLOEXEC, 0).map_err(|e| format!("open {}: {e}", path.display()))?;
            if fd != *number {
                sys::place_fd(fd, *number, true).map_err(|e| format!("place {}: {e}", path.display()))?;
                sys::close_fd(fd);
            }
        }
        let cwd = images.files.get(&process.fs.cwd_id).map(|r| PathBuf::from(&r.name));
        let root = images.files.get(&process.fs.root_id).map(|r| PathBuf::from(&r.name));
        if let Some(root) = root.filter(|r| r != Path::new("/")) {
            sys::change_root(&root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
        }
        if let Some(cwd) = cwd {
            std::env::set_current_dir(&cwd).map_err(|e| format!("chdir {}: {e}", cwd.display()))?;
        }
        if let Some(umask) = process.fs.umask {
            sys::set_umask(umask);
        }
        if let Some(tc) = &process.cores[0].tc {
            sys::set_comm(&tc.comm).map_err(|e| format!("set comm: {e}"))?;
        }
        sys::block_all_signals().map_err(|e| format!("block signals: {e}"))?;
        sys::unregister_own_rseq(HostArch::thread_pointer()).map_err(|e| format!("unregister own rseq: {e}"))?;

        // Map the restorer area and jump.
        let area = plan.area;
        sys::map_anonymous_at(area, plan.area_size as usize, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(|e| format!("map restorer area at {area:#x}: {e}"))?;
        #[allow(unsafe_code)]
        // SAFETY: area..area+area_size was just mapped writable for this purpose; code,
        // data and ops fit in it (checked when planning).
        unsafe {
            sys::copy_to_address(area, HostArch::restorer_blob());
            sys::copy_to_address(area + plan.code_size, &plan.data);
            sys::copy_to_address(area + plan.ops_offset, &plan.ops_bytes);
        }
        sys::protect(area, plan.code_size as usize, libc::PROT_READ | libc::PROT_EXEC)
            .map_err(|e| format!("protect restorer code: {e}"))?;
        HostArch::enter_restorer(area + HostArch::restorer_entry_offset() as u64, area + plan.ops_offset)
    })();
    match result {
        Ok(()) => die(tree, pid, "restorer returned"),
        Err(message) => die(tree, pid, &message),
    }
}

/// Has the stopped, traced thread `tid` call exit(0) from the syscall instruction at
/// `syscall_ip`, and lets it go once it is past user space (PTRACE_EVENT_EXIT): a leader
/// whose threads live on stays a zombie, as it was at dump time.
fn exit_thread(tid: i32, syscall_ip: u64) -> Result<(), RestoreError> {
    let now = HostArch::read_regs(tid).map_err(|source| RestoreError::Arch { pid: tid, source })?;
    let nr = HostArch::syscall_number(Sys::Exit).ok_or(RestoreError::Unsupported { pid: tid, what: "exit on this architecture".into() })?;
    let regs = HostArch::syscall_regs(&now.gpr, syscall_ip, nr, [0; 6]);
    HostArch::write_gpr(tid, &regs).map_err(|source| RestoreError::Arch { pid: tid, source })?;
    sys::add_trace_exit(tid).map_err(io_err(tid, "PTRACE_SETOPTIONS exit"))?;
    sys::continue_thread(tid, 0).map_err(io_err(tid, "PTRACE_CONT to exit"))?;
    match sys::wait_thread(tid).map_err(io_err(tid, "wait for the exiting leader"))? {
        sys::WaitEvent::Stopped { event, .. } if event == libc::PTRACE_EVENT_EXIT => {}
        other => return Err(RestoreError::Child { pid: tid, what: format!("leader thread did not reach its exit: {other:?}") }),
    }
    sys::detach_thread(tid, 0).map_err(io_err(tid, "PTRACE_DETACH the exiting leader"))?;
    // Its exit goes on without the tracer (a leader with live threads is never reported
    // to wait): return once it is the zombie it was, its memory and files let go.
    wait_for_state(tid, tid, 'Z', "finish its exit within 2 s")
}

/// Fills this process's premapped slots (crust code, before the children are forked): a
/// slot of its own is mapped and its pages read in; an inherited one keeps every page
/// whose contents are already right (still shared with the parent), gets the others
/// written, and drops the pages this process did not have.
fn fill_premapped(premap: &[Premap], page_files: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    if premap.is_empty() {
        return Ok(());
    }
    let page = sys::page_size();
    let mut files = Vec::new();
    for path in page_files {
        files.push(fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?);
    }
    let mut buf = vec![0u8; 1 << 20];
    for area in premap {
        let len = area.end - area.start;
        let at = |addr: u64| area.slot + (addr - area.start);
        if !area.inherited {
            sys::map_private_anon_over_reservation(area.slot, len as usize, area.noreserve).map_err(|e| format!("premap {:#x}-{:#x} at {:#x}: {e}", area.start, area.end, area.slot))?;
            if area.no_huge {
                sys::advise(area.slot, len as usize, libc::MADV_NOHUGEPAGE).map_err(|e| format!("premap {:#x}: MADV_NOHUGEPAGE: {e}", area.slot))?;
            }
        }
        let mut covered = area.start;
        for &(addr, bytes, file, offset) in &area.runs {
            let (pages, pages_path) = (&files[file], &page_files[file]);
            if area.inherited && addr > covered {
                // Pages the parent had here and this process did not.
                sys::advise(at(covered), (addr - covered) as usize, libc::MADV_DONTNEED).map_err(|e| format!("drop premapped pages at {covered:#x}: {e}"))?;
            }
            covered = addr + bytes;
            #[allow(unsafe_code)]
            // SAFETY: the slot maps [at(start), at(end)) read-write in this process (mapped
            // above or inherited through fork), and the run lies inside the area (checked
            // when planning); nothing else refers to that memory while crust fills it.
            let target = unsafe { sys::memory_at(at(addr), bytes as usize) };
            if !area.inherited {
                pages.read_exact_at(target, offset).map_err(|e| format!("read pages {addr:#x}+{bytes} from {}: {e}", pages_path.display()))?;
                continue;
            }
            let mut done = 0usize;
            while done < target.len() {
                let n = buf.len().min(target.len() - done);
                pages.read_exact_at(&mut buf[..n], offset + done as u64).map_err(|e| format!("read pages {addr:#x}+{bytes} from {}: {e}", pages_path.display()))?;
                for (mine, want) in target[done..done + n].chunks_mut(page as usize).zip(buf[..n].chunks(page as usize)) {
                    if mine != want {
                        mine.copy_from_slice(want);
                    }
                }
                done += n;
            }
        }
        if area.inherited && area.end > covered {
            sys::advise(at(covered), (area.end - covered) as usize, libc::MADV_DONTNEED).map_err(|e| format!("drop premapped pages at {covered:#x}: {e}"))?;
        }
    }
    Ok(())
}

/// A `File` over a raw fd the restore child owns for the rest of its life.
fn fd_file(fd: i32) -> fs::File {
    #[allow(unsafe_code)]
    // SAFETY: `fd` is open in this child and nothing else closes it before exit.
    unsafe {
        fs::File::from_raw_fd(fd)
    }
}

/// Runs the tree until every live process's restorer has finished and every new thread
/// has trapped; zombies are counted as they exit.
fn wait_for_restorers(tree: &TreePlan, images: &Images, error_read: OwnedFd) -> Result<BTreeMap<i32, i32>, RestoreError> {
    // Tasks are reported by host tid; images name them by their tid in their own pid
    // namespace (the same number outside a new namespace).
    let mut host: BTreeMap<i32, i32> = BTreeMap::new();
    let virtual_of = |tid: i32| -> i32 {
        fs::read_to_string(format!("/proc/{tid}/status"))
            .ok()
            .and_then(|s| procfs::parse_key_values(&s).get("NSpid").and_then(|v| v.split_whitespace().last()?.parse().ok()))
            .unwrap_or(tid)
    };
    let root = images.processes[0].pid();
    let mut pending_leaders: BTreeMap<i32, usize> = BTreeMap::new();
    let mut pending_threads: Vec<i32> = Vec::new();
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
    let child_error = |error_read: &mut Option<OwnedFd>, pid: i32, fallback: String| -> RestoreError {
        let mut message = String::new();
        if let Some(fd) = error_read.take() {
            let _ = fs::File::from(fd).read_to_string(&mut message);
        }
        if message.trim().is_empty() {
            RestoreError::Child { pid, what: fallback }
        } else {
            RestoreError::ChildReported { what: message.trim().to_string() }
        }
    };
    while !(pending_leaders.is_empty() && pending_threads.is_empty() && pending_zombies.is_empty() && pending_helpers.is_empty()) {
        let (host_tid, event) = sys::wait_any().map_err(io_err(root, "wait for restorers"))?;
        let tid = match event {
            sys::WaitEvent::Stopped { .. } => {
                let tid = virtual_of(host_tid);
                host.insert(tid, host_tid);
                tid
            }
            _ => host.iter().find(|(_, &h)| h == host_tid).map(|(&v, _)| v).unwrap_or(host_tid),
        };
        match event {
            sys::WaitEvent::Stopped { signal, event: 0 } if signal == libc::SIGTRAP => {
                let regs = HostArch::read_regs(host_tid).map_err(|source| RestoreError::Arch { pid: tid, source })?;
                let owner = images.processes.iter().position(|p| p.pstree.threads.contains(&(tid as u32)));
                let Some(index) = owner else {
                    return Err(RestoreError::Child { pid: tid, what: "unexpected task in the restored tree".into() });
                };
                let plan = tree.plans[index].as_ref().expect("live process");
                match HostArch::restorer_outcome(&regs.gpr, plan.area + plan.ops_offset) {
                    RestorerOutcome::Done => {
                        pending_leaders.remove(&tid);
                    }
                    RestorerOutcome::NewThread => pending_threads.retain(|&t| t != tid),
                    RestorerOutcome::Failed { index: op, result } => {
                        return Err(RestoreError::RestorerStep {
                            pid: tid,
                            index: op,
                            description: plan.descriptions.get(op as usize).cloned().unwrap_or_default(),
                            errno: io::Error::from_raw_os_error(-result as i32).to_string(),
                        })
                    }
                }
            }
            // Fork/clone events, and the first stop of auto-attached tasks: let them run.
            sys::WaitEvent::Stopped { event, .. } if event != 0 => {
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

/// For one process: injects each thread's own state, unmaps the restorer through one
/// injected syscall, then sets every thread's dumped registers and signal mask and lets
/// it go.
fn finish_process(process: &ProcessImages, plan: &Plan, host: &BTreeMap<i32, i32>) -> Result<(), RestoreError> {
    let syscall_ip = plan.area + HostArch::restorer_syscall_offset() as u64;
    let tids: Vec<i32> = process.pstree.threads.iter().map(|&t| host[&(t as i32)]).collect();
    // The thread that makes the process's remaining calls (the leader, unless it exits).
    let acting = process.acting_thread();
    let pid = tids[acting];
    // pidfds first: every process of the tree exists now. pidfd_open puts the fd at the
    // lowest free number; dup3 moves it to its own.
    if !plan.pidfds.is_empty() {
        let now = HostArch::read_regs(pid).map_err(|source| RestoreError::Arch { pid, source })?;
        let mut remote = RemoteThread::new(pid, syscall_ip, now.gpr);
        for &(number, target, flags, cloexec) in &plan.pidfds {
            let mut call = |call: Sys, args: [u64; 6], what: &str| -> Result<i64, RestoreError> {
                let result = remote.syscall(call, args).map_err(|source| RestoreError::Infect { pid, source })?;
                if (-4095..0).contains(&result) {
                    return Err(RestoreError::Child { pid, what: format!("fd {number}: {what} of pid {target}: {}", io::Error::from_raw_os_error(-result as i32)) });
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
    let mut ext_templates = Vec::new();
    for (&tid, ops) in tids.iter().zip(&plan.thread_ops) {
        let now = HostArch::read_regs(tid).map_err(|source| RestoreError::Arch { pid: tid, source })?;
        let mut remote = RemoteThread::new(tid, syscall_ip, now.gpr);
        for (call, args, description) in ops {
            let result = remote.syscall(*call, *args).map_err(|source| RestoreError::Infect { pid: tid, source })?;
            if (-4095..0).contains(&result) {
                return Err(RestoreError::Child { pid: tid, what: format!("{description}: {}", io::Error::from_raw_os_error(-result as i32)) });
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
        .map_err(|what| RestoreError::BadImage { image: format!("core-{}.img", process.pstree.threads[acting]), what: what.to_string() })?;
    let mut remote = RemoteThread::new(pid, syscall_ip, leader_dumped.gpr);
    log::debug!("pid {pid}: unmapping restorer {:#x}+{:#x}", plan.area, plan.area_size);
    let result = remote
        .syscall(Sys::Munmap, [plan.area, plan.area_size, 0, 0, 0, 0])
        .map_err(|source| RestoreError::Infect { pid, source })?;
    if result != 0 {
        return Err(RestoreError::Child { pid, what: format!("unmap restorer: {}", io::Error::from_raw_os_error(-result as i32)) });
    }
    // A stopped process gets its stop signal as its last thread leaves the tracer: the
    // whole group stops before any of it runs.
    let stop_signal = if process.task_state() == TASK_STOPPED { process.stop_signal() } else { 0 };
    for (index, ((&tid, core), ext)) in tids.iter().zip(&process.cores).zip(&ext_templates).enumerate().skip(acting) {
        let detach_signal = if index + 1 == tids.len() { stop_signal } else { 0 };
        let dumped = HostArch::regs_from_core(core, ext)
            .map_err(|what| RestoreError::BadImage { image: format!("core-{tid}.img"), what: what.to_string() })?;
        let gpr = HostArch::resume_regs(&dumped.gpr, false);
        let restarts = HostArch::ip(&gpr) != HostArch::ip(&dumped.gpr);
        HostArch::write_ext(tid, &dumped.ext).map_err(|source| RestoreError::Arch { pid: tid, source })?;
        let mask = core
            .thread_core
            .as_ref()
            .and_then(|t| t.blk_sigset)
            .or(core.tc.as_ref().map(|t| t.blk_sigset))
            .unwrap_or(0);
        crate::infect::release_thread(tid, &gpr, restarts, mask, detach_signal).map_err(|source| RestoreError::Infect { pid: tid, source })?;
    }
    Ok(())
}
