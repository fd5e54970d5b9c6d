//! The dump pipeline: what happens in which order, and nothing else. The stages are
//! modules of their own: [`freeze`] (seize the tree), [`collect`] (/proc), [`queries`]
//! (the parasite: syscalls injected into the stopped threads), [`namespaces`] (the
//! tree's own mount and UTS namespaces, `mounts/`, `uts.rs`), [`memory`], [`files`]
//! (and the System V IPC namespace, `ipc/`), [`write`] (the images); then the tree is
//! killed or released, and with a copy-on-write snapshot its pages are copied.
//!
//! Invariant: until the last image is written the tree is only ever stopped; any error
//! (or an injected fault) releases it exactly as it was, through `Frozen`'s Drop.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crust_images::ImageKind;

use crate::error::io_failure;
use crate::files::{FileDumpError, FileTable};
use crate::ipc::IpcError;
use crate::memory::snapshot::{CopyError, CopyOptions};
use crate::model::Collected;
use crate::ns::{NsInodes, NsKind};
use crate::stages::{Stage, StageFailure, Stages};
use crate::sys;

pub(crate) mod collect;
pub(crate) mod files;
pub(crate) mod freeze;
pub(crate) mod memory;
pub(crate) mod namespaces;
pub(crate) mod queries;
pub(crate) mod write;

pub use collect::CollectError;
pub use freeze::{OutsideNamespace, SeizeError};
pub use memory::MemoryError;
pub use namespaces::NamespaceError;
pub use crate::mounts::DumpMountOptions;
pub use queries::QueryError;
pub use write::WriteError;

/// What `crust dump` was asked to do.
#[derive(Clone, Debug)]
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
    /// External and skipped mounts of a tree in a mount namespace of its own.
    pub mounts: DumpMountOptions,
    /// After a good dump, leave the tree stopped (SIGSTOP) instead of killing it; its
    /// TCP connections stay locked (`--leave-stopped`, CRIU's `-s`).
    pub leave_stopped: bool,
    /// File locks are dumped; without it a tree holding one fails the dump, naming the
    /// lock (`--file-locks`).
    pub file_locks: bool,
    /// The largest unlinked file carried in the images, in bytes (`--ghost-limit`).
    pub ghost_limit: u64,
    /// Connections are not locked (`--network-lock skip`): the caller locks them.
    pub network_lock_skip: bool,
    /// Established TCP connections are dumped closed: no repair, no lock; restore
    /// gives them back closed (`--tcp-close`).
    pub tcp_close: bool,
    /// A listener's connections still waiting for accept() are left out
    /// (`--skip-in-flight`).
    pub skip_in_flight: bool,
    /// How long seizing may wait for a task to stop (`--timeout`); `None`: no bound.
    pub timeout: Option<Duration>,
    /// The caller's stage callback (network-lock, post-dump, network-unlock).
    pub stages: Stages,
    /// The program run as the guardian (`PROGRAM __guardian`, the crust binary), which
    /// takes the parasite's area out of a target whose crust was killed; `None`: no
    /// guardian (a killed crust may leave the area mapped).
    pub guardian: Option<PathBuf>,
    /// The tree's network namespace is left out (`--empty-ns net`): no network images;
    /// its restore makes an empty one (`--empty-ns net` there too).
    pub empty_net: bool,
    /// Network namespaces outside the dump, by inode (`--external net[INODE]:KEY`):
    /// the tree's, when listed, is written as a `netns-N.img` holding only `ext_key`
    /// KEY, and a restore joins the namespace its caller passes as `--inherit-fd
    /// fd[N]:KEY`.
    pub external_net: Vec<(u64, String)>,
    /// `--manage-cgroups` (`ignore`: membership only, no properties).
    pub cgroup_mode: crate::cgroups::CgroupMode,
    /// `--freeze-cgroup`: the tree's cgroup, frozen before the seize.
    pub freeze_cgroup: Option<PathBuf>,
    /// Send the pages to this page server instead of writing them
    /// (`--page-server --address A --port P`, `page_server/`).
    pub page_server: Option<PageServerAddress>,
    /// Leave the private anonymous pages in the frozen tree and serve them to the
    /// destination's lazy-pages daemon (`--lazy-pages --address A --port P`,
    /// `page_server/source.rs`); the tree is killed (or released) once it has them all.
    pub lazy_pages: Option<LazyPagesSource>,
}

/// Where `dump --lazy-pages` serves the pages it left in the tree, and whom it tells
/// once every image is written and it listens.
#[derive(Clone)]
pub struct LazyPagesSource {
    pub address: PageServerAddress,
    /// Called once the images are written and the source listens (`--status-fd`).
    pub ready: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for LazyPagesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LazyPagesSource({}:{})", self.address.address, self.address.port)
    }
}

/// Where a page server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageServerAddress {
    pub address: String,
    pub port: u16,
}

/// How long `--freeze-cgroup` waits for the freeze without `--timeout` (CRIU's default
/// timeout).
pub const DEFAULT_FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// CRIU's default for `--ghost-limit`: 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            pid: 0,
            dir: PathBuf::new(),
            leave_running: false,
            tcp_established: false,
            shell_job: false,
            frozen_copy: false,
            fail_after: None,
            parent: None,
            leave_stopped: false,
            file_locks: false,
            ghost_limit: DEFAULT_GHOST_LIMIT,
            network_lock_skip: false,
            tcp_close: false,
            skip_in_flight: false,
            timeout: None,
            stages: Stages::default(),
            guardian: None,
            mounts: DumpMountOptions::default(),
            page_server: None,
            lazy_pages: None,
            empty_net: false,
            external_net: Vec::new(),
            cgroup_mode: Default::default(),
            freeze_cgroup: None,
        }
    }
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
    /// The longest of the parasite's windows (its area's injected mmap and munmap) that
    /// were not chained, the only moments a killed crust could leave a thread harmed
    /// (zero when every window was chained).
    pub window_longest: Duration,
}

/// Why a dump failed. The target was released unchanged. Each stage's error keeps its
/// own message (`dump pid PID: ...`).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A step of the pipeline itself (the images directory, the parent link).
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
    /// crust will not dump there, or may not dump that process.
    #[error("dump pid {pid}: {what}")]
    Refused { pid: i32, what: String },
    /// crust may not dump that process (not this user's, traced already, no capability).
    #[error("dump: {0}")]
    Access(#[from] crate::AccessError),
    #[error(transparent)]
    Seize(#[from] SeizeError),
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Files(#[from] FileDumpError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("dump pid {pid}: IPC namespace: {source}")]
    IpcNamespace { pid: i32, source: IpcError },
    #[error("dump pid {pid}: network namespace: {source}")]
    NetNamespace { pid: i32, source: crate::net::NetError },
    #[error("dump pid {pid}: cgroups: {source}")]
    Cgroups { pid: i32, source: crate::cgroups::CgroupError },
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The caller's listener failed at a point (post-dump, network-lock).
    #[error("dump pid {pid}: {stage}: {source}")]
    Stage { pid: i32, stage: Stage, source: StageFailure },
    #[error("dump pid {pid}: page checksums: {source}")]
    Checksums { pid: i32, source: crate::memory::ChecksumError },
    #[error("dump pid {pid}: fault injected after step {step}")]
    FaultInjected { pid: i32, step: &'static str },
    /// A stop request (SIGTERM, SIGINT, SIGHUP: `interrupt.rs`) came before the dump
    /// was done; the tree was released exactly as it was.
    #[error("dump interrupted by {}; pid {pid} released unchanged", crate::interrupt::signal_name(*.signal))]
    Interrupted { pid: i32, signal: i32 },
    /// The copy after a copy-on-write release failed; `frozen`: how long the tree had
    /// been frozen before that release.
    #[error("dump pid {pid}: {source}")]
    Snapshot { pid: i32, source: CopyError, frozen: Duration },
}
io_failure!(DumpError);
/// Whether crust may dump `pid` (it exists, is this user's or crust has
/// CAP_SYS_PTRACE, nobody traces it, crust has CAP_SYS_ADMIN or
/// CAP_CHECKPOINT_RESTORE): asked before anything is created, so that a refused dump
/// leaves nothing behind. [`dump`] asks it first too.
pub fn check_access(pid: i32) -> Result<(), DumpError> {
    Ok(crate::access::dump(pid)?)
}

/// Dumps the process tree rooted at `options.pid` into `options.dir`.
pub fn dump(options: &DumpOptions) -> Result<DumpReport, DumpError> {
    let result = dump_again_if_broken(options);
    match (result, crate::interrupt::stop_requested()) {
        // Whatever failed on the way out (a wait cut short), the stop is the cause.
        (Err(error), Some(signal)) => {
            log::debug!("dump pid {}: stopped by {}: {error}", options.pid, crate::interrupt::signal_name(signal));
            Err(DumpError::Interrupted { pid: options.pid, signal })
        }
        (result, _) => result,
    }
}

fn dump_again_if_broken(options: &DumpOptions) -> Result<DumpReport, DumpError> {
    match dump_once(options) {
        Err(DumpError::Snapshot { pid, source: source @ CopyError::Broken { .. }, frozen }) => {
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

/// Images a dump writes once for the whole tree (inventory, pstree, files, checksums,
/// stats, namespaces...), beside each process's core, mm, pagemap, pages, fs, ids and
/// fdinfo.
const IMAGES_OF_A_TREE: usize = 8;

fn dump_once(options: &DumpOptions) -> Result<DumpReport, DumpError> {
    let root = options.pid;
    let started = Instant::now();
    let fault = |step: DumpStep| -> Result<(), DumpError> {
        crate::interrupt::hold(step.name());
        if let Some(signal) = crate::interrupt::stop_requested() {
            return Err(DumpError::Interrupted { pid: root, signal });
        }
        if options.fail_after == Some(step) {
            if step == DumpStep::PagesKilled {
                // What the kernel does with the target when crust dies right here.
                let _ = sys::send_signal(std::process::id() as i32, libc::SIGKILL);
            }
            return Err(DumpError::FaultInjected { pid: root, step: step.name() });
        }
        Ok(())
    };
    check_access(root)?;
    crate::private::create_dir(&options.dir).map_err(io_err(root, format!("create {}", options.dir.display())))?;
    crate::private::check_dir(&options.dir).map_err(|error| DumpError::Refused { pid: root, what: error.to_string() })?;
    match crate::private::remove_earlier_images(&options.dir) {
        Ok(0) => {}
        Ok(removed) => log::info!("{}: removed {removed} images of an earlier dump", options.dir.display()),
        Err(error) => return Err(io_err(root, format!("remove earlier images from {}", options.dir.display()))(error)),
    }
    // Inodes for the images, made on a thread of their own from now on (7 files a
    // process and `IMAGES_OF_A_TREE`; raised once the tree is seized).
    let spares = crate::private::Spares::start(&options.dir, 7 + IMAGES_OF_A_TREE);
    let parent_dir = options.parent.as_ref().map(|p| link_parent(root, &options.dir, p)).transpose()?;
    // A page server that cannot be reached fails the dump before anything is frozen.
    let mut page_server = match &options.page_server {
        Some(target) => Some(
            crate::memory::to_server::Session::connect(&target.address, target.port, &options.dir, parent_dir.as_deref(), options.leave_running)
                .map_err(|source| DumpError::Memory(source.into()))?,
        ),
        None => None,
    };
    // The lazy pages' listener too: a port in use fails the dump before the freeze.
    let lazy_listener = match &options.lazy_pages {
        Some(lazy) => {
            let name = format!("{}:{}", lazy.address.address, lazy.address.port);
            Some(std::net::TcpListener::bind((lazy.address.address.as_str(), lazy.address.port)).map_err(io_err(root, format!("--lazy-pages: listen on {name}")))?)
        }
        None => None,
    };
    if freeze::read_stat(root)?.state == 'Z' && !freeze::list_threads(root)?.iter().any(|&t| t != root) {
        return Err(DumpError::Unsupported { pid: root, what: "a zombie as the root of the tree".into() });
    }

    // The guardian (for a crust killed while a parasite lives) is started before the
    // freeze: its fork and exec are not frozen time.
    let guardian = options.guardian.as_deref().and_then(|program| match crate::parasite::guardian::Guardian::start(program) {
        Ok(guardian) => Some(guardian),
        Err(error) => {
            log::warn!("no guardian ({}: {error}): a crust killed while a parasite lives leaves its area mapped", program.display());
            None
        }
    });
    let watch = guardian.as_ref().map_or_else(crate::parasite::guardian::Watch::none, |g| g.watch());
    let seize_started = Instant::now();
    // Declared before `frozen`, dropped after it: the tree is released, then its cgroup
    // goes back to the state it had (thawed, or frozen again).
    let freezer = match &options.freeze_cgroup {
        Some(dir) => Some(
            crate::cgroups::freezer::Freezer::freeze(dir, options.timeout.unwrap_or(DEFAULT_FREEZE_TIMEOUT))
                .map_err(|source| DumpError::Cgroups { pid: root, source })?,
        ),
        None => None,
    };
    let mut frozen = freeze::Frozen::seize_tree(root, options.timeout, freezer.as_ref())?;
    if let Some(freezer) = &freezer {
        let seized: std::collections::BTreeSet<i32> = frozen.processes.iter().flat_map(|p| p.threads.iter().map(|t| t.tid)).collect();
        let strangers: Vec<String> = freezer
            .tasks()
            .map_err(|source| DumpError::Cgroups { pid: root, source })?
            .into_iter()
            .filter(|tid| !seized.contains(tid))
            .map(|tid| tid.to_string())
            .collect();
        if !strangers.is_empty() {
            return Err(DumpError::Refused {
                pid: root,
                what: format!("--freeze-cgroup {} holds tasks outside the tree: {}", freezer.path().display(), strangers.join(", ")),
            });
        }
    }
    let frozen_at = Instant::now();
    if let Some(spares) = &spares {
        spares.want(7 * frozen.processes.len() + IMAGES_OF_A_TREE);
    }
    log::info!(
        "seized {} processes, {} threads",
        frozen.processes.len(),
        frozen.processes.iter().map(|p| p.threads.len()).sum::<usize>()
    );
    fault(DumpStep::Seize)?;
    // /proc of the stopped processes (smaps above all: 10 ms a GiB of resident memory,
    // and their namespace links) is read on other threads while this one locks the
    // network, then hands each process to the parasite stage as soon as its /proc is
    // read.
    let live: Vec<i32> = frozen.processes.iter().filter(|p| !p.is_zombie()).map(|p| p.proc_pid()).collect();
    let mut collecting = collect::Collecting::start(live.clone()).map_err(io_err(root, "start the collect threads"))?;
    // Dropped before `frozen`: a failed dump lets the network flow again before the
    // tree runs, as CRIU's network-unlock comes before the release.
    let mut network = NetworkStages::lock(&options.stages, root)?;
    let own_inodes = crate::ns::read_inodes("self");
    fault(DumpStep::Collect)?;

    // Each live process's parasite, from here into the memory stage, which cures each
    // as soon as its process needs it no more; on every error path they are dropped
    // (cured: every thread home, the area unmapped) before `frozen`.
    let mut parasites = Vec::new();
    let mut queries = Vec::new();
    let mut collected = Vec::with_capacity(live.len());
    for (index, process) in frozen.processes.iter().filter(|p| !p.is_zombie()).enumerate() {
        if let Some(signal) = crate::interrupt::stop_requested() {
            return Err(DumpError::Interrupted { pid: root, signal });
        }
        collected.push(collecting.take(index)?);
        // Namespaces crust does not dump are refused before anything is injected.
        refuse_foreign_namespaces(&own_inodes, &live[..=index], &collected)?;
        let (process_queries, parasite) = queries::query_process(process, &collected[index], &watch)?;
        queries.push(process_queries);
        parasites.push(parasite);
    }
    let (took, waited) = collecting.timing();
    log::debug!("/proc of {} processes read in {took:?} on the collect threads; the parasite stage waited {waited:?} for it", collected.len());
    // The namespaces, from the links the collect read: 8 a process, which took this
    // thread 4-8 ms for a tree of 100 before the parasite stage when it read them.
    let ids = crate::ns::number(&own_inodes, &collected.iter().map(|c| c.ns).collect::<Vec<_>>());
    let namespaces = namespaces::collect(&frozen, &ids, &options.mounts)?;
    let run_id = new_run_id().map_err(io_err(root, "read /proc/sys/kernel/random/uuid"))?;
    // A network namespace of the tree's own (all its processes in it) is dumped under
    // the id `ns::number` gave it.
    let own_net_ns = own_namespace(&own_inodes, &live, &collected, NsKind::Net)?;
    let own_ipc_ns = own_namespace(&own_inodes, &live, &collected, NsKind::Ipc)?;
    let net_ns_id = if own_net_ns { ids.processes.first().and_then(|p| p.net_ns_id) } else { None };
    // crust reads the creds in its own view; a tree in a user namespace of its own keeps
    // them in that namespace's (root in it is uid 0), as CRIU records them.
    if let Some(maps) = namespaces.id_maps() {
        for thread in queries.iter_mut().flat_map(|q| q.threads.iter_mut()) {
            maps.creds_inside(&mut thread.creds);
        }
    }
    fault(DumpStep::Parasite)?;

    let mut file_table = FileTable {
        tcp_established: options.tcp_established,
        file_locks: options.file_locks,
        ghost_limit: Some(options.ghost_limit),
        network_lock_skip: options.network_lock_skip,
        tcp_close: options.tcp_close,
        skip_in_flight: options.skip_in_flight,
        mount_view: namespaces.mount_view(),
        id_maps: namespaces.id_maps().cloned(),
        ..Default::default()
    };
    file_table.tcp.run_id = run_id.clone();
    let cow = options.leave_running && !options.frozen_copy && page_server.is_none() && lazy_listener.is_none();
    let memory_started = Instant::now();
    let mut left_at_source = Vec::new();
    let lazy = lazy_listener.is_some().then_some(&mut left_at_source);
    // A dump that kills its tree keeps the parasites alive to the kill instead of curing
    // each (0.3-0.5 ms of round trips a process); on every other end they are cured
    // (dropped) before the tree is let go.
    let killing = !options.leave_running && !options.leave_stopped && page_server.is_none() && lazy_listener.is_none();
    let memory::DumpedMemory { vmas: mut memory, mut pages, vma_count, shared_anon_pages_ids, snapshot, mut window_longest, mut pieces, parasites } =
        memory::dump_tree_memory(&frozen, &collected, parasites, &options.dir, parent_dir.as_deref(), cow, &mut file_table, page_server.as_mut(), lazy, killing)?;
    let memdump = memory_started.elapsed();
    for vmas in &mut memory {
        crate::memory::special_areas_as_criu(vmas);
    }
    fault(DumpStep::Memory)?;

    let process_files = files::dump_tree_files(&frozen, &collected, options.shell_job, &mut file_table, &parasites)?;
    fault(DumpStep::Files)?;

    if own_ipc_ns {
        let ns_id = ids.processes[0].ipc_ns_id.unwrap_or_default();
        let dumped = crate::ipc::dump_namespace(frozen.processes[0].proc_pid(), &options.dir, ns_id, namespaces.id_maps())
            .map_err(|source| DumpError::IpcNamespace { pid: root, source })?;
        log::info!(
            "IPC namespace: {} shared memory segments, {} semaphore sets, {} message queues",
            dumped.segments,
            dumped.semaphore_sets,
            dumped.queues
        );
    }
    namespaces.write(&options.dir)?;
    let external_net = match net_ns_id {
        Some(_) => crate::net::dump::external_key(frozen.processes[0].proc_pid(), &options.external_net)
            .map_err(|source| DumpError::NetNamespace { pid: root, source })?,
        None => None,
    };
    // An external namespace wins over `--empty-ns net` (runc sends both for a
    // configured namespace path): the restore joins it, as CRIU's does.
    if let (Some(ns_id), Some(key)) = (net_ns_id, external_net) {
        crate::net::dump::write_external(&options.dir, ns_id, &key).map_err(|source| DumpError::NetNamespace { pid: root, source })?;
        log::info!("network namespace {ns_id}: external, key {key:?}");
    } else if let (Some(ns_id), true) = (net_ns_id, options.empty_net) {
        log::info!("network namespace {ns_id}: left out (--empty-ns net), a restore makes it again empty");
    } else if let Some(ns_id) = net_ns_id {
        let dumped = crate::net::dump::dump_namespace(frozen.processes[0].proc_pid(), ns_id, &options.dir)
            .map_err(|source| DumpError::NetNamespace { pid: root, source })?;
        log::info!(
            "network namespace {ns_id}: {} links, {} addresses, {} routes, {} rules, nftables ruleset of {} bytes",
            dumped.links,
            dumped.addresses,
            dumped.routes,
            dumped.rules,
            dumped.nftables_bytes
        );
    }
    // Every thread's cgroups (leaders that exited are not asked: they have none).
    let tasks: Vec<(i32, i32)> = frozen.processes.iter().filter(|p| !p.is_zombie()).flat_map(|p| p.threads.iter().map(move |t| (p.pid, t.tid))).collect();
    let cgroup_options = crate::cgroups::dump::Options {
        properties: options.cgroup_mode != crate::cgroups::CgroupMode::Ignore,
        freezer: freezer.as_ref().map(|f| f.origin()),
    };
    let cgroups = crate::cgroups::dump::dump(&tasks, namespaces.cgroup_ns.then_some(frozen.processes[0].proc_pid()), &cgroup_options)
        .map_err(|source| DumpError::Cgroups { pid: root, source })?;
    if let Some(image) = &cgroups.image {
        log::info!("cgroups: {} sets, {} hierarchies", image.sets.len(), image.controllers.len());
    }
    let dumped = write::Dumped {
        cgroups: &cgroups,
        frozen: &frozen,
        collected: &collected,
        queries: &queries,
        files: &file_table,
        process_files: &process_files,
        memory,
        shared_anon_pages_ids,
        ids: &ids,
        run_id: &run_id,
    };
    let dumped_pages_scanned: u64 = dumped.memory.iter().flatten().map(|v| (v.end - v.start) / sys::page_size()).sum();
    write::write_images(root, &options.dir, dumped)?;
    if let Some(session) = page_server.as_mut() {
        // Shared memory and memfd pages were written here; they go too, then the
        // server confirms it has written everything. No checksums: the pages are not here.
        session.ship_local_pagemaps().and_then(|()| session.flush()).map_err(|source| DumpError::Memory(source.into()))?;
    }
    // With every page written (unless the snapshot copies them later): the checksums
    // and the list of images, before the tree is let go or killed.
    if snapshot.is_empty() && page_server.is_none() {
        crate::memory::checksums::write(&options.dir, &pieces, sys::page_size()).map_err(|source| DumpError::Checksums { pid: root, source })?;
    }
    fault(DumpStep::Images)?;
    // A failure here releases the tree alive and fails the dump, as CRIU.
    options.stages.reach(Stage::PostDump, Some(root)).map_err(|source| DumpError::Stage { pid: root, stage: Stage::PostDump, source })?;
    if let (Some(listener), Some(lazy)) = (&lazy_listener, &options.lazy_pages) {
        // The tree stays frozen while the destination fetches what was left in it.
        let bytes: u64 = left_at_source.iter().map(|l| l.bytes()).sum();
        log::info!(
            "lazy pages: images written in {:?} frozen; serving {} pages of {} processes on {}:{}",
            frozen_at.elapsed(),
            bytes / sys::page_size(),
            left_at_source.len(),
            lazy.address.address,
            lazy.address.port
        );
        if let Some(ready) = &lazy.ready {
            ready();
        }
        let stopped = || crate::interrupt::stop_requested().is_some();
        let served = crate::page_server::source::serve_left_pages(listener, &left_at_source, &stopped).map_err(|source| DumpError::Memory(source.into()))?;
        log::info!("lazy pages: {} pages sent in {} requests over {:?}", served.pages, served.requests, served.elapsed);
    }

    let processes = frozen.processes.len();
    let threads = frozen.processes.iter().map(|p| p.threads.len()).sum();
    if options.leave_running {
        if snapshot.is_empty() {
            fault(DumpStep::Pages)?;
            fault(DumpStep::PagesKilled)?;
        }
        file_table.release_tcp();
        network.unlock();
        frozen.release();
    } else {
        fault(DumpStep::Pages)?;
        fault(DumpStep::PagesKilled)?;
        network.keep_locked();
        file_table.silence_tcp(root)?;
        // stats-dump is the dump's last image and is written before the tree is
        // killed: a crust killed after the kill (which waits for every thread's exit,
        // tens of ms for a big tree) leaves whole images, so a dead target always has
        // them (zdtm kill_steps holds at "killed", kill_random checks it).
        let frozen_for = frozen_at.elapsed();
        let stats = write::DumpStats { freezing: frozen_at - seize_started, frozen: frozen_for, memdump, pages_scanned: dumped_pages_scanned, pages_written: pages };
        write::write_stats(root, &options.dir, &stats)?;
        if options.leave_stopped {
            frozen.release_stopped();
        } else {
            frozen.kill();
            for parasite in parasites {
                let stats = parasite.forget_killed();
                if !stats.chained {
                    window_longest = window_longest.max(stats.map_window);
                }
            }
        }
        // Only now may the locks outlive crust: a crust killed before this point takes
        // them with it, and the tree runs on (released by the kernel) or is gone.
        file_table.keep_tcp_locked(root)?;
        crate::interrupt::hold("killed");
        return Ok(DumpReport { frozen: frozen_for, total: started.elapsed(), pages, vmas: vma_count, processes, threads, window_longest });
    }
    let frozen_for = frozen_at.elapsed();
    if !snapshot.is_empty() {
        // The tree runs, its pages write-protected by crust's userfaultfd.
        crate::interrupt::hold(DumpStep::Pages.name());
        let mut copy_options = CopyOptions::default();
        if matches!(options.fail_after, Some(DumpStep::Pages | DumpStep::PagesKilled)) {
            copy_options.fail_after_pages = Some(0);
            copy_options.kill_instead = options.fail_after == Some(DumpStep::PagesKilled);
        }
        let (_, copied, found) = snapshot.copy(copy_options).map_err(|source| match source {
            CopyError::FaultInjected => DumpError::FaultInjected { pid: root, step: DumpStep::Pages.name() },
            source => DumpError::Snapshot { pid: root, source, frozen: frozen_for },
        })?;
        // Pages of areas whose pagemap was read after the release.
        pages += found;
        for (pages_file, copied) in copied {
            pieces.entry(pages_file).or_default().extend(copied);
        }
        crate::memory::checksums::write(&options.dir, &pieces, sys::page_size()).map_err(|source| DumpError::Checksums { pid: root, source })?;
    }
    let pages_scanned = dumped_pages_scanned;
    let stats = write::DumpStats { freezing: frozen_at - seize_started, frozen: frozen_for, memdump, pages_scanned, pages_written: pages };
    write::write_stats(root, &options.dir, &stats)?;
    Ok(DumpReport { frozen: frozen_for, total: started.elapsed(), pages, vmas: vma_count, processes, threads, window_longest })
}

/// Refuses the newest process of `collected` (the live processes so far, the root first;
/// `live`: their pids) before its parasite starts where a namespace of it is one crust
/// does not dump: see [`namespaces::refuse_early`], and an IPC or network namespace other
/// than the root's (the whole list is read only to name a refusal).
fn refuse_foreign_namespaces(own: &NsInodes, live: &[i32], collected: &[Collected]) -> Result<(), DumpError> {
    namespaces::refuse_early(own, live, collected)?;
    let (Some(root), Some(newest)) = (collected.first(), collected.last()) else { return Ok(()) };
    for kind in [NsKind::Ipc, NsKind::Net] {
        if crate::ns::inode_of(&newest.ns, kind) != crate::ns::inode_of(&root.ns, kind) {
            own_namespace(own, live, collected, kind)?;
        }
    }
    Ok(())
}

/// Whether the live processes `collected` (pids in `live`, the root first) are in an
/// IPC or network namespace (`kind`) other than crust's (`own`); a tree in several is
/// refused.
fn own_namespace(own: &NsInodes, live: &[i32], collected: &[Collected], kind: NsKind) -> Result<bool, DumpError> {
    let processes: Vec<(i32, Option<u64>)> = live.iter().zip(collected).map(|(&pid, c)| (pid, crate::ns::inode_of(&c.ns, kind))).collect();
    let own = crate::ns::inode_of(own, kind);
    match kind {
        NsKind::Ipc => crate::ipc::tree_has_own_namespace(&processes, own).map_err(|e| DumpError::Unsupported { pid: e.pid, what: e.to_string() }),
        _ => crate::net::dump::tree_has_own_namespace(&processes, own).map_err(|(pid, e)| DumpError::Unsupported { pid, what: e.to_string() }),
    }
}

/// A fresh id for this dump (a random UUID, as CRIU's `dump_criu_run_id`).
fn new_run_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/uuid")?.trim().to_string())
}

/// The network points of a dump: network-lock once the tree is seized (for a tree in a
/// network namespace of its own, as CRIU), and network-unlock when the tree goes on
/// running: `unlock` after `--leave-running`, or on drop after a failure. A tree that
/// is killed or left stopped stays locked.
struct NetworkStages<'a> {
    stages: &'a Stages,
    root: i32,
    locked: bool,
}

impl<'a> NetworkStages<'a> {
    fn lock(stages: &'a Stages, root: i32) -> Result<Self, DumpError> {
        // A failed network-lock is followed by network-unlock (on drop), as in CRIU.
        let network = NetworkStages { stages, root, locked: crate::stages::own_net_namespace(root) };
        if network.locked {
            stages.reach(Stage::NetworkLock, Some(root)).map_err(|source| DumpError::Stage { pid: root, stage: Stage::NetworkLock, source })?;
        }
        Ok(network)
    }

    fn unlock(&mut self) {
        if std::mem::take(&mut self.locked) {
            let _ = self.stages.reach(Stage::NetworkUnlock, Some(self.root));
        }
    }

    fn keep_locked(&mut self) {
        self.locked = false;
    }
}

impl Drop for NetworkStages<'_> {
    fn drop(&mut self) {
        self.unlock();
    }
}

/// Links `dir/parent` to the parent dump `parent` (kept as given, like CRIU, so a
/// relative path stays relative to `dir`) and returns the link.
fn link_parent(pid: i32, dir: &Path, parent: &Path) -> Result<PathBuf, DumpError> {
    let link = dir.join(crate::memory::page_sources::PARENT_LINK);
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
