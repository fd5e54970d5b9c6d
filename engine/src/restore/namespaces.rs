//! Which namespaces a restore makes, from the dump's ids (`ns.rs`): a namespace is the
//! tree's own when its id differs from the dumping tool's (`inventory.root_ids`), and
//! only then is a new one made. crust makes a new pid namespace (its init the tree's
//! root) and new user, IPC, network, mount, UTS, cgroup and time namespaces (every
//! process of the tree in them); a second namespace of a kind inside the tree is refused
//! here, in one line, before anything is created. Pure.

use crust_images::pb;

use crate::ns::{NsKind, OwnRule};

/// A namespace layout this restore cannot make, or a namespace whose images are
/// missing; `image` names the image.
#[derive(Debug, thiserror::Error)]
#[error("restore: {image}: {what}")]
pub(crate) struct Refused {
    pub(crate) image: String,
    pub(crate) what: String,
}

/// The namespaces the restored tree gets besides those crust runs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeNamespaces {
    /// The root is the init of a pid namespace of the tree's own.
    pub(crate) new_pid_ns: bool,
    /// The id of the tree's own IPC namespace (its images are named after it).
    pub(crate) ipc_ns_id: Option<u32>,
    /// The id of the tree's own network namespace (netns-ID.img and the others).
    pub(crate) net_ns_id: Option<u32>,
    /// The id of the tree's own mount namespace (`mountpoints-ID.img`).
    pub(crate) mnt_ns_id: Option<u32>,
    /// The id of the tree's own UTS namespace (`utsns-ID.img`).
    pub(crate) uts_ns_id: Option<u32>,
    /// The tree has a cgroup namespace of its own: the root unshares one once crust
    /// has put it in the namespace's root cgroups (cgroup.img's `cgns_prefix`).
    pub(crate) cgroup_ns: bool,
    /// The id of the tree's own time namespace (`timens-ID.img`: its clocks at dump,
    /// which the new one's offsets carry on from).
    pub(crate) time_ns_id: Option<u32>,
    /// The id of the tree's own user namespace (`userns-ID.img`: its maps), which owns
    /// every other namespace of the tree.
    pub(crate) user_ns_id: Option<u32>,
}

/// Decides the namespaces of the tree whose live processes have `processes` (pid and
/// ids, pstree order, the root first) and whose inventory holds `root_ids`;
/// `has_image(kind, id)`: whether the image of the namespace `id` of `kind` is there
/// (ipcns-var-ID.img, netns-ID.img, mountpoints-ID.img, utsns-ID.img, userns-ID.img).
pub(crate) fn plan_namespaces(
    processes: &[(u32, &pb::TaskKobjIdsEntry)],
    root_ids: Option<&pb::TaskKobjIdsEntry>,
    has_image: impl Fn(NsKind, u32) -> bool,
) -> Result<TreeNamespaces, Refused> {
    let Some(&(_, root)) = processes.first() else { return Ok(TreeNamespaces::default()) };
    let rule = OwnRule::new(root_ids, root);
    let refuse = |pid: u32, what: String| Refused { image: format!("ids-{pid}.img"), what: format!("{what} is not supported yet") };
    let mut plan = TreeNamespaces::default();
    for kind in NsKind::ALL {
        let root_own = rule.own(kind, root);
        for &(process, ids) in processes {
            let own = rule.own(kind, ids);
            let same_as_root = own == root_own;
            match kind {
                _ if same_as_root => {}
                NsKind::Pid => {
                    return Err(refuse(process, format!("a pid namespace ({} {}) other than the tree root's, nested in the tree", kind.field(), show(own))))
                }
                _ => return Err(refuse(process, format!("{} ({} {}) other than the tree root's", kind.describe(), kind.field(), show(own)))),
            }
        }
        match (kind, root_own) {
            (NsKind::Pid, Some(_)) => plan.new_pid_ns = true,
            (NsKind::Cgroup, Some(_)) => plan.cgroup_ns = true,
            (NsKind::Ipc | NsKind::Net | NsKind::Mnt | NsKind::Uts | NsKind::Time | NsKind::User, Some(id)) => {
                if !has_image(kind, id) {
                    let image = match kind {
                        NsKind::Ipc => crust_images::ImageKind::IpcVar,
                        NsKind::Net => crust_images::ImageKind::Netns,
                        NsKind::Mnt => crust_images::ImageKind::Mnts,
                        NsKind::Time => crust_images::ImageKind::Timens,
                        NsKind::User => crust_images::ImageKind::Userns,
                        _ => crust_images::ImageKind::Utsns,
                    };
                    return Err(Refused {
                        image: image.file_name(id as u64),
                        what: format!("missing, but the tree had {} of its own (ids.{} {id})", kind.describe(), kind.field()),
                    });
                }
                match kind {
                    NsKind::Ipc => plan.ipc_ns_id = Some(id),
                    NsKind::Net => plan.net_ns_id = Some(id),
                    NsKind::Mnt => plan.mnt_ns_id = Some(id),
                    NsKind::Time => plan.time_ns_id = Some(id),
                    NsKind::User => plan.user_ns_id = Some(id),
                    _ => plan.uts_ns_id = Some(id),
                }
            }
            _ => {}
        }
    }
    Ok(plan)
}

fn show(id: Option<u32>) -> String {
    id.map(|id| id.to_string()).unwrap_or_else(|| "of the restoring tool".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns::{number, NsInodes};

    const HOST: NsInodes = [Some(10), Some(20), Some(30), Some(40), Some(50), Some(60), Some(70), Some(80)];

    fn plan(inodes: &[NsInodes], has_ipc_images: impl Fn(u32) -> bool) -> Result<TreeNamespaces, Refused> {
        let has_image = |kind: NsKind, id: u32| kind != NsKind::Ipc || has_ipc_images(id);
        let ids = number(&HOST, inodes);
        let processes: Vec<(u32, &pb::TaskKobjIdsEntry)> = ids.processes.iter().enumerate().map(|(i, p)| (i as u32 + 1, p)).collect();
        plan_namespaces(&processes, Some(&ids.root), has_image)
    }

    #[test]
    fn a_tree_in_the_tools_namespaces_gets_no_new_one() {
        assert_eq!(plan(&[HOST, HOST], |_| true).expect("plan"), TreeNamespaces::default());
    }

    #[test]
    fn own_pid_and_ipc_namespaces_are_made_again() {
        let mut ns = HOST;
        ns[0] = Some(11);
        ns[2] = Some(31);
        assert_eq!(plan(&[ns, ns], |id| id == 10).expect("plan"), TreeNamespaces { new_pid_ns: true, ipc_ns_id: Some(10), ..Default::default() });
        let error = plan(&[ns, ns], |_| false).expect_err("no ipc images").to_string();
        assert_eq!(error, "restore: ipcns-var-10.img: missing, but the tree had an IPC namespace of its own (ids.ipc_ns_id 10)");
    }

    #[test]
    fn own_mount_and_uts_namespaces_are_made_again() {
        let mut ns = HOST;
        ns[3] = Some(41);
        ns[5] = Some(61);
        let made = plan(&[ns, ns], |_| true).expect("plan");
        assert_eq!(made, TreeNamespaces { uts_ns_id: Some(9), mnt_ns_id: Some(10), ..Default::default() });
        let ids = number(&HOST, &[ns]);
        let error = plan_namespaces(&[(1, &ids.processes[0])], Some(&ids.root), |kind, _| kind != NsKind::Mnt).expect_err("no mountpoints");
        assert_eq!(error.to_string(), "restore: mountpoints-10.img: missing, but the tree had a mount namespace of its own (ids.mnt_ns_id 10)");
    }

    #[test]
    fn an_own_network_namespace_is_made_again_when_its_images_are_there() {
        let mut ns = HOST;
        ns[1] = Some(21);
        let ids = number(&HOST, &[ns, ns]);
        let processes: Vec<(u32, &pb::TaskKobjIdsEntry)> = ids.processes.iter().enumerate().map(|(i, p)| (i as u32 + 1, p)).collect();
        let planned = plan_namespaces(&processes, Some(&ids.root), |kind, id| kind != NsKind::Net || id == 9).expect("plan");
        assert_eq!(planned, TreeNamespaces { net_ns_id: Some(9), ..Default::default() });
        let error = plan_namespaces(&processes, Some(&ids.root), |kind, _| kind != NsKind::Net).expect_err("no netns image").to_string();
        assert_eq!(error, "restore: netns-9.img: missing, but the tree had a network namespace of its own (ids.net_ns_id 9)");
        let error = plan(&[HOST, ns], |_| true).expect_err("child in another netns").to_string();
        assert_eq!(error, "restore: ids-2.img: a network namespace (net_ns_id 9) other than the tree root's is not supported yet");
    }

    #[test]
    fn other_kinds_and_nested_namespaces_are_refused_in_one_line() {
        let mut uts = HOST;
        uts[3] = Some(41);
        let error = plan(&[HOST, uts], |_| true).expect_err("uts").to_string();
        assert_eq!(error, "restore: ids-2.img: a UTS namespace (uts_ns_id 9) other than the tree root's is not supported yet");
        let mut user = HOST;
        user[6] = Some(71);
        assert_eq!(plan(&[user, user], |_| true).expect("user"), TreeNamespaces { user_ns_id: Some(9), ..Default::default() });
        let error = plan(&[user, HOST], |_| true).expect_err("user").to_string();
        assert_eq!(error, "restore: ids-2.img: a user namespace (user_ns_id of the restoring tool) other than the tree root's is not supported yet");
        let error = plan_namespaces(&[(1, &number(&HOST, &[user]).processes[0])], Some(&number(&HOST, &[user]).root), |kind, _| kind != NsKind::User)
            .expect_err("no userns image")
            .to_string();
        assert_eq!(error, "restore: userns-9.img: missing, but the tree had a user namespace of its own (ids.user_ns_id 9)");
        let mut pid = HOST;
        pid[0] = Some(11);
        let error = plan(&[HOST, pid], |_| true).expect_err("nested pid ns").to_string();
        assert_eq!(error, "restore: ids-2.img: a pid namespace (pid_ns_id 9) other than the tree root's, nested in the tree is not supported yet");
    }
}
