//! The restore pipeline: what happens in which order, and nothing else. Read and
//! check the images ([`images`]), read the host layout once ([`layout`]) and plan
//! (pure: [`tree`], [`memory`], [`program`]); open every file description in crust
//! (the files broker), fork the root with its dumped pid ([`child`]: each process then
//! rebuilds its fds, forks its children and runs the restorer's op program, which
//! replaces its whole address space with the dumped one and creates its threads);
//! finally put every thread's registers back through ptrace and let the tree go
//! ([`finish`]).
//!
//! Invariant: until the restored tree is released, every task in it is traced with
//! PTRACE_O_EXITKILL, so if anything fails (or crust dies) it is killed: no
//! half-restored process outlives a failed restore.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crust_arch::{Host, HostArch};

use crate::error::io_failure;
use crate::model::TASK_STOPPED;
use crate::stages::{Stage, StageFailure, Stages};
use crate::sys;

pub(crate) mod child;
pub(crate) mod finish;
pub(crate) mod image_set;
pub(crate) mod images;
pub mod layout;
pub(crate) mod memory;
pub(crate) mod namespaces;
pub(crate) mod plan;
pub(crate) mod program;
pub(crate) mod tree;
pub(crate) mod validate;

#[cfg(test)]
mod fixtures;

pub use finish::FinishError;
pub use images::ImagesError;
pub use layout::HostLayout;
pub use plan::PlanError;
pub use crate::mounts::{MountError, RestoreMountOptions};
pub use crate::uts::UtsError;
pub use validate::ValidateError;

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
    /// `--root` and the external mounts of a tree in a mount namespace of its own.
    pub mounts: RestoreMountOptions,
    /// Host ends of the tree's veths whose peer was outside the dump: (inner name,
    /// `NAME[@BRIDGE]`), from `--veth-pair IN=OUT[@BR]` / `--external veth[IN]:OUT[@BR]`.
    pub veths: Vec<(String, String)>,
    /// Leave every restored process stopped (SIGSTOP) instead of running
    /// (`--leave-stopped`).
    pub leave_stopped: bool,
    /// Create the root as crust's sibling (CLONE_PARENT): it is the child of crust's
    /// parent, which waits for it (`--restore-sibling`, runc's way).
    pub restore_sibling: bool,
    /// Files the caller passes in instead of crust opening them (`--inherit-fd
    /// fd[N]:KEY`): crust's fd N stands for the file whose key is KEY (`pipe:[INO]`,
    /// `socket:[INO]`, or a path as the images name it).
    pub inherit_fds: Vec<(i32, String)>,
    /// The caller's stage callback (pre-restore ... post-resume, orphan-pts-master).
    pub stages: Stages,
    /// Do not verify the pages against `crust-checksums.img` (nor the images against
    /// its list) before restoring (`--skip-checksums`).
    pub skip_checksums: bool,
    /// Lazy restore (`--lazy-pages`): the lazy-pages daemon's socket; private anonymous
    /// memory is filled by the daemon as the tree touches it (`lazy/`).
    pub lazy_pages: Option<PathBuf>,
    /// The tree's own network namespace is made empty, whatever its images hold
    /// (`--empty-ns net`; a dump with it wrote none).
    pub empty_net: bool,
    /// `--manage-cgroups`: which cgroups are made and which get properties (`ignore`:
    /// the tree stays in crust's cgroups).
    pub cgroup_mode: crate::cgroups::CgroupMode,
    /// `--cgroup-root [CONTROLLER:]PATH` (RPC `cg_root`): (controller, new root of the
    /// tree's cgroups); no controller is every other hierarchy.
    pub cgroup_roots: Vec<(Option<String>, String)>,
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

/// Why a restore failed. No restored process is left behind. Each stage's error keeps
/// its own message (`restore pid PID: ...`, `restore: IMAGE: ...`).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore: {image}: {what}")]
    BadImage { image: String, what: String },
    #[error("restore pid {pid}: {what}: {source}")]
    Io { pid: i32, what: String, source: io::Error },
    #[error("restore pid {pid}: pid is busy (a process with that pid exists); kill it or restore in a new pid namespace")]
    PidBusy { pid: i32 },
    #[error("restore pid {pid}: {what}")]
    Child { pid: i32, what: String },
    #[error(transparent)]
    Images(#[from] ImagesError),
    #[error("restore: {0}")]
    Access(#[from] crate::AccessError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error("restore: {0}")]
    Checksums(#[from] crate::memory::ChecksumError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Finish(#[from] FinishError),
    #[error(transparent)]
    Lazy(#[from] crate::lazy::LazyError),
    #[error(transparent)]
    Mounts(#[from] MountError),
    #[error("restore: UTS namespace: {0}")]
    Uts(#[from] UtsError),
    #[error("restore: cgroups: {0}")]
    Cgroups(#[from] crate::cgroups::CgroupError),
    /// A stop request (SIGTERM, SIGINT, SIGHUP: `interrupt.rs`) came before the tree
    /// ran; every process the restore had created was killed.
    #[error("restore interrupted by {}; the processes it had created are killed", crate::interrupt::signal_name(*.signal))]
    Interrupted { signal: i32 },
    /// The caller's listener failed at a point; the tree (if any) was killed.
    #[error("restore: {stage}: {source}")]
    Stage { stage: Stage, source: StageFailure },
}
io_failure!(RestoreError);



/// Whether crust may restore (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, for clone3's
/// set_tid); [`restore`] asks it first.
pub fn check_access() -> Result<(), RestoreError> {
    Ok(crate::access::restore()?)
}

/// Restores the process tree dumped in `options.dir`.
pub fn restore(options: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let restored = match (restore_tree(options), crate::interrupt::stop_requested()) {
        // Whatever failed on the way out (a wait cut short), the stop is the cause.
        (Err(error), Some(signal)) => {
            log::debug!("restore stopped by {}: {error}", crate::interrupt::signal_name(signal));
            Err(RestoreError::Interrupted { signal })
        }
        (result, _) => result,
    };
    if restored.is_err() {
        // The dumped connections stay blocked for another restore: say how to let
        // them go instead.
        for (lock, command) in crate::files::kept_locks(&options.dir) {
            log::warn!("restore failed: {lock} stays, so the dumped connections stay blocked for another restore; to let them go: {command}");
        }
    }
    restored
}

/// Fails once a stop was requested.
fn stop_point() -> Result<(), RestoreError> {
    crate::interrupt::stop_requested().map_or(Ok(()), |signal| Err(RestoreError::Interrupted { signal }))
}

fn restore_tree(options: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let stage = |stage: Stage, root: Option<i32>| options.stages.reach(stage, root).map_err(|source| RestoreError::Stage { stage, source });
    check_access()?;
    stage(Stage::PreRestore, None)?;
    let images = images::load_with(&options.dir, sys::page_size(), !options.skip_checksums, options.empty_net)?;
    image_set::check(&options.dir)?;
    // Nothing is created before every image is known good (the pages of big areas are
    // checked as crust puts them in, before the tree is called restored: `verify_pages`).
    validate::validate(&images, &validate::Limits::read())?;
    let root = images.processes[0].pid();
    // A tree dumped in its own pid namespace comes back in a new one, where its pids are
    // always free; otherwise every pid and tid must be free here.
    let new_pid_ns = images.namespaces.new_pid_ns;
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
    // The tree's own mount and UTS namespaces: planned here, made by the root.
    let mount_plan = crate::mounts::plan_for_restore(images.dir.path(), images.namespaces.mnt_ns_id, &options.mounts)?;
    let uts = crate::uts::read_for_restore(images.dir.path(), images.namespaces.uts_ns_id)?;
    // The tree's own user namespace: cloned with the root, which every other new
    // namespace of the tree is then owned by; crust writes its maps from outside.
    let userns = match images.namespaces.user_ns_id {
        Some(id) => Some(
            crate::userns::read_for_restore(images.dir.path(), id)
                .map_err(|e| RestoreError::BadImage { image: crust_images::ImageKind::Userns.file_name(u64::from(id)), what: e.to_string() })?,
        ),
        None => None,
    };
    if let (Some(id), false) = (images.namespaces.user_ns_id, new_pid_ns) {
        // Its tasks could not choose their pids in crust's pid namespace (clone3's set_tid
        // needs CAP_CHECKPOINT_RESTORE where the pid is chosen).
        return Err(RestoreError::BadImage {
            image: crust_images::ImageKind::Userns.file_name(u64::from(id)),
            what: "a user namespace of the tree's own without a pid namespace of its own: not supported yet".into(),
        });
    }
    let cgroup_options = crate::cgroups::restore::Options { mode: options.cgroup_mode, roots: options.cgroup_roots.clone() };
    let cgroup_plan = crate::cgroups::restore::read_plan(images.dir.path(), &cgroup_options)?;
    // Each task's cgroup set (a task of the dumping tool's set stays in crust's).
    let root_cg_set = images.inventory.root_cg_set.unwrap_or(crate::cgroups::OWN_SET);
    let task_sets: Vec<(i32, u32, bool)> = images
        .processes
        .iter()
        .filter(|p| !p.is_zombie())
        .flat_map(|p| {
            p.pstree.threads.iter().zip(&p.cores).enumerate().map(move |(index, (&tid, core))| {
                let set = core.thread_core.as_ref().and_then(|t| t.cg_set).or(core.tc.as_ref().and_then(|t| t.cg_set)).unwrap_or(root_cg_set);
                (tid as i32, set, index == 0)
            })
        })
        .collect();
    // Files of a tree with a mount namespace of its own are named as it sees them: the
    // root opens them there, and names any that is missing.
    if mount_plan.is_none() {
        images::check_files(&images)?;
    }
    // A lazy restore hands its memory to a daemon that must be there before anything
    // is created.
    let mut lazy = options.lazy_pages.as_deref().map(crate::lazy::handoff::Handoff::connect).transpose()?;
    // Planning is pure: the host is read once, here.
    let mut layout = HostLayout::read(root, HostArch::restorer_blob().len() as u64)?;
    if userns.is_some() {
        // The tree's tasks start with crust's ids, the host's root, which has no uid or
        // gid in their user namespace: every thread is given its dumped creds.
        let unmapped = crate::userns::OVERFLOW_ID;
        layout.own_creds = layout::OwnCreds { uid: [unmapped; 4], gid: [unmapped; 4], groups: vec![unmapped], ..layout.own_creds };
    }
    let mut tree = tree::plan_tree::<HostArch>(&images, &layout, options.shell_job)?;
    tree.lazy_pages = lazy.is_some();
    let sysv = memory::segment_sizes(&images)?;
    let mut plans = Vec::new();
    for (index, process) in images.processes.iter().enumerate() {
        plans.push(if process.is_zombie() { None } else { Some(program::plan_process::<HostArch>(&images, index, &tree, &sysv, &layout)?) });
    }
    if options.skip_checksums || lazy.is_some() {
        log::info!("page checksums not verified ({})", if lazy.is_some() { "--lazy-pages: the daemon reads the pages" } else { "--skip-checksums" });
    } else {
        verify_pages(&options.dir, &mut plans)?;
    }
    // In a mount namespace of its own the tree's processes reach the pages images from
    // their working directory, the images directory, by relative paths.
    let images_dir = match &mount_plan {
        Some(_) => Some(images.dir.path().canonicalize().map_err(io_err(root, format!("resolve {}", images.dir.path().display())))?),
        None => None,
    };
    if let Some(images_dir) = &images_dir {
        for plan in plans.iter_mut().flatten() {
            plan.reach_pages_files(|path| Ok(crate::mounts::path_from(images_dir, &path.canonicalize()?)))
                .map_err(io_err(root, "resolve the pages images"))?;
        }
    }
    // The premap arena is reserved at once (inaccessible, no memory): nothing crust maps
    // from here on (a buffer, a thread stack) may land where the slots go. The tree
    // inherits the reservation; each process maps its slots over it and its restorer
    // drops the rest.
    if let Some((start, end)) = tree.premap_arena {
        sys::reserve_at(start, (end - start) as usize).map_err(io_err(root, format!("reserve the premap arena {start:#x}-{end:#x}")))?;
    }
    program::share(&mut plans, &tree.premap_arena.into_iter().collect::<Vec<_>>());
    stop_point()?;
    sys::raise_nofile_limit().map_err(io_err(root, "raise RLIMIT_NOFILE"))?;
    // A tree with a network namespace of its own: crust's main thread makes it and stays
    // in it until the root is cloned, so that the sockets the broker opens and the root
    // are in it.
    let host_ends = crate::net::restore::host_ends(&options.veths);
    // An external namespace (the images name its key) is joined whatever `--empty-ns
    // net` says, as CRIU does: runc sends both for a configured namespace path.
    let external_net = match images.namespaces.net_ns_id {
        Some(id) if crate::net::restore::has_namespace(&options.dir, id) => crate::net::restore::external_key(&options.dir, id)
            .map_err(|e| RestoreError::BadImage { image: format!("netns-{id}.img"), what: e.to_string() })?,
        _ => None,
    };
    let net_images = match images.namespaces.net_ns_id {
        Some(_) if external_net.is_some() || options.empty_net => None,
        Some(id) => Some(crate::net::restore::read(&options.dir, id).map_err(|e| RestoreError::BadImage { image: format!("netns-{id}.img"), what: e.to_string() })?),
        None => None,
    };
    if net_images.is_none() && !host_ends.is_empty() {
        return Err(RestoreError::BadImage { image: "ids".into(), what: "veth host ends are named, but the tree had no network namespace of its own".into() });
    }
    // With a user namespace of its own, the root is cloned into a new network namespace
    // (so that the user namespace owns it), which crust builds once it exists; its
    // sockets are then opened by the root, in its mount namespace.
    let net_after_clone = userns.is_some() && images.namespaces.net_ns_id.is_some();
    if net_after_clone && external_net.is_some() {
        return Err(RestoreError::BadImage {
            image: format!("netns-{}.img", images.namespaces.net_ns_id.unwrap_or_default()),
            what: "an external network namespace joined by a tree with a user namespace of its own: not supported yet".into(),
        });
    }
    if net_after_clone && mount_plan.is_none() {
        return Err(RestoreError::BadImage {
            image: format!("netns-{}.img", images.namespaces.net_ns_id.unwrap_or_default()),
            what: "a network and a user namespace of the tree's own without a mount namespace of its own: not supported yet".into(),
        });
    }
    // The tree's own network namespace: made from its images, made empty (`--empty-ns
    // net`), or joined (external: the fd the caller passes under the dump's key).
    // crust's own namespace is held on an fd above every number the tree's fds and
    // objects are placed at.
    let parked = tree.helper_base + 8192;
    let entered_netns = match (&net_images, images.namespaces.net_ns_id) {
        _ if net_after_clone => None,
        (Some(net), _) => Some(net.make(&host_ends, parked).map_err(|e| RestoreError::Child { pid: root, what: format!("network namespace {}: {e}", net.ns_id) })?),
        (None, Some(id)) if options.empty_net && external_net.is_none() => {
            log::info!("network namespace {id}: made empty (--empty-ns net)");
            Some(crate::net::restore::make_empty(parked).map_err(|e| RestoreError::Child { pid: root, what: format!("network namespace {id}: {e}") })?)
        }
        (None, Some(id)) => {
            let key = external_net.clone().unwrap_or_default();
            let Some(&(fd, _)) = options.inherit_fds.iter().find(|(_, k)| *k == key) else {
                return Err(RestoreError::BadImage {
                    image: format!("netns-{id}.img"),
                    what: format!("the network namespace is external (key {key:?}): pass it with --inherit-fd fd[N]:{key}"),
                });
            };
            log::info!("network namespace {id}: joins the external one of key {key:?} (fd {fd})");
            Some(crate::net::restore::join(fd, parked).map_err(|e| RestoreError::Child { pid: root, what: format!("network namespace {id}: {e}") })?)
        }
        (None, None) => None,
    };
    // With a mount namespace of its own the root opens the files, in that namespace
    // (crust's inherited fds are handed to it by number).
    let broker = if mount_plan.is_some() {
        crate::files::Broker::default()
    } else {
        crate::files::Broker::open(&images.special_files, &images.files, &images.ghosts, &options.dir, images.broker_ids(), tree.broker_base, &options.inherit_fds)
            .map_err(|what| RestoreError::Child { pid: root, what: what.to_string() })?
    };
    // Each shared anonymous object once, filled before the first fork: every process
    // inherits it and maps it from there.
    let mut placed_objects = Vec::new();
    for (&shmid, &(number, size)) in &tree.shmem {
        let created = sys::create_shared_anon(size)
            .map_err(|source| RestoreError::Io { pid: root, what: format!("create shared anonymous memory {shmid} of {size} bytes"), source })
            .and_then(|object| {
                crate::memory::shmem::fill_object(&object, size, &options.dir, shmid)
                    .map_err(|what| RestoreError::Child { pid: root, what: what.to_string() })?;
                let placed = sys::place_fd(object.as_raw_fd(), number, true);
                if object.as_raw_fd() == number {
                    // Already where it belongs: keep it open.
                    let _ = object.into_raw_fd();
                }
                placed.map_err(|source| RestoreError::Io { pid: root, what: format!("place shared anonymous memory {shmid} at fd {number}"), source })
            });
        if let Err(error) = created {
            broker.close();
            for &other in &placed_objects {
                sys::close_fd(other);
            }
            return Err(error);
        }
        placed_objects.push(number);
    }

    let prepared = match &mount_plan {
        Some(plan) => Some(crate::mounts::prepare(plan, tree.helper_base + 8192).inspect_err(|_| broker.close())?),
        None => None,
    };
    let time = match images.namespaces.time_ns_id {
        Some(id) => Some(
            images
                .dir
                .read_single::<crust_images::pb::TimensEntry>(crust_images::ImageKind::Timens, u64::from(id))
                .map_err(|e| RestoreError::BadImage { image: crust_images::ImageKind::Timens.file_name(u64::from(id)), what: e.to_string() })?,
        ),
        None => None,
    };
    let namespaces = child::RootNamespaces {
        time: time.as_ref(),
        mounts: mount_plan.as_ref().zip(prepared.as_ref()),
        uts: uts.as_ref(),
        images_dir: images_dir.as_deref(),
        inherit_fds: &options.inherit_fds,
        cgroup_ns: images.namespaces.cgroup_ns,
        userns: userns.is_some(),
    };
    let more_namespaces = if mount_plan.is_some() { libc::CLONE_NEWNS as u64 } else { 0 }
        | if uts.is_some() { libc::CLONE_NEWUTS as u64 } else { 0 }
        | if userns.is_some() { libc::CLONE_NEWUSER as u64 } else { 0 }
        | if net_after_clone { libc::CLONE_NEWNET as u64 } else { 0 };

    // The tree's cgroups made (and what a task needs before it joins) before the root
    // exists; dropped after the tree's guard, it removes them if the restore fails.
    let yard = match cgroup_plan {
        Some(plan) => Some(crate::cgroups::restore::Yard::prepare(plan).inspect_err(|_| broker.close())?),
        None => None,
    };
    let (sync_read, sync_write) = finish::pipe(root)?;
    let (error_read, error_write) = finish::pipe(root)?;
    let own_loginuid = fs::read_to_string("/proc/self/loginuid").ok().and_then(|v| v.trim().parse::<u32>().ok());
    let forked = sys::fork_root(root, new_pid_ns, tree.new_ipc_ns, more_namespaces, options.restore_sibling);
    let child = match forked {
        Ok(0) => {
            drop(sync_write);
            drop(error_read);
            let run = child::Run { tree: &tree, plans: &plans, images: &images, broker: &broker, shell_job: options.shell_job, namespaces: &namespaces, loginuid: own_loginuid };
            child::root_main(&run, sync_read, error_write)
        }
        Ok(child) => child,
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => return Err(RestoreError::PidBusy { pid: root }),
        Err(error) if options.restore_sibling && error.raw_os_error() == Some(libc::EINVAL) => {
            return Err(RestoreError::Io { pid: root, what: "clone3 with CLONE_PARENT (--restore-sibling: crust must not be a pid namespace's init)".into(), source: error })
        }
        Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => {
            return Err(RestoreError::Io { pid: root, what: "clone3 with set_tid (EAGAIN: crust's cgroup is at its pids.max, or RLIMIT_NPROC is reached)".into(), source: error })
        }
        Err(error) => return Err(RestoreError::Io { pid: root, what: "clone3 with set_tid".into(), source: error }),
    };
    // The root into its cgroups (with a cgroup namespace of its own: that namespace's
    // roots, then it unshares it and the tracer moves it on at its first stop).
    let mut sync_write = fs::File::from(sync_write);
    // The tree's user namespace gets its maps, and its network namespace is built,
    // before the root does anything in them.
    let mut entered_netns = entered_netns;
    if let Some(maps) = &userns {
        let made = crate::userns::write_maps(child, maps)
            .map_err(|e| RestoreError::Child { pid: root, what: format!("user namespace: {e}") })
            .and_then(|()| match (&net_images, net_after_clone) {
                (Some(net), true) => net
                    .make_in(child, &host_ends, parked)
                    .map(Some)
                    .map_err(|e| RestoreError::Child { pid: root, what: format!("network namespace {}: {e}", net.ns_id) }),
                _ => Ok(None),
            })
            .and_then(|entered| {
                if entered.is_some() {
                    entered_netns = entered;
                }
                sync_write.write_all(b"u").map_err(io_err(root, "let the root go on in its user namespace"))
            });
        if let Err(error) = made {
            drop(entered_netns.take());
            let _ = sys::send_signal(child, libc::SIGKILL);
            let _ = sys::wait_thread(child);
            return Err(error);
        }
        log::info!("user namespace {}: uid_map {:?}, gid_map {:?}", images.namespaces.user_ns_id.unwrap_or_default(), crate::userns::map_text(&maps.uid), crate::userns::map_text(&maps.gid));
    }
    let root_set = task_sets.first().map(|&(_, set, _)| set).unwrap_or(root_cg_set);
    if let Some(yard) = &yard {
        if let Err(error) = yard.place_root(child, root_set, images.namespaces.cgroup_ns) {
            let _ = sys::send_signal(child, libc::SIGKILL);
            let _ = sys::wait_thread(child);
            return Err(error.into());
        }
    }
    if images.namespaces.cgroup_ns {
        sync_write.write_all(b"c").map_err(io_err(root, "let the root unshare its cgroup namespace"))?;
    }
    // The root waits for its tracer on the sync pipe, untraced.
    crate::interrupt::hold("restore-forked");
    drop(sync_read);
    drop(error_write);
    broker.close();
    drop(prepared);
    if let Some(entered) = entered_netns {
        for (inner, outer) in &entered.host_ends {
            log::info!("network namespace: veth {inner}'s host end is {outer}");
        }
        if let Err(e) = entered.leave() {
            let _ = sys::send_signal(child, libc::SIGKILL);
            return Err(RestoreError::Child { pid: root, what: e.to_string() });
        }
    }
    if let Some((start, end)) = tree.premap_arena {
        sys::release_reservation(start, (end - start) as usize);
    }
    for &(number, _) in tree.shmem.values() {
        sys::close_fd(number);
    }
    // In a new pid namespace, killing its init (`child`) kills the whole tree.
    let guard_pids = if new_pid_ns { vec![child] } else { images.processes.iter().map(|p| p.pid()).collect() };
    let mut guard = finish::TreeGuard { pids: guard_pids, released: false };
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
    // The root exists in its namespaces and waits for the go below (CRIU reaches these
    // only for a tree with namespaces of its own).
    if new_pid_ns || tree.new_ipc_ns || images.namespaces.net_ns_id.is_some() || more_namespaces != 0 {
        stage(Stage::SetupNamespaces, Some(child))?;
        stage(Stage::PostSetupNamespaces, Some(child))?;
    }
    sync_write.write_all(b"g").map_err(io_err(root, "release child"))?;
    drop(sync_write);
    crate::interrupt::hold("restore-seized");

    let mut placement = yard.as_ref().map(|yard| crate::cgroups::restore::Placement::new(yard, task_sets.iter().copied()));
    let host = finish::wait_for_restorers(&tree, &plans, &images, error_read, placement.as_mut())?;
    if let (Some(yard), Some(placement)) = (&yard, &placement) {
        log::info!("cgroups: {} moves of tasks into their cgroups", placement.moves);
        // Every task is restored: the limits now (the restore itself may need more).
        yard.finish()?;
    }
    drop(placement);
    // Every process has opened its files: the tree becomes its namespace's root.
    if let Some(plan) = &mount_plan {
        crate::mounts::finish_namespace(child, plan)?;
    }
    crate::interrupt::hold("restore-restorers");
    stop_point()?;
    // The pages of big areas go in (and their checksums are checked) before anything may
    // look at the tree's memory.
    for (process, plan) in images.processes.iter().zip(&plans) {
        if let Some(plan) = plan {
            finish::fill_big_areas(process, plan, &host)?;
        }
    }
    for process in images.processes.iter().filter(|p| !p.is_zombie()) {
        if let Some(adj) = process.cores[0].tc.as_ref().and_then(|t| t.oom_score_adj) {
            let path = format!("/proc/{}/oom_score_adj", host[&process.pid()]);
            fs::write(&path, adj.to_string()).map_err(io_err(process.pid(), format!("write {path}")))?;
        }
    }
    // Every task is restored and still stopped; a failure here kills the tree.
    stage(Stage::PostRestore, Some(child))?;
    let mut ready = Vec::new();
    for (process, plan) in images.processes.iter().zip(&plans) {
        if let Some(plan) = plan {
            stop_point()?;
            ready.extend(finish::finish_process(process, plan, &host, options.leave_stopped, lazy.as_mut())?);
        }
    }
    // Segments removed while attached go again, now that every process has attached them.
    if let Some(ns_id) = images.namespaces.ipc_ns_id {
        let removed = crate::ipc::removed_segments(&options.dir, ns_id).map_err(|what| RestoreError::BadImage { image: "ipcns-shm".into(), what: what.to_string() })?;
        crate::ipc::remove_segments(child, &removed).map_err(|what| RestoreError::Child { pid: root, what: what.to_string() })?;
    }
    // The sockets are out of repair mode: let the traffic of their TCP connections
    // through again, just before the tree runs (as CRIU); a crust killed from here on
    // still kills the tree, and leaves no nftables table.
    if images.own_net_namespace() {
        stage(Stage::NetworkUnlock, Some(child))?;
    }
    let tree_netns = match images.own_net_namespace() {
        true => Some(crate::sys::netns::open_net_namespace(child).map_err(io_err(root, "open the tree's network namespace"))?),
        false => None,
    };
    crate::files::unlock_tcp(&options.dir, tree_netns.as_ref().map(std::os::fd::AsFd::as_fd), &crate::files::established_connections(&images.special_files))
        .map_err(|what| RestoreError::Child { pid: root, what: what.to_string() })?;
    stage(Stage::PreResume, Some(child))?;
    // The last moment a stop can still undo the restore.
    crate::interrupt::hold("restore-finished");
    stop_point()?;
    // The daemon has every process: the restore's end of the connection closes.
    drop(lazy);
    finish::release(&ready)?;
    // Return only once the stopped ones are stopped (their stop is already pending).
    for process in images.processes.iter().filter(|p| !p.is_zombie() && (options.leave_stopped || p.task_state() == TASK_STOPPED)) {
        for &tid in process.pstree.threads.iter().skip(process.acting_thread()) {
            finish::wait_until_stopped(process.pid(), host[&(tid as i32)])?;
        }
    }
    guard.released = true;
    // The tree runs: the freezer states last.
    if let Some(yard) = yard {
        if let Err(error) = yard.resume() {
            log::warn!("restore: cgroups: {error} (the tree runs)");
        }
    }
    // From here on, the root is named by its pid on this host.
    let root = child;
    if let Some(pidfile) = &options.pidfile {
        fs::write(pidfile, format!("{root}")).map_err(io_err(root, format!("write {}", pidfile.display())))?;
    }
    let total = started.elapsed();
    stage(Stage::PostResume, Some(root))?;
    // A sibling root is its parent's to wait for, not crust's.
    let exit_code = if options.detach || options.restore_sibling {
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

/// Verifies the pages of the dump in `dir` (and its parents) before the first fork, so
/// that a damaged image fails before anything is created, naming the run; but for the
/// runs of the big areas crust fills (`lazy/fill.rs`), which the fill checksums from
/// the bytes it reads anyway, before the tree is called restored (a damaged one fails
/// the restore there, and the tree, which never ran, is killed).
fn verify_pages(dir: &Path, plans: &mut [Option<program::Plan>]) -> Result<(), RestoreError> {
    let verifying = Instant::now();
    let filled: Vec<(&Path, u64, u64)> = plans
        .iter()
        .flatten()
        .flat_map(|plan| plan.fill_areas.iter().flat_map(|area| &area.runs))
        .filter_map(|run| Some((run.file.as_deref()?, run.offset, run.bytes)))
        .collect();
    let (verified, left) = crate::memory::checksums::verify_except(dir, sys::page_size(), &filled)?;
    for plan in plans.iter_mut().flatten().filter(|plan| !plan.fill_areas.is_empty()) {
        plan.fill_checks = plan.fill_areas.iter().flat_map(|area| &area.runs).map(|run| left.check_of(run.file.as_deref()?, run.offset, run.bytes)).collect();
    }
    log::info!(
        "page checksums verified: {} MiB in {} dumps{} in {:?}; {} MiB left to the fill of big areas",
        verified.bytes >> 20,
        verified.dumps,
        if verified.without > 0 { format!(" ({} without checksums, made by CRIU)", verified.without) } else { String::new() },
        verifying.elapsed(),
        left.bytes() >> 20
    );
    Ok(())
}
