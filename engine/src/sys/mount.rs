//! Mount calls: the new mount API (open_tree, move_mount, fsopen/fsconfig/fsmount)
//! through rustix, which has safe functions for them; `mount_setattr`, which neither
//! rustix nor nix has, raw; mount propagation, pivot_root, umount2, chroot, setns and
//! unshare through nix.
//!
//! Every function works on the calling thread's mount namespace (a detached mount made
//! by `clone_tree` belongs to no namespace until `attach` puts it in the caller's).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};

use super::check;

/// `MOUNT_ATTR_*` bits of `mount_setattr`'s `struct mount_attr` (linux/mount.h).
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The atime mode's bits: clear them to set one of the three modes.
pub(crate) const MOUNT_ATTR_ATIME: u64 = 0x70;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

fn os(error: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(error.raw_os_error())
}

fn nix_os(error: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(error as i32)
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)`: a detached copy of
/// the mount at `path` with that directory (or file) as its root, without the mounts
/// below it. `path` must be in the caller's mount namespace.
#[doc(alias = "open_tree")]
pub(crate) fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    rustix::mount::open_tree(rustix::fs::CWD, path, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC).map_err(os)
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attaches the
/// detached mount `fd` at `target` in the caller's mount namespace.
#[doc(alias = "move_mount")]
pub(crate) fn attach(mount: impl AsFd, target: &Path) -> io::Result<()> {
    rustix::mount::move_mount(mount, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).map_err(os)
}

/// `move_mount(AT_FDCWD, from, AT_FDCWD, to, 0)`: moves the mount at `from` (and what
/// is mounted below it) to `to`.
#[doc(alias = "move_mount")]
pub(crate) fn move_attached(from: &Path, to: &Path) -> io::Result<()> {
    rustix::mount::move_mount(rustix::fs::CWD, from, rustix::fs::CWD, to, MoveMountFlags::empty()).map_err(os)
}

/// `fsopen("tmpfs")`, `fsconfig(SET_STRING key value)` for each option,
/// `fsconfig(CMD_CREATE)`, `fsmount`: a new detached tmpfs.
#[doc(alias = "fsopen")]
#[doc(alias = "fsmount")]
pub(crate) fn new_tmpfs(options: &[(&str, &str)]) -> io::Result<OwnedFd> {
    let context = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(os)?;
    for (key, value) in options {
        rustix::mount::fsconfig_set_string(&context, *key, *value).map_err(os)?;
    }
    rustix::mount::fsconfig_create(&context).map_err(os)?;
    rustix::mount::fsmount(&context, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).map_err(os)
}

/// `fsopen(fstype)`, `fsconfig(SET_STRING "source" source)`, one `fsconfig` per option
/// (`SET_STRING key value`, or `SET_FLAG key` for one without a value),
/// `fsconfig(CMD_CREATE)`, `fsmount`: a new detached mount of a new (or, for kinds that
/// share one per namespace, the namespace's) superblock, as the calling task's
/// namespaces make it (proc its pid namespace's, sysfs its network namespace's).
#[doc(alias = "fsopen")]
#[doc(alias = "fsconfig")]
#[doc(alias = "fsmount")]
pub(crate) fn new_mount(fstype: &str, source: &str, options: &[(String, Option<String>)]) -> Result<OwnedFd, (String, io::Error)> {
    let step = |what: String| move |e: rustix::io::Errno| (what, os(e));
    let context = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(step(format!("fsopen {fstype}")))?;
    if !source.is_empty() {
        rustix::mount::fsconfig_set_string(&context, "source", source).map_err(step(format!("fsconfig source={source}")))?;
    }
    for (key, value) in options {
        match value {
            Some(value) => rustix::mount::fsconfig_set_string(&context, key.as_str(), value.as_str()).map_err(step(format!("fsconfig {key}={value}")))?,
            None => rustix::mount::fsconfig_set_flag(&context, key.as_str()).map_err(step(format!("fsconfig {key}")))?,
        }
    }
    rustix::mount::fsconfig_create(&context).map_err(step("fsconfig create".into()))?;
    rustix::mount::fsmount(&context, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).map_err(step("fsmount".into()))
}

/// `fspick(fd, "", FSPICK_EMPTY_PATH)`, `fsconfig(SET_FLAG "ro")`,
/// `fsconfig(CMD_RECONFIGURE)`: makes the superblock of the mount `fd` read-only (the
/// mount's own flags stay).
#[doc(alias = "fspick")]
pub(crate) fn make_superblock_readonly(mount: impl AsFd) -> io::Result<()> {
    let context = rustix::mount::fspick(mount, "", rustix::mount::FsPickFlags::FSPICK_EMPTY_PATH | rustix::mount::FsPickFlags::FSPICK_CLOEXEC).map_err(os)?;
    rustix::mount::fsconfig_set_flag(&context, "ro").map_err(os)?;
    rustix::mount::fsconfig_reconfigure(&context).map_err(os)
}

/// `open_tree(fd, rel, OPEN_TREE_CLONE)` (`AT_EMPTY_PATH` for an empty `rel`): a
/// detached copy of the mount `fd` (attached or detached) with its directory or file
/// `rel` as the root.
#[doc(alias = "open_tree")]
pub(crate) fn clone_below(mount: impl AsFd, rel: &str) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if rel.is_empty() {
        flags |= OpenTreeFlags::AT_EMPTY_PATH;
    }
    rustix::mount::open_tree(mount, rel, flags).map_err(os)
}

/// The kernel's `struct mount_attr` (MOUNT_ATTR_SIZE_VER0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {set, clear})`: sets and clears `MOUNT_ATTR_*`
/// bits of the mount `fd` (attached or detached), that mount alone.
#[doc(alias = "mount_setattr")]
pub(crate) fn set_mount_attributes(mount: impl AsFd, set: u64, clear: u64) -> io::Result<()> {
    mount_setattr(mount, &MountAttr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 })
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, attr)` on the mount `fd` alone.
fn mount_setattr(mount: impl AsFd, attr: &MountAttr) -> io::Result<()> {
    // SAFETY: the path is a NUL-terminated empty string and `attr` a live struct of the
    // size passed; the kernel only reads both.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_fd().as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

/// Propagation types of `struct mount_attr`'s `propagation` (MS_* values).
pub(crate) const PROPAGATION_UNBINDABLE: u64 = 1 << 17;
pub(crate) const PROPAGATION_SLAVE: u64 = 1 << 19;
pub(crate) const PROPAGATION_SHARED: u64 = 1 << 20;

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {propagation})`: makes the mount `fd` shared
/// (a new peer group), a slave, or unbindable (`PROPAGATION_*`), that mount alone.
#[doc(alias = "mount_setattr")]
pub(crate) fn set_propagation(mount: impl AsFd, propagation: u64) -> io::Result<()> {
    mount_setattr(mount, &MountAttr { attr_set: 0, attr_clr: 0, propagation, userns_fd: 0 })
}

/// `move_mount(from, "", to, "", MOVE_MOUNT_SET_GROUP | F_EMPTY_PATH | T_EMPTY_PATH)`:
/// the private mount `to` joins the peer group (and master) of `from`, a mount of the
/// same superblock whose root holds `to`'s.
#[doc(alias = "move_mount")]
pub(crate) fn join_peer_group(from: impl AsFd, to: impl AsFd) -> io::Result<()> {
    rustix::mount::move_mount(
        from,
        "",
        to,
        "",
        MoveMountFlags::MOVE_MOUNT_SET_GROUP | MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(os)
}

/// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)`: nothing mounted in the caller's
/// namespace from here on propagates anywhere else, nor the other way.
#[doc(alias = "mount")]
pub(crate) fn make_private_recursive(path: &Path) -> io::Result<()> {
    nix::mount::mount(None::<&str>, path, None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(nix_os)
}

/// `pivot_root(new_root, put_old)`.
pub(crate) fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    nix::unistd::pivot_root(new_root, put_old).map_err(nix_os)
}

/// `umount2(path, MNT_DETACH)`: detaches the mount at `path` and everything below it.
#[doc(alias = "umount2")]
pub(crate) fn detach(path: &Path) -> io::Result<()> {
    nix::mount::umount2(path, MntFlags::MNT_DETACH).map_err(nix_os)
}

/// `unshare(CLONE_FS)` then `setns(fd, CLONE_NEWNS)`: the calling thread (which must
/// not share its fs_struct afterwards, so a thread of its own) enters the mount
/// namespace `ns`; its root and working directory become that namespace's root.
#[doc(alias = "setns")]
pub(crate) fn enter_mount_namespace(ns: impl AsFd) -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(nix_os)?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(nix_os)
}

/// `unshare(CLONE_NEWNS)`: the calling thread (which must not share its fs_struct)
/// gets a copy of its mount namespace of its own.
#[doc(alias = "unshare")]
pub(crate) fn new_mount_namespace() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(nix_os)
}

