//! Namespace and kernel-object ids as CRIU numbers them, so that `ids-PID.img` and
//! `inventory.root_ids` mean the same to CRIU and to crust.
//!
//! - Namespace ids share one counter over all eight kinds. The dumping tool's own
//!   namespaces come first, 1..8 in CRIU's kind order (pid, net, ipc, uts, time, mnt,
//!   user, cgroup); every namespace of the tree that is not one of them gets the next
//!   number, 9, 10, ..., met in pstree order, kinds in the same order.
//! - Kernel-object ids (mm, fd table, fs, signal handlers): the dumping tool's own are 1,
//!   the tree's processes get 2, 3, ... in pstree order (crust does not dump processes
//!   that share one of these without being threads, so each process has its own).
//! - `inventory.root_ids` holds the dumping tool's own ids. A task id equal to the
//!   root id of its kind means "the namespace the dumping tool ran in"; restore then
//!   leaves the task in the namespace the restoring tool runs in. A different id means
//!   a namespace of the tree's own.
//!
//! Invariant: the numbering and the "own namespace" rule are pure; only
//! [`read_inodes`] looks at /proc.

use crust_images::pb;

/// A namespace kind, in CRIU's numbering order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NsKind {
    Pid,
    Net,
    Ipc,
    Uts,
    Time,
    Mnt,
    User,
    Cgroup,
}

impl NsKind {
    /// Every kind, in the order CRIU numbers them.
    pub(crate) const ALL: [NsKind; 8] =
        [NsKind::Pid, NsKind::Net, NsKind::Ipc, NsKind::Uts, NsKind::Time, NsKind::Mnt, NsKind::User, NsKind::Cgroup];

    /// The name of its link under /proc/PID/ns/.
    pub(crate) fn proc_name(self) -> &'static str {
        match self {
            NsKind::Pid => "pid",
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Time => "time",
            NsKind::Mnt => "mnt",
            NsKind::User => "user",
            NsKind::Cgroup => "cgroup",
        }
    }

    /// How errors and logs name it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            NsKind::Pid => "a pid namespace",
            NsKind::Net => "a network namespace",
            NsKind::Ipc => "an IPC namespace",
            NsKind::Uts => "a UTS namespace",
            NsKind::Time => "a time namespace",
            NsKind::Mnt => "a mount namespace",
            NsKind::User => "a user namespace",
            NsKind::Cgroup => "a cgroup namespace",
        }
    }

    /// The field of `ids` for this kind (`task_kobj_ids_entry.pid_ns_id`, ...).
    pub(crate) fn id(self, ids: &pb::TaskKobjIdsEntry) -> Option<u32> {
        match self {
            NsKind::Pid => ids.pid_ns_id,
            NsKind::Net => ids.net_ns_id,
            NsKind::Ipc => ids.ipc_ns_id,
            NsKind::Uts => ids.uts_ns_id,
            NsKind::Time => ids.time_ns_id,
            NsKind::Mnt => ids.mnt_ns_id,
            NsKind::User => ids.user_ns_id,
            NsKind::Cgroup => ids.cgroup_ns_id,
        }
    }

    fn set(self, ids: &mut pb::TaskKobjIdsEntry, id: Option<u32>) {
        let field = match self {
            NsKind::Pid => &mut ids.pid_ns_id,
            NsKind::Net => &mut ids.net_ns_id,
            NsKind::Ipc => &mut ids.ipc_ns_id,
            NsKind::Uts => &mut ids.uts_ns_id,
            NsKind::Time => &mut ids.time_ns_id,
            NsKind::Mnt => &mut ids.mnt_ns_id,
            NsKind::User => &mut ids.user_ns_id,
            NsKind::Cgroup => &mut ids.cgroup_ns_id,
        };
        *field = id;
    }

    /// The image field's name, for errors.
    pub(crate) fn field(self) -> &'static str {
        match self {
            NsKind::Pid => "pid_ns_id",
            NsKind::Net => "net_ns_id",
            NsKind::Ipc => "ipc_ns_id",
            NsKind::Uts => "uts_ns_id",
            NsKind::Time => "time_ns_id",
            NsKind::Mnt => "mnt_ns_id",
            NsKind::User => "user_ns_id",
            NsKind::Cgroup => "cgroup_ns_id",
        }
    }
}

/// The namespaces of one process: the inode of each kind's /proc/PID/ns link, in
/// [`NsKind::ALL`] order (`None`: this kernel has no such link).
pub(crate) type NsInodes = [Option<u64>; 8];

/// The inode of `kind` in `inodes`.
pub(crate) fn inode_of(inodes: &NsInodes, kind: NsKind) -> Option<u64> {
    NsKind::ALL.iter().position(|&k| k == kind).and_then(|index| inodes[index])
}

/// Reads the namespace inodes of `pid` (`"self"` for crust itself).
pub(crate) fn read_inodes(pid: &str) -> NsInodes {
    let mut inodes = [None; 8];
    for (slot, kind) in inodes.iter_mut().zip(NsKind::ALL) {
        *slot = read_link_inode(pid, kind.proc_name());
    }
    inodes
}

/// The inode of `pid`'s /proc/PID/ns/`name` link (`None`: no such link, or unreadable).
pub(crate) fn read_link_inode(pid: &str, name: &str) -> Option<u64> {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}")).ok().and_then(|link| parse_ns_link(&link.to_string_lossy()))
}

/// The inode of a namespace link's text (`ipc:[4026531839]`).
pub(crate) fn parse_ns_link(text: &str) -> Option<u64> {
    text.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// The ids of a dump: the dumping tool's own (`inventory.root_ids`) and each live
/// process's, in the order the processes were given.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TreeIds {
    pub(crate) root: pb::TaskKobjIdsEntry,
    pub(crate) processes: Vec<pb::TaskKobjIdsEntry>,
}

/// Numbers the namespaces of `processes` (pstree order, live processes only) against
/// the dumping tool's own (`own`), and gives each process its kernel-object ids. Pure.
pub(crate) fn number(own: &NsInodes, processes: &[NsInodes]) -> TreeIds {
    let mut root = pb::TaskKobjIdsEntry { vm_id: 1, files_id: 1, fs_id: 1, sighand_id: 1, ..Default::default() };
    // (kind index, inode) -> id; the tool's own first.
    let mut known: Vec<((usize, u64), u32)> = Vec::new();
    for (index, kind) in NsKind::ALL.into_iter().enumerate() {
        let id = index as u32 + 1;
        if let Some(inode) = own[index] {
            known.push(((index, inode), id));
        }
        kind.set(&mut root, own[index].map(|_| id));
    }
    let mut next = NsKind::ALL.len() as u32 + 1;
    let mut out = Vec::with_capacity(processes.len());
    for (position, inodes) in processes.iter().enumerate() {
        let object_id = position as u32 + 2;
        let mut ids = pb::TaskKobjIdsEntry { vm_id: object_id, files_id: object_id, fs_id: object_id, sighand_id: object_id, ..Default::default() };
        for (index, kind) in NsKind::ALL.into_iter().enumerate() {
            let id = inodes[index].map(|inode| match known.iter().find(|(key, _)| *key == (index, inode)) {
                Some(&(_, id)) => id,
                None => {
                    let id = next;
                    next += 1;
                    known.push(((index, inode), id));
                    id
                }
            });
            kind.set(&mut ids, id);
        }
        out.push(ids);
    }
    TreeIds { root, processes: out }
}

/// How to tell a namespace of the tree's own in a dump's ids.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OwnRule<'a> {
    root_ids: Option<&'a pb::TaskKobjIdsEntry>,
    /// Images of crust before 2026-12-06: `root_ids` were the root task's own ids, and
    /// any namespace id present meant a namespace of the tree's own.
    legacy: bool,
}

impl<'a> OwnRule<'a> {
    /// The rule for a dump whose inventory holds `root_ids` and whose root process has
    /// `root_task`'s ids.
    pub(crate) fn new(root_ids: Option<&'a pb::TaskKobjIdsEntry>, root_task: &pb::TaskKobjIdsEntry) -> OwnRule<'a> {
        // CRIU refuses a root task whose files id is the tool's own ("Image corruption
        // on kIDs data"), so equal ids can only be crust's older layout.
        let legacy = root_ids.is_some_and(|r| r.files_id == root_task.files_id && r.vm_id == root_task.vm_id);
        OwnRule { root_ids, legacy }
    }

    /// The id of the namespace of `kind` that `ids` name, when it is not the one the
    /// dumping tool ran in.
    pub(crate) fn own(&self, kind: NsKind, ids: &pb::TaskKobjIdsEntry) -> Option<u32> {
        let id = kind.id(ids)?;
        if self.legacy {
            return Some(id);
        }
        match self.root_ids.and_then(|r| kind.id(r)) {
            Some(root) if root == id => None,
            // No id of the tool's for this kind: nothing says the namespace is shared.
            _ => Some(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: NsInodes = [Some(10), Some(20), Some(30), Some(40), Some(50), Some(60), Some(70), Some(80)];

    #[test]
    fn a_tree_in_crusts_namespaces_carries_crusts_ids() {
        let ids = number(&HOST, &[HOST, HOST]);
        let own = |ids: &pb::TaskKobjIdsEntry| NsKind::ALL.map(|k| k.id(ids));
        assert_eq!(own(&ids.root), [1, 2, 3, 4, 5, 6, 7, 8].map(Some));
        assert_eq!(ids.root.files_id, 1);
        for (index, process) in ids.processes.iter().enumerate() {
            assert_eq!(own(process), own(&ids.root));
            assert_eq!([process.vm_id, process.files_id, process.fs_id, process.sighand_id], [index as u32 + 2; 4]);
        }
    }

    #[test]
    fn other_namespaces_are_numbered_from_9_in_tree_then_kind_order() {
        // As CRIU numbered `unshare -u -i`: ipc 9, uts 10; then a child in a pid
        // namespace of its own gets 11.
        let mut root = HOST;
        root[2] = Some(31);
        root[3] = Some(41);
        let mut child = root;
        child[0] = Some(11);
        let ids = number(&HOST, &[root, child, root]);
        assert_eq!(ids.processes[0].ipc_ns_id, Some(9));
        assert_eq!(ids.processes[0].uts_ns_id, Some(10));
        assert_eq!(ids.processes[0].pid_ns_id, Some(1));
        assert_eq!(ids.processes[1].pid_ns_id, Some(11));
        assert_eq!(ids.processes[1].ipc_ns_id, Some(9));
        assert_eq!(ids.processes[2], pb::TaskKobjIdsEntry { vm_id: 4, files_id: 4, fs_id: 4, sighand_id: 4, ..ids.processes[0] });
    }

    #[test]
    fn a_kind_the_kernel_lacks_has_no_id() {
        let mut old = HOST;
        old[4] = None;
        let ids = number(&old, &[old]);
        assert_eq!(ids.root.time_ns_id, None);
        assert_eq!(ids.processes[0].time_ns_id, None);
        assert_eq!(ids.root.mnt_ns_id, Some(6));
    }

    #[test]
    fn own_namespaces_are_those_that_differ_from_the_root_ids() {
        let ids = number(&HOST, &[{
            let mut p = HOST;
            p[0] = Some(99);
            p
        }]);
        let rule = OwnRule::new(Some(&ids.root), &ids.processes[0]);
        assert_eq!(rule.own(NsKind::Pid, &ids.processes[0]), Some(9));
        assert_eq!(rule.own(NsKind::Ipc, &ids.processes[0]), None);
        // crust's images before 2026-12-06: root_ids = the root task's, pid ns 1 = own.
        let legacy_task = pb::TaskKobjIdsEntry { vm_id: 1, files_id: 1, fs_id: 1, sighand_id: 1, pid_ns_id: Some(1), ..Default::default() };
        let rule = OwnRule::new(Some(&legacy_task), &legacy_task);
        assert_eq!(rule.own(NsKind::Pid, &legacy_task), Some(1));
        assert_eq!(rule.own(NsKind::Net, &legacy_task), None);
        // No root ids at all: an id present is the tree's own.
        assert_eq!(OwnRule::new(None, &legacy_task).own(NsKind::Pid, &legacy_task), Some(1));
    }

    #[test]
    fn ns_links_parse() {
        assert_eq!(parse_ns_link("ipc:[4026531839]"), Some(4026531839));
        assert_eq!(parse_ns_link("ipc:4026531839"), None);
    }
}
