//! The namespaces stage of a dump, right after the seize: which namespaces the tree
//! has of its own, compared with crust's. A mount namespace (`mounts/`) and a UTS
//! namespace (`uts.rs`) of its own are dumped; network, user, cgroup and time
//! namespaces of its own are refused in one line until crust dumps them, as are
//! processes of one tree in different mount or UTS namespaces. (pid and IPC
//! namespaces are the seize's and `ipc/`'s.)

use std::path::Path;

use crate::dump::freeze::Frozen;
use crate::files::MountView;
use crate::mounts::{DumpMountOptions, DumpedMounts, MountError};
use crate::uts::UtsError;

/// Why the namespaces of the tree cannot be dumped.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("dump pid {pid}: {what}")]
    Refused { pid: i32, what: String },
    #[error("dump pid {pid}: mount namespace: {source}")]
    Mounts { pid: i32, source: MountError },
    #[error("dump pid {pid}: UTS namespace: {source}")]
    Uts { pid: i32, source: UtsError },
}

/// The kinds of /proc/PID/ns, in CRIU's numbering order (ids 1..8 are the dumping
/// tool's own, in this order; `inventory.root_ids`).
const KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "time", "mnt", "user", "cgroup"];
pub(crate) const UTS: usize = 3;
pub(crate) const MNT: usize = 5;

/// The id of the dumping tool's own namespace of kind `kind` (index into `KINDS`): 1..8.
pub(crate) const fn dumper_id(kind: usize) -> u32 {
    kind as u32 + 1
}

/// The namespaces of the tree that the dump takes along.
pub(crate) struct TreeNamespaces {
    /// The tree's own mount namespace, read and classified.
    pub(crate) mounts: Option<DumpedMounts>,
    /// The id of the tree's own UTS namespace.
    pub(crate) uts_id: Option<u32>,
    /// The host pid of the tree's root.
    root: i32,
}

impl TreeNamespaces {
    /// How the files stage reaches and checks the tree's files: through the
    /// namespace's root, on its dumped mounts.
    pub(crate) fn mount_view(&self) -> Option<MountView> {
        self.mounts.as_ref().map(|m| MountView { root: m.view_root.clone(), mounts: m.mount_ids() })
    }

    /// `ids-PID.img`'s `mnt_ns_id` and `uts_ns_id` for every process of the tree.
    pub(crate) fn ids(&self) -> (Option<u32>, Option<u32>) {
        (self.mounts.as_ref().map(|m| m.ns_id), self.uts_id)
    }

    /// Writes `mountpoints-<id>.img` and `utsns-<id>.img`.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), NamespaceError> {
        let pid = self.root;
        if let Some(mounts) = &self.mounts {
            crate::mounts::write_image(dir, mounts).map_err(|source| NamespaceError::Mounts { pid, source })?;
            log::info!("mount namespace {}: {} mounts ({} skipped)", mounts.ns_id, mounts.entries.len(), mounts.skipped.len());
        }
        if let Some(id) = self.uts_id {
            let entry = crate::uts::dump(pid, dir, id).map_err(|source| NamespaceError::Uts { pid, source })?;
            log::info!("UTS namespace {id}: host name {:?}, domain name {:?}", entry.nodename, entry.domainname);
        }
        Ok(())
    }
}

/// The namespace ids of a process (`None`: no such link on this kernel).
fn inodes(pid: &str) -> [Option<String>; 8] {
    KINDS.map(|kind| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok().map(|l| l.to_string_lossy().into_owned()))
}

/// The ids CRIU gives the tree's namespaces when each kind has at most one of the
/// tree's own (`own[kind]`): the dumping tool's are 1..8, the tree's own ones 9, 10,
/// ... in kind order. Only the mount and UTS ids are used from here; the tool's own
/// numbering of every kind replaces this once it lands (`ns::number`).
pub(crate) fn own_namespace_ids(own: [bool; 8]) -> [Option<u32>; 8] {
    let mut next = 9;
    own.map(|own| {
        own.then(|| {
            next += 1;
            next - 1
        })
    })
}

/// Compares the namespaces of every live process of `frozen` with crust's: refuses the
/// kinds crust does not dump yet, and reads the tree's mount namespace (the dump stops
/// here if a mount cannot be taken).
pub(crate) fn collect(frozen: &Frozen, options: &DumpMountOptions) -> Result<TreeNamespaces, NamespaceError> {
    let live: Vec<i32> = frozen.processes.iter().filter(|p| !p.is_zombie()).map(|p| p.proc_pid()).collect();
    let root = live.first().copied().unwrap_or(frozen.processes[0].proc_pid());
    let own_links = inodes("self");
    let root_links = inodes(&root.to_string());
    for &pid in &live {
        let links = inodes(&pid.to_string());
        for (index, kind) in KINDS.iter().enumerate() {
            let (mine, theirs, roots) = (&own_links[index], &links[index], &root_links[index]);
            let describe = match *kind {
                "net" => "a network namespace",
                "user" => "a user namespace",
                "cgroup" => "a cgroup namespace",
                "time" => "a time namespace",
                "mnt" => "a mount namespace",
                "uts" => "a UTS namespace",
                _ => continue,
            };
            if matches!(*kind, "net" | "user" | "cgroup" | "time") && theirs != mine {
                return Err(NamespaceError::Refused { pid, what: format!("{describe} of its own ({}) is not supported yet", theirs.as_deref().unwrap_or("?")) });
            }
            if theirs != roots {
                return Err(NamespaceError::Refused {
                    pid,
                    what: format!("{describe} other than the tree root's ({} here, {} in the root): not supported yet", theirs.as_deref().unwrap_or("?"), roots.as_deref().unwrap_or("?")),
                });
            }
        }
    }
    let own: [bool; 8] = std::array::from_fn(|i| root_links[i].is_some() && root_links[i] != own_links[i]);
    let ids = own_namespace_ids(own);
    let mounts = match ids[MNT] {
        Some(id) => Some(crate::mounts::collect(root, id, options).map_err(|source| NamespaceError::Mounts { pid: root, source })?),
        None => {
            if options != &DumpMountOptions::default() {
                log::warn!("dump pid {root}: the tree shares crust's mount namespace: --external mnt[...], --ext-mount-map and --skip-mnt do not apply");
            }
            None
        }
    };
    Ok(TreeNamespaces { mounts, uts_id: ids[UTS], root })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespaces_are_numbered_from_9_in_kind_order() {
        // pid, ipc, uts and mnt of its own (the ns flavor plus mount and UTS).
        let own = [true, false, true, true, false, true, false, false];
        assert_eq!(own_namespace_ids(own), [Some(9), None, Some(10), Some(11), None, Some(12), None, None]);
        // Mount and UTS only: as CRIU numbered `unshare -m -u` (uts 9, mnt 10).
        let own = [false, false, false, true, false, true, false, false];
        assert_eq!(own_namespace_ids(own)[UTS], Some(9));
        assert_eq!(own_namespace_ids(own)[MNT], Some(10));
        // And crust's own, which inventory.root_ids names: uts 4, mnt 6.
        assert_eq!((dumper_id(UTS), dumper_id(MNT)), (4, 6));
    }
}
