//! The restored processes' first life, in crust code forked with their dumped pids:
//! the root takes its pipes and (with its own IPC namespace) creates the tree's System V
//! objects; every process sets its session and group, installs its fds from the
//! broker, fills its premapped areas, forks its children (and the stand-ins for exited
//! leaders), opens its helper fds, and jumps into the restorer. Errors go to the error
//! pipe (`pid PID: ...`) and the process exits; the tracer reports them.
//!
//! The unsafe spots of the restore are here: filling premapped slots through a raw
//! slice, copying the restorer into its area, and wrapping the pipes' fds in `File`s.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crust_arch::{Host, HostArch};

use crate::files::Broker;
use crate::restore::images::Images;
use crate::restore::memory::{Premap, PremapFile};
use crate::restore::program::Plan;
use crate::restore::tree::{fork_order, HelperPlan, TreePlan};
use crate::sys;

/// Why a restored process could not get to its restorer; written to the error pipe as
/// `pid PID: MESSAGE` by [`die`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildError {
    /// `what` names the step.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Files(#[from] crate::files::FileError),
    #[error("System V IPC namespace: {0}")]
    IpcNamespace(crate::ipc::IpcError),
    #[error("mount namespace: {0}")]
    Mounts(#[from] crate::mounts::MountError),
    #[error("UTS namespace: {0}")]
    Uts(#[from] crate::uts::UtsError),
    /// A pid taken, a helper that did not end well.
    #[error("{what}")]
    Refused { what: String },
}

impl ChildError {
    fn refused(what: impl Into<String>) -> ChildError {
        ChildError::Refused { what: what.into() }
    }
}

/// For `map_err`: step `what` failed.
fn child_io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChildError {
    let what = what.into();
    move |source| ChildError::Io { what, source }
}

/// The namespaces the root makes besides pid and IPC: its mount namespace (the plan
/// and the clones crust opened for it), its UTS names, and the images directory (its
/// working directory while the tree opens its files, chrooted into its mounts).
pub(crate) struct RootNamespaces<'a> {
    pub(crate) mounts: Option<(&'a crate::mounts::MountPlan, &'a crate::mounts::PreparedMounts)>,
    pub(crate) uts: Option<&'a crust_images::pb::UtsnsEntry>,
    pub(crate) images_dir: Option<&'a Path>,
    /// `--inherit-fd`: crust's fds that stand for files of the dump, which the root
    /// (their copy inherited through the fork) places when it opens the files.
    pub(crate) inherit_fds: &'a [(i32, String)],
    /// The clocks of the tree's own time namespace at dump (`timens-ID.img`): the root
    /// makes a new one that carries on from them, first thing.
    pub(crate) time: Option<&'a crust_images::pb::TimensEntry>,
    /// The tree has a cgroup namespace of its own: once crust has moved the root into
    /// the namespace's roots (a `c` on the sync pipe), the root unshares one, before it
    /// mounts anything (a cgroup filesystem shows the cgroups from its mounter's
    /// namespace root).
    pub(crate) cgroup_ns: bool,
    /// The root was cloned into the tree's new user namespace: it waits first thing for
    /// crust to write its maps (and build its network namespace), a `u` on the sync
    /// pipe. It keeps crust's ids (the host's root, which owns the images; the restorer
    /// gives every thread its dumped creds last), and builds the mount tree through a
    /// helper that is root of the namespace (files it creates must have owners there).
    pub(crate) userns: bool,
}

/// What every process of the tree works from after the fork.
#[derive(Clone, Copy)]
pub(crate) struct Run<'a> {
    pub(crate) tree: &'a TreePlan,
    /// One per process, `None` for zombies.
    pub(crate) plans: &'a [Option<Plan>],
    pub(crate) images: &'a Images,
    pub(crate) broker: &'a Broker,
    /// Keep the caller's session and process group for the root.
    pub(crate) shell_job: bool,
    pub(crate) namespaces: &'a RootNamespaces<'a>,
    /// crust's own audit login uid, which the root inherits.
    pub(crate) loginuid: Option<u32>,
}

/// Makes a just-forked child the leader of its group from the parent's side, so that
/// siblings forked after it can join the group whatever the scheduler does. A session
/// leader makes its group itself (setsid fails for a group leader). Errors are left to
/// the child's own setpgid: this fails only once the child has done it and exited.
pub(crate) fn lead_group_early(images: &Images, index: usize, host_pid: i32) {
    let p = &images.processes[index].pstree;
    if p.pgid == p.pid && p.sid != p.pid {
        let _ = sys::set_child_process_group(host_pid, host_pid);
    }
}

/// A helper for an exited session or group leader: see [`HelperPlan`]. Never returns.
fn helper_main(run: &Run, helper: &HelperPlan) -> ! {
    let Run { tree, images, .. } = *run;
    let result = (|| -> Result<(), ChildError> {
        if helper.session {
            sys::new_session().map_err(child_io("setsid"))?;
        } else {
            sys::set_process_group(0).map_err(child_io("setpgid"))?;
        }
        for &index in &helper.members {
            let member = images.processes[index].pid();
            match sys::fork_with_pid(member) {
                Ok(0) => process_main(run, index),
                Ok(host) => lead_group_early(images, index, host),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(ChildError::refused(format!("pid {member} is busy"))),
                Err(e) => return Err(ChildError::refused(format!("fork {member}: {e}{}", eagain_hint(&e)))),
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => sys::exit_now(0),
        Err(message) => die(tree, helper.pid as i32, &format!("helper for exited leader: {message}")),
    }
}

/// The restored root's first life: crust code, forked with the root's PID. Moves its
/// pipes out of the way, waits until the tracer has seized it, and becomes the root.
pub(crate) fn root_main(run: &Run, sync: OwnedFd, error: OwnedFd) -> ! {
    let Run { tree, images, broker, namespaces, .. } = *run;
    let mut opened_here = None;
    let result = (|| -> Result<(), ChildError> {
        // Nothing is done in the new user namespace before it has its maps.
        if namespaces.userns {
            let mut byte = [0u8; 1];
            let mut sync_file = fd_file(sync.as_raw_fd());
            let read = sync_file.read_exact(&mut byte);
            std::mem::forget(sync_file);
            read.map_err(child_io("wait for the user namespace's maps"))?;
        }
        // The tree's time namespace, while the root is the only task that will be in it.
        if let Some(clocks) = namespaces.time {
            crate::timens::enter_new(clocks).map_err(child_io("make the tree's time namespace"))?;
        }
        // Move the pipes to their numbers (through copies above both, so neither lands on
        // the other).
        let above = tree.broker_base.saturating_add(i32::try_from(broker.fds.len()).unwrap_or(i32::MAX)).saturating_add(4096);
        let error_copy = sys::dup_at_least(error.as_raw_fd(), above).map_err(child_io("copy error pipe"))?;
        let sync_copy = sys::dup_at_least(sync.as_raw_fd(), above).map_err(child_io("copy sync pipe"))?;
        drop(error);
        drop(sync);
        sys::place_fd(error_copy, tree.error_fd, true).map_err(child_io("place error pipe"))?;
        sys::place_fd(sync_copy, tree.sync_fd, true).map_err(child_io("place sync pipe"))?;
        sys::close_fd(error_copy);
        sys::close_fd(sync_copy);
        let mut keep = broker.numbers();
        keep.extend([tree.error_fd, tree.sync_fd]);
        keep.extend(tree.shmem.values().map(|s| s.0));
        keep.extend(namespaces.mounts.iter().flat_map(|(_, prepared)| prepared.numbers()));
        if namespaces.mounts.is_some() {
            keep.extend(namespaces.inherit_fds.iter().map(|(fd, _)| *fd));
        }
        close_all_but(&keep)?;
        broker.make_dead_pidfds()?;
        // The tree's cgroup namespace, rooted at the cgroups crust has moved the root
        // into, and made before the mounts, whose cgroup filesystems show that root as `/`.
        if namespaces.cgroup_ns {
            let mut byte = [0u8; 1];
            let mut sync_file = fd_file(tree.sync_fd);
            let read = sync_file.read_exact(&mut byte);
            std::mem::forget(sync_file);
            read.map_err(child_io("wait to be moved into the cgroup namespace's roots"))?;
            sys::cgroup::new_cgroup_namespace().map_err(child_io("unshare(CLONE_NEWCGROUP)"))?;
        }
        // The tree's IPC objects, before any process attaches a segment.
        if let Some(ns_id) = images.namespaces.ipc_ns_id {
            crate::ipc::restore_namespace(images.dir.path(), ns_id).map_err(ChildError::IpcNamespace)?;
        }
        if let Some(names) = namespaces.uts {
            crate::uts::apply(names)?;
        }
        // The tree's mounts; then every file is opened by its path in them, and the
        // dump's own files by relative paths from the images directory.
        if let (Some((plan, prepared)), Some(images_dir)) = (namespaces.mounts, namespaces.images_dir) {
            std::env::set_current_dir(images_dir).map_err(child_io(format!("chdir {}", images_dir.display())))?;
            let archives = crate::mounts::open_archives(plan)?;
            let root = if namespaces.userns {
                build_mounts_as_namespace_root(run, plan, prepared, &archives)?
            } else {
                crate::mounts::setup_in_root(plan, prepared, &archives)?
            };
            drop(archives);
            sys::change_root(&root).map_err(child_io(format!("chroot {}", root.display())))?;
            let opened = Broker::open(&images.special_files, &images.files, &images.ghosts, Path::new("."), images.broker_ids(), tree.broker_base, namespaces.inherit_fds)?;
            opened.make_dead_pidfds()?;
            opened_here = Some(opened);
        }
        // Wait until the tracer has seized us.
        let mut byte = [0u8; 1];
        let mut sync_file = fd_file(tree.sync_fd);
        sync_file.read_exact(&mut byte).map_err(child_io("wait for tracer"))?;
        std::mem::forget(sync_file);
        Ok(())
    })();
    match (result, &opened_here) {
        (Ok(()), Some(broker)) => process_main(&Run { broker, ..*run }, 0),
        (Ok(()), None) => process_main(run, 0),
        (Err(message), _) => die(tree, images.processes[0].pid(), &message.to_string()),
    }
}

/// Builds the mount tree in a helper (forked untraced, reaped here) that becomes root of
/// the tree's user namespace first: the filesystems it mounts and the files it creates
/// in them (tmpfs contents, mountpoints) then belong to the namespace's root, as the
/// dumped ones did. Errors: the helper's own line on the error pipe, and one here.
fn build_mounts_as_namespace_root(
    run: &Run,
    plan: &crate::mounts::MountPlan,
    prepared: &crate::mounts::PreparedMounts,
    archives: &std::collections::BTreeMap<String, fs::File>,
) -> Result<PathBuf, ChildError> {
    let tree = run.tree;
    let helper = sys::fork_untraced().map_err(child_io("fork the helper that builds the mount tree"))?;
    if helper == 0 {
        let built = crate::userns::become_namespace_root()
            .map_err(child_io("become root of the user namespace (setgroups, setresgid, setresuid)"))
            .and_then(|()| Ok(crate::mounts::setup_in_root(plan, prepared, archives)?));
        match built {
            Ok(_) => sys::exit_now(0),
            Err(message) => die(tree, run.images.processes[0].pid(), &format!("mount namespace helper: {message}")),
        }
    }
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(helper), Some(nix::sys::wait::WaitPidFlag::__WALL))
        .map_err(|e| ChildError::Io { what: "wait for the helper that builds the mount tree".into(), source: std::io::Error::from_raw_os_error(e as i32) })?;
    for number in prepared.numbers() {
        sys::close_fd(number);
    }
    match status {
        nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(plan.root_dir.join("root")),
        other => Err(ChildError::refused(format!("the helper that builds the mount tree ended with {other:?}"))),
    }
}

/// What EAGAIN from a fork or clone means here: a cgroup's pids.max (runc restores
/// inside the container's cgroups, where crust's own threads count too) or
/// RLIMIT_NPROC.
pub(crate) fn eagain_hint(error: &std::io::Error) -> &'static str {
    if error.raw_os_error() == Some(libc::EAGAIN) {
        " (EAGAIN: the cgroup's pids.max or RLIMIT_NPROC is reached)"
    } else {
        ""
    }
}

/// Writes `message` to the error pipe and exits.
pub(crate) fn die(tree: &TreePlan, pid: i32, message: &str) -> ! {
    let mut out = fd_file(tree.error_fd);
    let _ = out.write_all(format!("pid {pid}: {message}\n").as_bytes());
    std::mem::forget(out);
    sys::exit_now(1)
}

/// Closes every fd of this process but `keep` (close_range over the gaps: a process of
/// a tree with a mount namespace of its own may have no /proc to list its fds).
fn close_all_but(keep: &[i32]) -> Result<(), ChildError> {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&fd| u32::try_from(fd).ok()).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 0u32;
    for &kept in &keep {
        if kept > first {
            sys::close_range(first, kept - 1).map_err(child_io(format!("close fds {first}..{}", kept - 1)))?;
        }
        first = kept + 1;
    }
    sys::close_range(first, u32::MAX).map_err(child_io(format!("close fds from {first}")))
}

/// One process of the tree, in crust code with its dumped PID: session and group, fds
/// (installed from the broker's descriptions, inherited through fork), children, then
/// the restorer. Never returns.
fn process_main(run: &Run, index: usize) -> ! {
    let Run { tree, plans, images, broker, shell_job, .. } = *run;
    let process = &images.processes[index];
    let pid = process.pid();
    let result = (|| -> Result<(), ChildError> {
        let p = &process.pstree;
        let root = &images.processes[0].pstree;
        if shell_job && index == 0 {
            // --shell-job: the root stays in crust's session; a group leader stays one.
            if p.pgid == p.pid {
                sys::set_process_group(0).map_err(child_io("setpgid"))?;
            }
        } else if shell_job && root.pgid != root.pid && p.pgid == root.pgid {
            // The root's group was crust's caller's: it is crust's now, the root's.
            let group = sys::process_group_of(root.pid as i32).map_err(child_io(format!("getpgid {}", root.pid)))?;
            sys::set_process_group(group).map_err(child_io(format!("setpgid {group} (the root's group)")))?;
        } else {
            if p.sid == p.pid {
                sys::new_session().map_err(child_io("setsid"))?;
            } else if p.pgid == p.pid {
                sys::set_process_group(0).map_err(child_io("setpgid"))?;
            } else if p.pgid == 0 {
                // A group led outside the dumped pid namespace: inherited from the parent.
            } else {
                sys::set_process_group(p.pgid as i32).map_err(child_io(format!("setpgid {}", p.pgid)))?;
            }
            if p.sid == p.pid && p.pgid != p.pid {
                sys::set_process_group(p.pgid as i32).map_err(child_io(format!("setpgid {}", p.pgid)))?;
            }
        }
        if !(index == 0 && shell_job) {
            broker.terminals(p.pid, p.sid, p.pgid)?;
        }
        if let Some(loginuid) = process.cores[0].tc.as_ref().and_then(|t| t.loginuid) {
            if Some(loginuid) != inherited_loginuid(run, index) {
                restore_loginuid(loginuid)?;
            }
        }
        // Registrations belong to the mm, which the restorer keeps: made here, they hold
        // for every thread it creates. Each bit of the mask is its register command.
        let membarrier = process.cores[0].tc.as_ref().and_then(|t| t.membarrier_registration_mask).unwrap_or(0);
        for bit in (0..32).map(|b| 1u32 << b).filter(|bit| membarrier & bit != 0) {
            sys::membarrier(bit).map_err(child_io(format!("membarrier register command {bit:#x}")))?;
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
        broker.install(&process.fds, &images.files, images.dir.path(), &images.proc_files)?;
        // Whether an earlier process holds file `id` (then it installed its watches).
        let earlier = |id: u32| images.processes[..index].iter().any(|p| p.fds.iter().any(|f| f.id == id));
        broker.after_install(&process.fds, earlier)?;
        // Orphans of a helper come here only if this process is a subreaper already.
        if process.cores.first().and_then(|c| c.tc.as_ref()).and_then(|t| t.child_subreaper) == Some(true) {
            sys::become_child_subreaper().map_err(child_io("become child subreaper"))?;
        }
        let plan = plans[index].as_ref().expect("live processes have a plan");
        // Areas shared copy-on-write with children: filled before they are forked.
        fill_premapped(&plan.premap, &plan.page_files, broker)?;
        // Children, group leaders first, then the helpers of exited leaders (which fork
        // their members and exit, leaving them to us); they inherit the broker too.
        let by_helper: Vec<usize> = tree.helpers.iter().flat_map(|h| h.members.iter().copied()).collect();
        let own: Vec<usize> = (index + 1..images.processes.len())
            .filter(|&i| images.processes[i].pstree.ppid == p.pid && !by_helper.contains(&i))
            .collect();
        let ordered = fork_order(images, &own);
        let (leaders, others) = ordered.split_at(ordered.iter().take_while(|&&i| images.processes[i].pstree.pgid == images.processes[i].pstree.pid).count());
        let fork_child = |child_index: usize| -> Result<(), ChildError> {
            let child = &images.processes[child_index];
            match sys::fork_with_pid(child.pid()) {
                Ok(0) => process_main(run, child_index),
                Ok(host) => {
                    lead_group_early(images, child_index, host);
                    Ok(())
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Err(ChildError::refused(format!("child pid {} is busy", child.pid()))),
                Err(e) => Err(ChildError::refused(format!("fork child {}: {e}{}", child.pid(), eagain_hint(&e)))),
            }
        };
        for &child_index in leaders {
            fork_child(child_index)?;
        }
        for helper in tree.helpers.iter().filter(|h| h.parent == p.pid) {
            match sys::fork_with_pid(helper.pid as i32) {
                Ok(0) => helper_main(run, helper),
                Ok(host) => match sys::wait_thread(host) {
                    Ok(sys::WaitEvent::Exited(0)) => {}
                    Ok(other) => return Err(ChildError::refused(format!("helper {} for an exited leader ended with {other:?}", helper.pid))),
                    Err(e) => return Err(ChildError::refused(format!("wait for helper {}: {e}", helper.pid))),
                },
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(ChildError::refused(format!("pid {} (exited session or group leader) is busy", helper.pid))),
                Err(e) => return Err(ChildError::refused(format!("fork helper {}: {e}{}", helper.pid, eagain_hint(&e)))),
            }
        }
        for &child_index in others {
            fork_child(child_index)?;
        }
        for &(number, id, mode) in &plan.broker_helpers {
            let source = broker.fds.get(&id).ok_or_else(|| ChildError::refused(format!("mapped file id {id} was not opened")))?;
            match mode {
                Some(mode) => {
                    // The same file, opened again through the broker's fd for the area.
                    let path = std::path::PathBuf::from(format!("/proc/self/fd/{source}"));
                    let fd = sys::open_raw(&path, mode | libc::O_CLOEXEC, 0).map_err(child_io(format!("open mapped file {id} again for its area")))?;
                    if fd != number {
                        sys::place_fd(fd, number, true).map_err(child_io(format!("place mapped file {id}")))?;
                        sys::close_fd(fd);
                    }
                }
                None => sys::place_fd(*source, number, true).map_err(child_io(format!("place mapped file {id}")))?,
            }
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
            let fd = sys::open_raw(path, *flags | libc::O_CLOEXEC, 0).map_err(child_io(format!("open {}", path.display())))?;
            if fd != *number {
                sys::place_fd(fd, *number, true).map_err(child_io(format!("place {}", path.display())))?;
                sys::close_fd(fd);
            }
        }
        let cwd = images.files.get(&process.fs.cwd_id).map(|r| PathBuf::from(&r.name));
        let root = images.files.get(&process.fs.root_id).map(|r| PathBuf::from(&r.name));
        // The cwd first: both paths are as crust sees them, and a cwd may lie outside
        // the root (chroot does not move it).
        if let Some(cwd) = cwd {
            std::env::set_current_dir(&cwd).map_err(child_io(format!("chdir {}", cwd.display())))?;
        }
        if let Some(root) = root.filter(|r| r != Path::new("/")) {
            sys::change_root(&root).map_err(child_io(format!("chroot {}", root.display())))?;
        }
        if let Some(umask) = process.fs.umask {
            sys::set_umask(umask);
        }
        if let Some(tc) = &process.cores[0].tc {
            sys::set_comm(&tc.comm).map_err(child_io("set comm"))?;
        }
        sys::block_all_signals().map_err(child_io("block signals"))?;
        sys::unregister_own_rseq(HostArch::thread_pointer()).map_err(child_io("unregister own rseq"))?;

        // Map the restorer area and jump.
        let area = plan.area;
        sys::map_anonymous_at(area, plan.area_size as usize, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(child_io(format!("map restorer area at {area:#x}")))?;
        #[allow(unsafe_code)]
        // SAFETY: area..area+area_size was just mapped writable for this purpose; code,
        // data and ops fit in it (checked when planning).
        unsafe {
            sys::copy_to_address(area, HostArch::restorer_blob());
            sys::copy_to_address(area + plan.code_size, &plan.data);
            sys::copy_to_address(area + plan.ops_offset, &plan.ops_bytes);
        }
        sys::protect(area, plan.code_size as usize, libc::PROT_READ | libc::PROT_EXEC)
            .map_err(child_io("protect restorer code"))?;
        HostArch::enter_restorer(area + HostArch::restorer_entry_offset() as u64, area + plan.ops_offset)
    })();
    match result {
        Ok(()) => die(tree, pid, "restorer returned"),
        Err(message) => die(tree, pid, &message.to_string()),
    }
}

/// The audit login uid process `index` inherited: its nearest ancestor's in the images
/// (each process gives itself its own before it forks its children), or crust's.
fn inherited_loginuid(run: &Run, index: usize) -> Option<u32> {
    let processes = &run.images.processes;
    let mut ppid = processes[index].pstree.ppid;
    while let Some(parent) = processes.iter().find(|p| p.pstree.pid == ppid && ppid != 0) {
        if let Some(loginuid) = parent.cores[0].tc.as_ref().and_then(|t| t.loginuid) {
            return Some(loginuid);
        }
        ppid = parent.pstree.ppid;
    }
    run.loginuid
}

/// Gives this process its audit login uid (only the process itself can write
/// /proc/self/loginuid; its threads, made later, inherit it). The kernel gives it a new
/// session id, as it does for CRIU.
fn restore_loginuid(loginuid: u32) -> Result<(), ChildError> {
    let path = "/proc/self/loginuid";
    fs::write(path, loginuid.to_string()).map_err(child_io(format!("write {path} ({loginuid}, the dumped audit login uid; a tree in a mount namespace without /proc needs it equal to crust's)")))
}

/// Fills this process's premapped slots (crust code, before the children are forked): a
/// slot of its own is mapped (anonymous, or a private mapping of the area's file) and its
/// pages read in; an inherited one keeps every page whose contents are already right
/// (still shared with the parent), gets the others written, and drops the pages this
/// process did not have. A page the parent's slot did not have is written even when its
/// bytes are equal: there the slot holds the file's page (or the zero page), and this
/// process had a private copy.
fn fill_premapped(premap: &[Premap], page_files: &[PathBuf], broker: &Broker) -> Result<(), ChildError> {
    if premap.is_empty() {
        return Ok(());
    }
    let page = sys::page_size();
    let mut files = Vec::new();
    for path in page_files {
        files.push(fs::File::open(path).map_err(child_io(format!("open {}", path.display())))?);
    }
    // For inherited slots: the pages read, then compared with the parent's (grown to at
    // most 1 MiB as runs need it).
    let mut buf = Vec::new();
    for area in premap {
        let len = area.end - area.start;
        let at = |addr: u64| area.slot + (addr - area.start);
        if !area.inherited {
            let what = || format!("premap {:#x}-{:#x} at {:#x}", area.start, area.end, area.slot);
            match &area.file {
                None => sys::map_private_anon_over_reservation(area.slot, len as usize, area.noreserve).map_err(child_io(what()))?,
                Some((PremapFile::Broker(id), offset)) => {
                    let fd = *broker.fds.get(id).ok_or_else(|| ChildError::refused(format!("{}: file id {id} was not opened", what())))?;
                    sys::map_private_file_over_reservation(area.slot, len as usize, fd, *offset, area.noreserve).map_err(child_io(what()))?;
                }
                Some((PremapFile::Path(path), offset)) => {
                    let file = fs::File::open(path).map_err(child_io(format!("{}: open {}", what(), path.display())))?;
                    sys::map_private_file_over_reservation(area.slot, len as usize, file.as_raw_fd(), *offset, area.noreserve)
                        .map_err(child_io(format!("{} from {}", what(), path.display())))?;
                }
            }
            if area.no_huge {
                sys::advise(area.slot, len as usize, nix::sys::mman::MmapAdvise::MADV_NOHUGEPAGE).map_err(child_io(format!("premap {:#x}: MADV_NOHUGEPAGE", area.slot)))?;
            }
        }
        let mut covered = area.start;
        for &(addr, bytes, file, offset) in &area.runs {
            let (pages, pages_path) = (&files[file], &page_files[file]);
            if area.inherited && addr > covered {
                // Pages the parent had here and this process did not.
                sys::advise(at(covered), (addr - covered) as usize, nix::sys::mman::MmapAdvise::MADV_DONTNEED).map_err(child_io(format!("drop premapped pages at {covered:#x}")))?;
            }
            covered = addr + bytes;
            #[allow(unsafe_code)]
            // SAFETY: the slot maps [at(start), at(end)) read-write in this process (mapped
            // above or inherited through fork), and the run lies inside the area (checked
            // when planning); nothing else refers to that memory while crust fills it.
            let target = unsafe { sys::memory_at(at(addr), bytes as usize) };
            if !area.inherited {
                pages.read_exact_at(target, offset).map_err(child_io(format!("read pages {addr:#x}+{bytes} from {}", pages_path.display())))?;
                continue;
            }
            if buf.len() < target.len().min(1 << 20) {
                buf.resize(target.len().min(1 << 20), 0);
            }
            let mut done = 0usize;
            while done < target.len() {
                let n = buf.len().min(target.len() - done);
                pages.read_exact_at(&mut buf[..n], offset + done as u64).map_err(child_io(format!("read pages {addr:#x}+{bytes} from {}", pages_path.display())))?;
                for (index, (mine, want)) in target[done..done + n].chunks_mut(page as usize).zip(buf[..n].chunks(page as usize)).enumerate() {
                    let page_addr = addr + done as u64 + index as u64 * page;
                    if mine != want || !parent_had(&area.parent_runs, page_addr) {
                        mine.copy_from_slice(want);
                    }
                }
                done += n;
            }
        }
        if area.inherited && area.end > covered {
            sys::advise(at(covered), (area.end - covered) as usize, nix::sys::mman::MmapAdvise::MADV_DONTNEED).map_err(child_io(format!("drop premapped pages at {covered:#x}")))?;
        }
    }
    Ok(())
}

/// Whether `addr` is in one of `runs` (address, bytes), sorted by address.
fn parent_had(runs: &[(u64, u64)], addr: u64) -> bool {
    let at = runs.partition_point(|&(start, bytes)| start + bytes <= addr);
    runs.get(at).is_some_and(|&(start, _)| start <= addr)
}

/// A `File` over a raw fd the restore child owns for the rest of its life.
fn fd_file(fd: i32) -> fs::File {
    #[allow(unsafe_code)]
    // SAFETY: `fd` is open in this child and nothing else closes it before exit.
    unsafe {
        fs::File::from_raw_fd(fd)
    }
}
