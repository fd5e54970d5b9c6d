//! The tree plan of a restore: the fd numbers crust keeps above every fd of the tree
//! (error pipe, sync pipe, the broker's descriptions, the shared anonymous objects, each
//! process's helpers), the stand-ins for session and group leaders that had exited, the
//! order children are forked in, and the premap arena. Pure: a function of the images
//! and the host layout.

use std::collections::BTreeMap;

use crust_arch::Abi;

use crate::model::vma as vs;
use crate::restore::images::{Images, ProcessImages};
use crate::restore::layout::HostLayout;
use crate::restore::memory::{plan_premaps, PremapSlots};
use crate::restore::plan::PlanError;

/// Plans of the whole tree.
pub(crate) struct TreePlan {
    /// Stand-ins for session and group leaders that had exited at dump time.
    pub(crate) helpers: Vec<HelperPlan>,
    /// fd numbers above every fd of the tree, kept for crust: the error pipe, the
    /// root's sync pipe, then the broker's descriptions, then each process's helpers.
    pub(crate) error_fd: i32,
    pub(crate) sync_fd: i32,
    pub(crate) broker_base: i32,
    /// The first fd number of each process's own helpers.
    pub(crate) helper_base: i32,
    /// Shared anonymous memory objects (MAP_SHARED|MAP_ANONYMOUS areas, shared through
    /// fork): shmid → (fd number, size). crust creates each before the first fork.
    pub(crate) shmem: BTreeMap<u64, (i32, u64)>,
    /// The tree had an IPC namespace of its own: the root makes a new one.
    pub(crate) new_ipc_ns: bool,
    /// The premap arena (`plan_premaps`), reserved before the root is forked.
    pub(crate) premap_arena: Option<(u64, u64)>,
    /// Per process: the slot of each premapped area.
    pub(crate) premaps: Vec<PremapSlots>,
    /// Lazy restore (`--lazy-pages`): private anonymous areas are mapped empty, their
    /// pages left to the lazy-pages daemon (`lazy/`).
    pub(crate) lazy_pages: bool,
}

/// Plans the tree: fd numbers kept for crust, the shared anonymous objects, the
/// stand-ins for exited session and group leaders, the premap arena.
pub(crate) fn plan_tree<A: Abi>(images: &Images, layout: &HostLayout, shell_job: bool) -> Result<TreePlan, PlanError> {
    // The validation keeps every fd below fs.nr_open with room above it; the sums are
    // checked all the same, so no image can make them wrap.
    let max_fd = images.processes.iter().flat_map(|p| p.fds.iter().map(|f| i64::from(f.fd))).max().unwrap_or(2).max(2);
    let descriptions = images.broker_ids();
    let fd_number = |n: i64, what: &str| -> Result<i32, PlanError> {
        i32::try_from(n).map_err(|_| PlanError::BadImage { image: "fdinfo".into(), what: format!("{what}: fd {n} above the highest fd {max_fd} does not fit an fd number") })
    };
    let error_fd = fd_number(max_fd + 1, "error pipe")?;
    let sync_fd = fd_number(max_fd + 2, "sync pipe")?;
    let broker_base = fd_number(max_fd + 3, "files broker")?;
    let mut shmem: BTreeMap<u64, (i32, u64)> = BTreeMap::new();
    for vma in images.processes.iter().flat_map(|p| p.mm.vmas.iter()).filter(|v| v.status & vs::ANON_SHARED != 0 && v.status & vs::SYSVIPC == 0) {
        let end = vma.end.checked_sub(vma.start).and_then(|size| size.checked_add(vma.pgoff)).ok_or_else(|| PlanError::BadImage {
            image: "mm".into(),
            what: format!("area {:#x}-{:#x} with pgoff {:#x} wraps", vma.start, vma.end, vma.pgoff),
        })?;
        let next = fd_number(i64::from(broker_base) + descriptions.len() as i64 + shmem.len() as i64, "shared memory")?;
        // At least the object's own size where the images give it (CRIU 4.2's memfd form).
        let entry = shmem.entry(vma.shmid).or_insert((next, images.shared_anon_sizes.get(&vma.shmid).copied().unwrap_or(0)));
        entry.1 = entry.1.max(end);
    }
    let helper_base = fd_number(i64::from(broker_base) + descriptions.len() as i64 + shmem.len() as i64, "helpers")?;
    let helpers = plan_helpers(images, shell_job)?;
    let (premaps, arena) = plan_premaps::<A>(images, layout)?;
    let new_ipc_ns = images.namespaces.ipc_ns_id.is_some();
    Ok(TreePlan { helpers, error_fd, sync_fd, broker_base, helper_base, shmem, new_ipc_ns, premap_arena: arena, premaps, lazy_pages: false })
}

/// A session or process group whose leader had exited at dump time. A helper process
/// with the leader's pid, forked by the members' parent, calls setsid() (a session) or
/// setpgid(0, 0) (a group), forks the members and exits: they are orphaned to their
/// parent, which must therefore be a child subreaper (or its pid namespace's init), as
/// it was when they were first orphaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HelperPlan {
    pub(crate) pid: u32,
    /// The process that forks the helper and then reaps it.
    pub(crate) parent: u32,
    pub(crate) session: bool,
    /// Indices into `images.processes`, in the order they are forked.
    pub(crate) members: Vec<usize>,
}

/// Checks that every session and group can be rebuilt and plans the helpers for those
/// whose leader is gone; refuses the shapes this restore cannot rebuild.
pub(crate) fn plan_helpers(images: &Images, shell_job: bool) -> Result<Vec<HelperPlan>, PlanError> {
    let by_pid: BTreeMap<u32, &ProcessImages> = images.processes.iter().map(|p| (p.pstree.pid, p)).collect();
    let root_pid = images.processes[0].pstree.pid;
    let mut helpers: Vec<HelperPlan> = Vec::new();
    for (index, process) in images.processes.iter().enumerate() {
        let p = &process.pstree;
        let parent = if index == 0 { None } else { by_pid.get(&p.ppid).copied() };
        if index > 0 && parent.is_none() {
            return Err(PlanError::BadImage { image: "pstree.img".into(), what: format!("pid {} has parent {} outside the tree", p.pid, p.ppid) });
        }
        if index == 0 && shell_job {
            continue;
        }
        let gone = |id: u32| !by_pid.contains_key(&id);
        let mut helper: Option<(u32, bool)> = None;
        let inherited_sid = parent.map(|q| q.pstree.sid);
        if p.sid != p.pid && inherited_sid != Some(p.sid) {
            if index == 0 || !gone(p.sid) {
                return Err(PlanError::Unsupported {
                    pid: p.pid as i32,
                    what: match (p.sid, index) {
                        (0, 0) => "a session led outside the dumped pid namespace (try --shell-job)".to_string(),
                        (0, _) => "a session led outside the dumped pid namespace, under a parent in another session".to_string(),
                        (sid, 0) => format!("session {sid} whose leader is not its parent's session (try --shell-job)"),
                        (sid, _) => format!("session {sid} whose leader is not its parent's session"),
                    },
                });
            }
            helper = Some((p.sid, true));
        }
        // A group is led by the process itself, by an ancestor in the same session, by a
        // sibling (forked first), or by the session helper; else by a group helper.
        let mut group_ok = p.pgid == p.pid || helper.is_some_and(|(sid, _)| sid == p.pgid);
        let mut ancestor = parent;
        while let (false, Some(a)) = (group_ok, ancestor) {
            group_ok = a.pstree.pgid == p.pgid && a.pstree.sid == p.sid;
            ancestor = by_pid.get(&a.pstree.ppid).copied().filter(|_| a.pstree.pid != root_pid);
        }
        if !group_ok {
            if let Some(leader) = by_pid.get(&p.pgid) {
                let l = &leader.pstree;
                let sibling = index > 0 && l.ppid == p.ppid && l.pgid == l.pid && l.sid == p.sid && l.sid != l.pid;
                if !sibling {
                    return Err(PlanError::Unsupported { pid: p.pid as i32, what: format!("process group {} led outside its ancestors and siblings", p.pgid) });
                }
            } else if helper.is_none() && index > 0 {
                helper = Some((p.pgid, false));
            } else {
                return Err(PlanError::Unsupported {
                    pid: p.pid as i32,
                    what: format!("process group {} and session {} both led by exited processes", p.pgid, p.sid),
                });
            }
        }
        let Some((helper_pid, session)) = helper else { continue };
        let parent = parent.expect("index > 0");
        let subreaper = parent.cores.first().and_then(|c| c.tc.as_ref()).and_then(|t| t.child_subreaper) == Some(true);
        if !(subreaper || parent.pstree.pid == 1) {
            return Err(PlanError::Unsupported {
                pid: p.pid as i32,
                what: format!(
                    "{} {helper_pid} whose leader exited, with members under pid {}, which is not a child subreaper",
                    if session { "session" } else { "process group" },
                    p.ppid
                ),
            });
        }
        match helpers.iter_mut().find(|h| h.pid == helper_pid) {
            Some(h) if h.parent == p.ppid && h.session == session => h.members.push(index),
            Some(_) => {
                return Err(PlanError::Unsupported {
                    pid: p.pid as i32,
                    what: format!("exited leader {helper_pid} whose members have different parents or kinds"),
                })
            }
            None => helpers.push(HelperPlan { pid: helper_pid, parent: p.ppid, session, members: vec![index] }),
        }
    }
    for helper in &mut helpers {
        let leaders_first = fork_order(images, &helper.members);
        helper.members = leaders_first;
    }
    Ok(helpers)
}

/// `children` (indices into `images.processes`) reordered so that group leaders come
/// first: their siblings may join their groups.
pub(crate) fn fork_order(images: &Images, children: &[usize]) -> Vec<usize> {
    let leads = |&index: &usize| {
        let p = &images.processes[index].pstree;
        p.pgid == p.pid
    };
    children.iter().copied().filter(leads).chain(children.iter().copied().filter(|i| !leads(i))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::fixtures;
    use crust_arch::x86_64::X86_64;

    #[test]
    fn fd_numbers_sit_above_every_fd_of_the_tree() {
        let images = fixtures::parent_and_child();
        let layout = fixtures::layout(&images, X86_64::TASK_SIZE);
        let tree = plan_tree::<X86_64>(&images, &layout, false).expect("plan");
        let max_fd = images.processes.iter().flat_map(|p| p.fds.iter().map(|f| f.fd as i32)).max().expect("fds");
        assert_eq!((tree.error_fd, tree.sync_fd, tree.broker_base), (max_fd + 1, max_fd + 2, max_fd + 3));
        let descriptions = images.broker_ids().len() as i32;
        assert_eq!(tree.helper_base, tree.broker_base + descriptions + tree.shmem.len() as i32);
        assert!(tree.helpers.is_empty());
        assert!(!tree.new_ipc_ns);
    }

    #[test]
    fn an_area_shared_with_a_child_gets_one_premap_slot() {
        let images = fixtures::parent_and_child();
        let layout = fixtures::layout(&images, X86_64::TASK_SIZE);
        let tree = plan_tree::<X86_64>(&images, &layout, false).expect("plan");
        // Parent and child both have the heap: the parent maps the slot, the child
        // inherits it.
        let heap = images.processes[0].mm.vmas.iter().find(|v| v.status & vs::HEAP != 0).expect("a heap");
        let (root_slot, root_inherited) = tree.premaps[0][&heap.start];
        let (child_slot, child_inherited) = tree.premaps[1][&heap.start];
        assert_eq!((root_inherited, child_inherited), (false, true));
        assert_eq!(root_slot, child_slot);
        let (start, end) = tree.premap_arena.expect("an arena");
        assert!(start <= root_slot && root_slot + heap.end - heap.start <= end);
        // Free in every process's layout and crust's.
        for (s, e) in images.processes.iter().flat_map(|p| p.mm.vmas.iter().map(|v| (v.start, v.end))).chain(layout.own_maps.iter().copied()) {
            assert!(e <= start || s >= end, "{s:#x}-{e:#x} overlaps the arena {start:#x}-{end:#x}");
        }
    }

    #[test]
    fn a_group_whose_leader_exited_gets_a_stand_in_under_a_subreaper() {
        let mut images = fixtures::parent_and_child();
        images.processes[1].pstree.pgid = 999;
        let error = plan_helpers(&images, false).expect_err("the parent is no subreaper").to_string();
        assert!(error.contains("process group 999 whose leader exited") && error.contains("not a child subreaper"), "{error}");
        images.processes[0].cores[0].tc.as_mut().expect("task core").child_subreaper = Some(true);
        let helpers = plan_helpers(&images, false).expect("plan");
        assert_eq!(helpers, vec![HelperPlan { pid: 999, parent: 12122, session: false, members: vec![1] }]);
    }

    #[test]
    fn a_root_in_a_foreign_session_needs_shell_job() {
        let mut images = fixtures::parent_and_child();
        images.processes[0].pstree.sid = 5;
        images.processes[1].pstree.sid = 5;
        let error = plan_helpers(&images, false).expect_err("session led outside").to_string();
        assert!(error.contains("session 5 whose leader is not its parent's session (try --shell-job)"), "{error}");
        assert!(plan_helpers(&images, true).is_ok());
    }

    #[test]
    fn a_session_outside_the_pid_namespace_is_inherited_with_shell_job() {
        // The kernel reports sid and pgid 0 for leaders outside the dumped pid namespace.
        let mut images = fixtures::parent_and_child();
        for process in &mut images.processes {
            process.pstree.sid = 0;
            process.pstree.pgid = 0;
        }
        let error = plan_helpers(&images, false).expect_err("session led outside").to_string();
        assert!(error.contains("a session led outside the dumped pid namespace (try --shell-job)"), "{error}");
        assert_eq!(plan_helpers(&images, true).expect("inherited"), vec![]);
    }

    #[test]
    fn group_leaders_are_forked_first() {
        let mut images = fixtures::parent_and_child();
        images.processes[1].pstree.pgid = images.processes[1].pstree.pid;
        assert_eq!(fork_order(&images, &[0, 1]), vec![0, 1]);
        images.processes[0].pstree.pgid = 12200;
        assert_eq!(fork_order(&images, &[0, 1]), vec![1, 0]);
    }
}
