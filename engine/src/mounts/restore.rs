//! The restore half of mounts, in three places:
//! 1. crust, before the tree's root is forked ([`prepare`]): the `--root` directory and
//!    every external source become detached clones (`open_tree(OPEN_TREE_CLONE)`),
//!    which only work on mounts of crust's own namespace; the root inherits them.
//! 2. the root, first thing in its new mount namespace ([`setup_in_root`]): it makes
//!    the namespace private, mounts a small tmpfs "yard" over the `--root` directory
//!    (only this namespace sees it), attaches each mount alone in the yard (`root`,
//!    `mnt-<id>`: binds are cloned from their source there, which needs the source
//!    attached), sets each mount's flags with `mount_setattr`, then moves them into
//!    the tree under `root` in the namespace's order. The caller then chroots into the
//!    tree, so every process of the tree opens its files by the paths its images name
//!    (the namespace's view), while its working directory, the images directory,
//!    keeps the dump's files in reach by relative paths.
//! 3. crust, once every process of the tree has opened its files and waits in its
//!    restorer ([`finish_namespace`]): a thread of crust enters the namespace, pivots
//!    its root to the tree and detaches the old root with the yard. The tree's
//!    processes had their root at the tree's root already; now the namespace holds
//!    the tree's mounts alone.
//!
//! Works on Linux 6.1 (the VMs): attaching into a detached tree (6.15) is not used.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::plan::{MountPlan, NewFs, Propagation, Source};
use super::{mount_io, MountError};
use crate::sys;
use crate::sys::mount as mnt;

/// The clones of the root and external sources crust made for the restored root, by
/// index into the plan's mounts, at fd numbers above every fd the tree uses.
pub(crate) struct PreparedMounts {
    pub(crate) fds: Vec<(usize, OwnedFd)>,
}

impl PreparedMounts {
    /// The fd numbers, which the root keeps open until it has attached them.
    pub(crate) fn numbers(&self) -> Vec<i32> {
        self.fds.iter().map(|(_, fd)| fd.as_raw_fd()).collect()
    }

    fn get(&self, index: usize) -> Option<&OwnedFd> {
        self.fds.iter().find(|(i, _)| *i == index).map(|(_, fd)| fd)
    }
}

/// Opens the `--root` directory and every external source of `plan` as detached clones
/// (crust's namespace), each at a number of at least `above`.
pub(crate) fn prepare(plan: &MountPlan, above: i32) -> Result<PreparedMounts, MountError> {
    let mut fds = Vec::new();
    for (index, mount) in plan.mounts.iter().enumerate() {
        let (path, what) = match &mount.source {
            Source::Root(path) => (path, "--root".to_string()),
            Source::Host { key, path } => (path, format!("external source (key {key:?})")),
            Source::Bind { .. } | Source::Fs(_) => continue,
        };
        let clone = mnt::clone_tree(path).map_err(mount_io(format!("restore: {}: {what} {}: open_tree", plan.describe(index), path.display())))?;
        let clone = sys::file::move_above(clone, above).map_err(mount_io(format!("restore: {}: move the clone of {} above fd {above}", plan.describe(index), path.display())))?;
        fds.push((index, clone));
    }
    Ok(PreparedMounts { fds })
}

/// Where mount `index` sits in the yard while the tree is assembled.
fn place(yard: &Path, plan: &MountPlan, index: usize) -> PathBuf {
    match plan.mounts[index].source {
        Source::Root(_) => yard.join("root"),
        _ => yard.join(format!("mnt-{}", plan.mounts[index].mnt_id)),
    }
}

/// Makes `path` a mountpoint for a mount whose root is a directory (`dir`) or a file:
/// creates it, and the directories above it, if it is not there.
fn make_mountpoint(path: &Path, dir: bool) -> std::io::Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    if dir {
        fs::create_dir(path)
    } else {
        fs::OpenOptions::new().write(true).create_new(true).open(path).map(drop)
    }
}

/// In the restored root, just forked into a new mount namespace: builds the tree of
/// `plan` from the clones crust `prepared` and returns the path of its root (in this
/// namespace), for the caller to chroot into. Closes the clones (this process's copies:
/// the `PreparedMounts` value itself stays crust's, inherited through fork).
/// The tmpfs archives of `plan`, opened (from the working directory, the images
/// directory) by the root before it builds the tree: in a user namespace of the tree's
/// own, the tree is built by a helper that is root of the namespace, which may not
/// read the images (they belong to the host's root).
pub(crate) fn open_archives(plan: &MountPlan) -> Result<BTreeMap<String, fs::File>, MountError> {
    let mut archives = BTreeMap::new();
    for mount in &plan.mounts {
        if let Source::Fs(NewFs { archive: Some(archive), .. }) = &mount.source {
            if !archives.contains_key(archive) {
                let file = fs::File::open(archive).map_err(mount_io(format!("open {archive}")))?;
                archives.insert(archive.clone(), file);
            }
        }
    }
    Ok(archives)
}

/// Builds the tree in the calling task's new mount namespace (see the module doc),
/// the tmpfs contents from `archives` ([`open_archives`]); returns where the tree is.
pub(crate) fn setup_in_root(plan: &MountPlan, prepared: &PreparedMounts, archives: &BTreeMap<String, fs::File>) -> Result<PathBuf, MountError> {
    mnt::make_private_recursive(Path::new("/")).map_err(mount_io("make / private (recursively) in the new mount namespace"))?;
    let yard_mount = mnt::new_tmpfs(&[("mode", "0700"), ("size", "1m")]).map_err(mount_io("make the yard (a tmpfs): fsopen/fsmount"))?;
    let yard = plan.root_dir.clone();
    mnt::attach(&yard_mount, &yard).map_err(mount_io(format!("attach the yard over {}", yard.display())))?;
    drop(yard_mount);
    for &index in &plan.create_order {
        let mount = &plan.mounts[index];
        let name = plan.describe(index);
        let made;
        let fd = match &mount.source {
            Source::Root(_) | Source::Host { .. } => prepared.get(index).ok_or_else(|| MountError::refused(format!("{name}: its source was not opened")))?,
            Source::Bind { from, rel } => {
                let source = if rel.is_empty() { place(&yard, plan, *from) } else { place(&yard, plan, *from).join(rel) };
                made = mnt::clone_tree(&source).map_err(mount_io(format!("{name}: clone {} (bind of {}): open_tree", rel_or_root(rel), plan.describe(*from))))?;
                &made
            }
            Source::Fs(fs) => {
                made = new_filesystem(&name, fs, archives)?;
                &made
            }
        };
        mnt::set_mount_attributes(fd, mount.set, mount.clear)
            .map_err(mount_io(format!("{name}: set its flags (mount_setattr set {:#x} clear {:#x})", mount.set, mount.clear)))?;
        let dir = nix::sys::stat::fstat(fd.as_fd()).map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR).map_err(|e| MountError::Io {
            what: format!("{name}: stat its root"),
            source: std::io::Error::from_raw_os_error(e as i32),
        })?;
        let at = place(&yard, plan, index);
        if matches!(mount.source, Source::Root(_)) && !dir {
            return Err(MountError::refused(format!("{name}: --root {} is not a directory", plan.root_dir.display())));
        }
        make_mountpoint(&at, dir).map_err(mount_io(format!("{name}: make its place {} in the yard", at.display())))?;
        mnt::attach(fd, &at).map_err(mount_io(format!("{name}: attach at {} (move_mount)", at.display())))?;
    }
    for number in prepared.numbers() {
        sys::close_fd(number);
    }
    let tree = yard.join("root");
    // Each mount's root, held once it is in the tree (a later mount may cover its path).
    let mut held: Vec<Option<OwnedFd>> = (0..plan.mounts.len()).map(|_| None).collect();
    let hold = |path: &Path, name: &str| -> Result<OwnedFd, MountError> {
        rustix::fs::open(path, rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .map_err(|e| MountError::Io { what: format!("{name}: open its root in the tree"), source: std::io::Error::from_raw_os_error(e.raw_os_error()) })
    };
    for &index in &plan.place_order {
        let name = plan.describe(index);
        if plan.mounts[index].parent.is_none() {
            held[index] = Some(hold(&tree, &name)?);
            continue;
        }
        let from = place(&yard, plan, index);
        let target = tree.join(plan.mounts[index].mountpoint.trim_start_matches('/'));
        let dir = fs::metadata(&from).map(|m| m.is_dir()).map_err(mount_io(format!("{name}: stat {}", from.display())))?;
        make_mountpoint(&target, dir).map_err(mount_io(format!("{name}: make its mountpoint {}", plan.mounts[index].mountpoint)))?;
        mnt::move_attached(&from, &target).map_err(mount_io(format!("{name}: move into the tree (move_mount)")))?;
        held[index] = Some(hold(&target, &name)?);
    }
    // Propagation once the whole tree is there: set earlier, placing the later mounts
    // would propagate copies of them.
    let root_of = |index: usize| held[index].as_ref().expect("every mount was placed");
    for step in &plan.propagation {
        let done = match *step {
            Propagation::Shared(index) => mnt::set_propagation(root_of(index), mnt::PROPAGATION_SHARED).map_err(mount_io(format!("{}: make it shared (mount_setattr)", plan.describe(index)))),
            Propagation::Slave(index) => mnt::set_propagation(root_of(index), mnt::PROPAGATION_SLAVE).map_err(mount_io(format!("{}: make it a slave (mount_setattr)", plan.describe(index)))),
            Propagation::Unbindable(index) => {
                mnt::set_propagation(root_of(index), mnt::PROPAGATION_UNBINDABLE).map_err(mount_io(format!("{}: make it unbindable (mount_setattr)", plan.describe(index))))
            }
            Propagation::SetGroup { from, to } => mnt::join_peer_group(root_of(from), root_of(to))
                .map_err(mount_io(format!("{}: join the peer group of {} (move_mount MOVE_MOUNT_SET_GROUP)", plan.describe(to), plan.describe(from)))),
        };
        done?;
    }
    log::debug!("mount namespace of {}: {} mounts assembled under {}", plan.image, plan.mounts.len(), tree.display());
    Ok(tree)
}

/// A new detached mount of a kernel filesystem (in the calling task's namespaces), a
/// tmpfs filled from its archive (read from the working directory, the images
/// directory), its superblock made read-only if it was; the directory `fs.rel` of it
/// when that is the mount's root.
fn new_filesystem(name: &str, fs: &NewFs, archives: &BTreeMap<String, fs::File>) -> Result<OwnedFd, MountError> {
    // A read-only superblock without contents to put in is made read-only at once: in a
    // user namespace, making a sysfs read-only afterwards is refused (EPERM).
    let read_only_now = fs.read_only && fs.archive.is_none();
    let mut options = fs.options.clone();
    if read_only_now {
        options.push(("ro".to_string(), None));
    }
    let made = mnt::new_mount(&fs.fstype, &fs.source, &options)
        .map_err(|(step, source)| MountError::Io { what: format!("{name}: mount a new {} ({step})", fs.fstype), source })?;
    if let Some(archive) = &fs.archive {
        let mut file = archives.get(archive).ok_or_else(|| MountError::refused(format!("{name}: {archive} was not opened")))?;
        // Binds of one tmpfs share its archive: each extraction reads it whole.
        std::io::Seek::rewind(&mut file).map_err(mount_io(format!("{name}: rewind {archive}")))?;
        let entries = super::tmpfs::extract(made.as_fd(), archive, name, std::io::BufReader::new(file))?;
        log::debug!("{name}: {entries} files and directories from {archive}");
    }
    if fs.read_only && !read_only_now {
        mnt::make_superblock_readonly(&made).map_err(mount_io(format!("{name}: make its {} read-only (fspick, fsconfig ro)", fs.fstype)))?;
    }
    if fs.rel.is_empty() {
        return Ok(made);
    }
    mnt::clone_below(&made, &fs.rel).map_err(mount_io(format!("{name}: clone /{} of the new {} (open_tree)", fs.rel, fs.fstype)))
}

fn rel_or_root(rel: &str) -> String {
    if rel.is_empty() {
        "its root".into()
    } else {
        format!("/{rel}")
    }
}

/// `target` as a path relative to the directory `base` (both absolute and canonical):
/// the tree's processes, chrooted into the tree, reach the dump's files (pages images,
/// also of parent dumps) by such paths from their working directory, the images
/// directory.
pub(crate) fn path_from(base: &Path, target: &Path) -> PathBuf {
    let base: Vec<_> = base.components().collect();
    let target: Vec<_> = target.components().collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for part in &target[common..] {
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Once every process of the tree has opened its files: in a thread of crust that
/// enters the namespace of `root_pid` (the restored root, on this host), makes the
/// tree the namespace's root (`pivot_root`) and detaches the old root and the yard.
pub(crate) fn finish_namespace(root_pid: i32, plan: &MountPlan) -> Result<(), MountError> {
    let ns_path = format!("/proc/{root_pid}/ns/mnt");
    let ns = fs::File::open(&ns_path).map_err(mount_io(format!("open {ns_path}")))?;
    let tree = plan.root_dir.join("root");
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(), MountError> {
                mnt::enter_mount_namespace(&ns).map_err(mount_io(format!("enter the mount namespace of pid {root_pid} (setns)")))?;
                std::env::set_current_dir(&tree).map_err(mount_io(format!("chdir {} in the new mount namespace", tree.display())))?;
                mnt::pivot_root(Path::new("."), Path::new(".")).map_err(mount_io("make the tree the namespace's root (pivot_root)"))?;
                mnt::detach(Path::new(".")).map_err(mount_io("detach the old root (umount2 MNT_DETACH)"))
            })
            .join()
            .unwrap_or_else(|_| Err(MountError::refused("the thread that pivots the mount namespace panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_images_directory() {
        let images = Path::new("/work/img/2");
        assert_eq!(path_from(images, Path::new("/work/img/2/pages-1.img")), Path::new("pages-1.img"));
        assert_eq!(path_from(images, Path::new("/work/img/1/pages-3.img")), Path::new("../1/pages-3.img"));
        assert_eq!(path_from(images, Path::new("/elsewhere/pages-1.img")), Path::new("../../../elsewhere/pages-1.img"));
        assert_eq!(path_from(images, images), Path::new("."));
    }
}
