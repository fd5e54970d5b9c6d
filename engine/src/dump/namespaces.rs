//! The namespaces stage of a dump, each process checked before its parasite and the
//! tree's namespaces read after the parasite stage: which namespaces the tree
//! has of its own, compared with crust's. A mount namespace (`mounts/`) and a UTS
//! namespace (`uts.rs`) of its own are dumped, a cgroup namespace through the cgroup
//! sets (`cgroups/`), a user namespace of its own (`userns.rs`) when its parent is
//! crust's. A nested user namespace is refused in one line, as are processes of one
//! tree in different mount, UTS, cgroup, time or user namespaces, and a process whose
//! children would start in a time namespace other than its own (CRIU 4.2 refuses it
//! too). (pid, IPC and network namespaces are the seize's, `ipc/`'s and `net/`'s.)

use std::path::Path;

use crate::dump::freeze::Frozen;
use crate::files::MountView;
use crate::model::Collected;
use crate::mounts::{DumpMountOptions, DumpedMounts, MountError};
use crate::ns::{NsInodes, NsKind, TreeIds};
use crate::userns::IdMaps;
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
    #[error("dump pid {pid}: user namespace: {source}")]
    Userns { pid: i32, source: crate::userns::UsernsError },
}

/// The namespaces of the tree that the dump takes along.
pub(crate) struct TreeNamespaces {
    /// The tree's own mount namespace, read and classified.
    pub(crate) mounts: Option<DumpedMounts>,
    /// The id of the tree's own UTS namespace.
    pub(crate) uts_id: Option<u32>,
    /// The tree has a cgroup namespace of its own (`cgroups/`: its root is in the
    /// sets' `cgns_prefix`).
    pub(crate) cgroup_ns: bool,
    /// The tree's own user namespace: its id and maps (what crust reads of the tree in
    /// its own view goes through them into the tree's).
    pub(crate) user: Option<(u32, IdMaps)>,
    /// The host pid of the tree's root.
    root: i32,
}

impl TreeNamespaces {
    /// How the files stage reaches and checks the tree's files: through the
    /// namespace's root, on its dumped mounts.
    pub(crate) fn mount_view(&self) -> Option<MountView> {
        self.mounts.as_ref().map(|m| MountView { root: m.view_root.clone(), mounts: m.mount_ids() })
    }

    /// The maps of the tree's own user namespace, if it has one.
    pub(crate) fn id_maps(&self) -> Option<&IdMaps> {
        self.user.as_ref().map(|(_, maps)| maps)
    }

    /// Writes `mountpoints-<id>.img`, `utsns-<id>.img` and `userns-<id>.img`.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), NamespaceError> {
        let pid = self.root;
        if let Some((id, maps)) = &self.user {
            crate::userns::write(dir, *id, maps).map_err(|source| NamespaceError::Userns { pid, source })?;
            log::info!("user namespace {id}: uid_map {:?}, gid_map {:?}", crate::userns::map_text(&maps.uid), crate::userns::map_text(&maps.gid));
        }
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

/// Refuses the newest process of `collected` (what /proc told of the live processes so
/// far, the root first; `live`: their pids) before its parasite starts, where it is in a
/// mount, UTS, cgroup, time or user namespace other than the root's, which crust does not
/// dump yet, or has a time namespace for its children only. `own`: crust's namespaces.
/// Pure.
pub(crate) fn refuse_early(own: &NsInodes, live: &[i32], collected: &[Collected]) -> Result<(), NamespaceError> {
    let (Some(root), Some(newest)) = (collected.first(), collected.last()) else { return Ok(()) };
    let pid = live[collected.len() - 1];
    if let Some(what) = time_for_children_refused(crate::ns::inode_of(&newest.ns, NsKind::Time), newest.time_for_children) {
        return Err(NamespaceError::Refused { pid, what });
    }
    // Named by the ids the whole tree's numbering gives them (the same for the processes
    // so far), as the images would.
    if REFUSED_KINDS.iter().any(|&kind| crate::ns::inode_of(&newest.ns, kind) != crate::ns::inode_of(&root.ns, kind)) {
        let inodes: Vec<NsInodes> = collected.iter().map(|c| c.ns).collect();
        if let Some((pid, what)) = refused(&live[..collected.len()], &crate::ns::number(own, &inodes)) {
            return Err(NamespaceError::Refused { pid, what });
        }
    }
    Ok(())
}

/// Compares the namespaces of the tree (numbered in `ids`, `ns::number`; each process
/// was checked by [`refuse_early`] before its parasite) with crust's, and reads the
/// tree's mount namespace (the dump stops here if a mount cannot be taken).
pub(crate) fn collect(frozen: &Frozen, ids: &TreeIds, options: &DumpMountOptions) -> Result<TreeNamespaces, NamespaceError> {
    let live: Vec<i32> = frozen.processes.iter().filter(|p| !p.is_zombie()).map(|p| p.proc_pid()).collect();
    let root = live.first().copied().unwrap_or(frozen.processes[0].proc_pid());
    let own = |kind: NsKind| ids.processes.first().and_then(|first| kind.id(first)).filter(|&id| Some(id) != kind.id(&ids.root));
    let user = match own(NsKind::User) {
        Some(id) => Some((id, crate::userns::read(root).map_err(|source| NamespaceError::Userns { pid: root, source })?)),
        None => None,
    };
    let maps = user.as_ref().map(|(_, maps)| maps);
    let mounts = match own(NsKind::Mnt) {
        Some(id) => Some(crate::mounts::collect(root, id, options, maps).map_err(|source| NamespaceError::Mounts { pid: root, source })?),
        None => {
            if options != &DumpMountOptions::default() {
                log::warn!("dump pid {root}: the tree shares crust's mount namespace: --external mnt[...], --ext-mount-map and --skip-mnt do not apply");
            }
            None
        }
    };
    Ok(TreeNamespaces { mounts, uts_id: own(NsKind::Uts), cgroup_ns: own(NsKind::Cgroup).is_some(), user, root })
}

/// The kinds a tree must have one namespace of (the root's) to be dumped.
const REFUSED_KINDS: [NsKind; 5] = [NsKind::Uts, NsKind::Mnt, NsKind::Cgroup, NsKind::Time, NsKind::User];

/// The first namespace of the live processes `live` (ids in `ids.processes`, same
/// order) that crust cannot dump yet: a mount, UTS, cgroup, time or user namespace
/// other than the tree root's. Pure.
fn refused(live: &[i32], ids: &TreeIds) -> Option<(i32, String)> {
    let first = ids.processes.first()?;
    for (&pid, process) in live.iter().zip(&ids.processes) {
        for kind in REFUSED_KINDS {
            if kind.id(process) != kind.id(first) {
                let show = |id: Option<u32>| id.map_or_else(|| "none".to_string(), |id| id.to_string());
                return Some((
                    pid,
                    format!("{} other than the tree root's ({} {} here, {} in the root): not supported yet", kind.describe(), kind.field(), show(kind.id(process)), show(kind.id(first))),
                ));
            }
        }
    }
    None
}

/// Why a process whose children would start in another time namespace than its own is
/// refused: one that called unshare(CLONE_NEWTIME) and has not run execve or forked into
/// it since. No image field keeps a pending time namespace (CRIU 4.2 refuses it too:
/// "Can't dump nested time namespace"). Pure.
fn time_for_children_refused(time: Option<u64>, for_children: Option<u64>) -> Option<String> {
    match (time, for_children) {
        (Some(time), Some(for_children)) if time != for_children => Some(format!(
            "a time namespace for its children only (time_for_children {for_children} differs from time {time}: unshare(CLONE_NEWTIME) without execve) is not supported, as in CRIU 4.2"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns::number;

    const HOST: NsInodes = [Some(10), Some(20), Some(30), Some(40), Some(50), Some(60), Some(70), Some(80)];

    #[test]
    fn namespaces_of_the_trees_own_pass_processes_in_others_are_refused() {
        // pid, ipc, uts and mnt of its own (the ns flavor plus mount and UTS).
        let mut tree = HOST;
        for (index, inode) in [(0, 11), (2, 31), (3, 41), (5, 61)] {
            tree[index] = Some(inode);
        }
        assert_eq!(refused(&[100, 101], &number(&HOST, &[tree, tree])), None);
        let mut user = tree;
        user[6] = Some(71);
        assert_eq!(refused(&[100, 101], &number(&HOST, &[user, user])), None);
        let error = refused(&[100, 101], &number(&HOST, &[tree, user])).expect("user").1;
        assert_eq!(error, "a user namespace other than the tree root's (user_ns_id 13 here, 7 in the root): not supported yet");
        let error = refused(&[100, 101], &number(&HOST, &[tree, HOST])).expect("mnt").1;
        assert_eq!(error, "a UTS namespace other than the tree root's (uts_ns_id 4 here, 11 in the root): not supported yet");
    }

    #[test]
    fn each_process_is_refused_before_its_parasite_with_the_trees_ids() {
        let process = |ns: NsInodes, time_for_children: Option<u64>| Collected { ns, time_for_children, ..Default::default() };
        let mut tree = HOST;
        tree[3] = Some(41);
        let mut other_uts = tree;
        other_uts[3] = Some(42);
        let live = [100, 101, 102];
        let so_far = [process(tree, Some(50)), process(tree, Some(50))];
        assert!(refuse_early(&HOST, &live, &so_far).is_ok());
        assert!(refuse_early(&HOST, &live, &[]).is_ok());
        let with_other = [process(tree, Some(50)), process(tree, Some(50)), process(other_uts, Some(50))];
        let error = refuse_early(&HOST, &live, &with_other).unwrap_err().to_string();
        assert_eq!(error, "dump pid 102: a UTS namespace other than the tree root's (uts_ns_id 10 here, 9 in the root): not supported yet");
        let pending = [process(tree, Some(50)), process(tree, Some(51))];
        let error = refuse_early(&HOST, &live, &pending).unwrap_err().to_string();
        assert!(error.starts_with("dump pid 101: a time namespace for its children only (time_for_children 51 differs from time 50"), "{error}");
    }

    #[test]
    fn a_time_namespace_for_children_only_is_refused() {
        assert_eq!(time_for_children_refused(Some(5), Some(5)), None);
        assert_eq!(time_for_children_refused(None, None), None);
        let error = time_for_children_refused(Some(4026531834), Some(4026532174)).expect("refused");
        assert!(error.starts_with("a time namespace for its children only (time_for_children 4026532174 differs from time 4026531834"), "{error}");
    }
}
