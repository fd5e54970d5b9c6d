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
use std::time::{Duration, Instant};

use crust_images::ImageKind;

use crate::error::io_failure;
use crate::files::{FileDumpError, FileTable};
use crate::ipc::IpcError;
use crate::memory::snapshot::{CopyError, CopyOptions};
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
    /// External and skipped mounts of a tree in a mount namespace of its own.
    pub mounts: DumpMountOptions,
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

/// Why a dump failed. The target was released unchanged. Each stage's error keeps its
/// own message (`dump pid PID: ...`).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A step of the pipeline itself (the images directory, the parent link).
    #[error("dump pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("dump pid {pid}: {what} is not supported yet")]
    Unsupported { pid: i32, what: String },
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
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("dump pid {pid}: fault injected after step {step}")]
    FaultInjected { pid: i32, step: &'static str },
    /// The copy after a copy-on-write release failed; `frozen`: how long the tree had
    /// been frozen before that release.
    #[error("dump pid {pid}: {source}")]
    Snapshot { pid: i32, source: CopyError, frozen: Duration },
}
io_failure!(DumpError);
/// Dumps the process tree rooted at `options.pid` into `options.dir`.
pub fn dump(options: &DumpOptions) -> Result<DumpReport, DumpError> {
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
    if freeze::read_stat(root)?.state == 'Z' && !freeze::list_threads(root)?.iter().any(|&t| t != root) {
        return Err(DumpError::Unsupported { pid: root, what: "a zombie as the root of the tree".into() });
    }

    let mut frozen = freeze::Frozen::seize_tree(root)?;
    let frozen_at = Instant::now();
    log::info!(
        "seized {} processes, {} threads",
        frozen.processes.len(),
        frozen.processes.iter().map(|p| p.threads.len()).sum::<usize>()
    );
    fault(DumpStep::Seize)?;
    let live: Vec<i32> = frozen.processes.iter().filter(|p| !p.is_zombie()).map(|p| p.proc_pid()).collect();
    let own_ipc_ns = crate::ipc::tree_has_own_namespace(&live).map_err(|e| DumpError::Unsupported { pid: e.pid, what: e.to_string() })?;
    let namespaces = namespaces::collect(&frozen, &options.mounts)?;

    let mut collected = Vec::new();
    for process in frozen.processes.iter().filter(|p| !p.is_zombie()) {
        collected.push(collect::collect(process.proc_pid())?);
    }
    fault(DumpStep::Collect)?;

    frozen.touched = true;
    let mut queries = Vec::new();
    for (process, collected) in frozen.processes.iter().filter(|p| !p.is_zombie()).zip(&collected) {
        queries.push(queries::query_process(process, collected)?);
    }
    fault(DumpStep::Parasite)?;

    let mut file_table = FileTable { tcp_established: options.tcp_established, mount_view: namespaces.mount_view(), ..Default::default() };
    let cow = options.leave_running && !options.frozen_copy;
    let memory::DumpedMemory { vmas: memory, pages, vma_count, snapshot } =
        memory::dump_tree_memory(&frozen, &collected, &options.dir, parent_dir.as_deref(), cow, &mut file_table)?;
    fault(DumpStep::Memory)?;

    let process_files = files::dump_tree_files(&frozen, &collected, options.shell_job, &mut file_table)?;
    fault(DumpStep::Files)?;

    if own_ipc_ns {
        let dumped = crate::ipc::dump_namespace(frozen.processes[0].proc_pid(), &options.dir)
            .map_err(|source| DumpError::IpcNamespace { pid: root, source })?;
        log::info!(
            "IPC namespace: {} shared memory segments, {} semaphore sets, {} message queues",
            dumped.segments,
            dumped.semaphore_sets,
            dumped.queues
        );
    }
    namespaces.write(&options.dir)?;
    let dumped = write::Dumped {
        frozen: &frozen,
        collected: &collected,
        queries: &queries,
        files: &file_table,
        process_files: &process_files,
        memory,
        own_ipc_ns,
        mnt_uts_ns_ids: namespaces.ids(),
    };
    write::write_images(root, &options.dir, dumped)?;
    fault(DumpStep::Images)?;

    let processes = frozen.processes.len();
    let threads = frozen.processes.iter().map(|p| p.threads.len()).sum();
    if options.leave_running {
        if snapshot.is_empty() {
            fault(DumpStep::Pages)?;
            fault(DumpStep::PagesKilled)?;
        }
        file_table.release_tcp();
        frozen.release();
    } else {
        fault(DumpStep::Pages)?;
        fault(DumpStep::PagesKilled)?;
        file_table.keep_tcp_locked();
        frozen.kill();
    }
    let frozen_for = frozen_at.elapsed();
    if !snapshot.is_empty() {
        let mut copy_options = CopyOptions::default();
        if matches!(options.fail_after, Some(DumpStep::Pages | DumpStep::PagesKilled)) {
            copy_options.fail_after_pages = Some(pages / 2);
            copy_options.kill_instead = options.fail_after == Some(DumpStep::PagesKilled);
        }
        snapshot.copy(copy_options).map_err(|source| match source {
            CopyError::FaultInjected => DumpError::FaultInjected { pid: root, step: DumpStep::Pages.name() },
            source => DumpError::Snapshot { pid: root, source, frozen: frozen_for },
        })?;
    }
    Ok(DumpReport { frozen: frozen_for, total: started.elapsed(), pages, vmas: vma_count, processes, threads })
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
