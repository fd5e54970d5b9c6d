//! Mount namespaces, a subsystem with its dump half and its restore half:
//! - `mountinfo` (pure): /proc/PID/mountinfo into [`mountinfo::MountInfo`]s, in file
//!   order, with the MS_* flags CRIU's `mnt_entry` keeps;
//! - `classify` (pure): what each mount is (the root, a bind of another mount of the
//!   tree, an external mount, skipped) or why crust refuses it, in one line naming it;
//! - dump (`dump.rs`): the tree's mountinfo classified into `mountpoints-<id>.img`
//!   (CRIU's `mnt_entry`s, in reverse file order, as CRIU writes them);
//! - `plan` (pure): the image and the restore's options into a [`plan::MountPlan`]:
//!   which host directory each mount comes from and in which order it is made and
//!   placed;
//! - restore (`restore.rs`): crust opens the root and external sources as detached
//!   clones before the tree's root is forked; the root, in its new mount namespace,
//!   builds the tree in a yard with the new mount API and chroots into it; once every
//!   process of the tree has opened its files, crust pivots the namespace into the tree
//!   and drops the old root.
//!
//! - `tmpfs` (`tmpfs.rs`): a tmpfs's files as CRIU's `tmpfs-dev-<s_dev>.tar.gz.img`,
//!   archived from a clone of the mount and extracted into the new one, by fd.
//!
//! What is covered: the root, binds (of directories and single files) of the root, of
//! external sources and of kernel filesystems, and new mounts of proc, sysfs, tmpfs
//! (with its files), devpts, mqueue, cgroup and cgroup2, made by the restored root in
//! the tree's pid, network, IPC and cgroup namespaces (one per superblock, the other
//! mounts of a superblock binds of it); overmounts; propagation (peer groups, slaves of
//! a group in the tree, unbindable), set once the whole tree is in place. Overlay and
//! other filesystems, a master or peer outside the tree and mounts of deleted files are
//! refused at dump, naming the mount.
//!
//! Invariant: imports no pipeline; the kernel calls go through `sys/mount.rs`.

use std::io;

pub(crate) mod classify;
mod dump;
pub(crate) mod mountinfo;
pub(crate) mod plan;
mod restore;
mod tmpfs;

pub use classify::DumpMountOptions;
pub(crate) use dump::{collect, write_image, DumpedMounts};
pub use plan::RestoreMountOptions;
pub(crate) use plan::{plan_for_restore, MountPlan};
pub(crate) use restore::{finish_namespace, open_archives, path_from, prepare, setup_in_root, PreparedMounts};

/// Why the mounts of a tree could not be dumped or restored. Every message names the
/// mount, the image or the path.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `what` names the step and the path.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{source}")]
    Parse { source: crate::procfs::ParseError },
    #[error(transparent)]
    Image(#[from] crust_images::ImageError),
    /// Something crust does not dump or restore, or an image that contradicts itself.
    #[error("{what}")]
    Refused { what: String },
}

impl MountError {
    pub(crate) fn refused(what: impl Into<String>) -> MountError {
        MountError::Refused { what: what.into() }
    }
}

/// For `map_err`: step `what` failed.
pub(crate) fn mount_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> MountError {
    let what = what.into();
    move |source| MountError::Io { what, source }
}
