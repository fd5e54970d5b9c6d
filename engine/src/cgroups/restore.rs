//! The restore half: a plan from cgroup.img (pure: [`plan`]), then its execution.
//!
//! - `--cgroup-root [CONTROLLER:]PATH` (RPC `cg_root`) replaces the tree's top cgroup of
//!   a hierarchy (the one directory cgroup.img lists at the top) by PATH, in the
//!   directories, the sets and the cgroup namespace roots (CRIU: "rewriting
//!   crust-research/b1 to /crust-research/b1"); without CONTROLLER it applies to every
//!   hierarchy no other entry names.
//! - `--manage-cgroups` modes ([`CgroupMode`]): `none` and `props` restore into
//!   existing cgroups only (the error names a missing one), `soft` (the default) makes
//!   the missing ones and writes properties to those, `full` to all, `strict` refuses a
//!   cgroup that exists; `ignore` leaves cgroups alone (nothing made, nothing moved). A
//!   hierarchy's root is never given properties.
//! - [`Yard::prepare`] (before the root is cloned): each hierarchy mounted detached,
//!   the directories made top-down with their owners and modes, and the properties a
//!   task needs before it joins (`props::Phase::Early`).
//! - Moves: the root by crust right after the clone ([`Yard::place_root`]; into its
//!   cgroup namespace's roots when it has one, before it unshares its namespace), every
//!   other task by the tracer at its first stop ([`Placement::place`]), before it runs
//!   an instruction of its own: /proc/TID/cgroup is compared with the task's set and
//!   only the hierarchies that differ are written (`cgroup.procs` for a process,
//!   `tasks` or `cgroup.threads` for a thread), so a tree in one set costs the root's
//!   moves alone.
//! - [`Yard::finish`] once every task is restored: the limits (`Late`); after the tree
//!   runs, [`Yard::resume`]: the freezer state. A failed restore removes the cgroups it
//!   made.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;

use crust_images::pb;

use super::props::{self, Phase};
use super::{below, cg_io, join, CgroupError, CgroupMode, Membership};
use crate::sys;

/// What the restore of cgroups is asked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) mode: CgroupMode,
    /// `--cgroup-root`: (controller, new root); `None` is every other hierarchy.
    pub(crate) roots: Vec<(Option<String>, String)>,
}

/// One directory to have, relative to its hierarchy's root (`""`: the root).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DirPlan {
    pub(crate) path: String,
    pub(crate) perms: Option<pb::CgroupPerms>,
    pub(crate) properties: Vec<pb::CgroupPropEntry>,
}

/// One hierarchy of the image.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HierarchyPlan {
    /// Its controllers as /proc/PID/cgroup names them (`cpu,cpuacct`, `""`).
    pub(crate) controllers: String,
    /// Its directories, parents before children.
    pub(crate) dirs: Vec<DirPlan>,
}

impl HierarchyPlan {
    fn label(&self) -> &str {
        if self.controllers.is_empty() {
            "unified"
        } else {
            &self.controllers
        }
    }

    fn unified(&self) -> bool {
        self.controllers.is_empty()
    }
}

/// The cgroups of a restore, planned.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    pub(crate) mode: CgroupMode,
    pub(crate) hierarchies: Vec<HierarchyPlan>,
    /// Per set id, (hierarchy index, absolute path), rewritten.
    pub(crate) sets: BTreeMap<u32, Vec<(usize, String)>>,
    /// Per set id, the cgroup namespace's root in each hierarchy (for a task in a
    /// cgroup namespace of the tree's own).
    pub(crate) cgns_roots: BTreeMap<u32, Vec<(usize, String)>>,
}

fn refused(what: String) -> CgroupError {
    CgroupError::Refused(format!("cgroup.img: {what}"))
}

/// A directory name of cgroup.img that stays inside its parent: no `..`, `.` or empty
/// components, no NUL.
fn check_name(name: &str, top: bool) -> Result<(), CgroupError> {
    if top && name.is_empty() {
        return Ok(());
    }
    if name.contains('\0') || name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(refused(format!("directory name {name:?} leaves its parent")));
    }
    Ok(())
}

/// The new root for a hierarchy with controllers `names` from `roots`.
fn new_root<'a>(names: &[String], roots: &'a [(Option<String>, String)]) -> Option<&'a str> {
    let joined = names.join(",");
    roots
        .iter()
        .find(|(controller, _)| controller.as_deref().is_some_and(|c| c == joined || names.iter().any(|n| n == c)))
        .or_else(|| roots.iter().find(|(controller, _)| controller.is_none()))
        .map(|(_, root)| root.as_str())
}

/// Plans the restore of `image` (pure).
pub(crate) fn plan(image: &pb::CgroupEntry, options: &Options) -> Result<Plan, CgroupError> {
    let mut hierarchies = Vec::new();
    // Per hierarchy: (old top, new root) when rewritten.
    let mut rewrites: Vec<Option<(String, String)>> = Vec::new();
    for controller in &image.controllers {
        let controllers = controller.cnames.join(",");
        let mut dirs = Vec::new();
        let rewrite = match new_root(&controller.cnames, &options.roots) {
            None => None,
            Some(root) => {
                if !root.starts_with('/') {
                    return Err(CgroupError::Refused(format!("--cgroup-root {root}: the new root must be an absolute cgroup path")));
                }
                let root = if root.len() > 1 { root.trim_end_matches('/') } else { root };
                match controller.dirs.as_slice() {
                    [] => None,
                    [top] => Some((format!("/{}", top.dir_name), root.to_string())),
                    several => {
                        let names: Vec<&str> = several.iter().map(|d| d.dir_name.as_str()).collect();
                        return Err(CgroupError::Refused(format!(
                            "--cgroup-root {root}: the tree's cgroups of hierarchy {controllers:?} have {} top directories ({}); a new root replaces one",
                            names.len(),
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        let rewrite_path = |path: &str| match &rewrite {
            Some((old, new)) => match below(path, old) {
                Some(rest) => join(new, rest),
                None => path.to_string(),
            },
            None => path.to_string(),
        };
        // Directories, top-down.
        let mut pending: Vec<(String, &pb::CgroupDirEntry)> = Vec::new();
        for top in controller.dirs.iter().rev() {
            check_name(&top.dir_name, true)?;
            pending.push((rewrite_path(&format!("/{}", top.dir_name)), top));
        }
        while let Some((path, dir)) = pending.pop() {
            for child in dir.children.iter().rev() {
                check_name(&child.dir_name, false)?;
                pending.push((join(&path, &child.dir_name), child));
            }
            dirs.push(DirPlan { path: path.trim_start_matches('/').to_string(), perms: dir.dir_perms, properties: dir.properties.clone() });
        }
        hierarchies.push(HierarchyPlan { controllers, dirs });
        rewrites.push(rewrite);
    }
    let index_of = |name: &str| -> Option<usize> {
        let mut wanted: Vec<&str> = name.split(',').collect();
        wanted.sort_unstable();
        image.controllers.iter().position(|c| {
            let mut have: Vec<&str> = c.cnames.iter().map(String::as_str).collect();
            have.sort_unstable();
            have == wanted
        })
    };
    let mut sets = BTreeMap::new();
    let mut cgns_roots = BTreeMap::new();
    for set in &image.sets {
        let mut paths = Vec::new();
        let mut roots = Vec::new();
        let in_namespace = set.ctls.iter().any(|m| m.cgns_prefix.is_some_and(|p| p > 0));
        for member in &set.ctls {
            let index = index_of(&member.name).ok_or_else(|| refused(format!("set {} names hierarchy {:?}, which no controller entry describes", set.id, member.name)))?;
            if !member.path.starts_with('/') || member.path.split('/').any(|c| c == "..") {
                return Err(refused(format!("set {}: hierarchy {:?}: path {:?} is not an absolute cgroup path", set.id, member.name, member.path)));
            }
            let rewrite = |path: &str| match &rewrites[index] {
                Some((old, new)) => below(path, old).map(|rest| join(new, rest)).unwrap_or_else(|| path.to_string()),
                None => path.to_string(),
            };
            paths.push((index, rewrite(&member.path)));
            if in_namespace {
                let prefix = member.cgns_prefix.unwrap_or(0) as usize;
                let root = if prefix == 0 {
                    "/"
                } else {
                    match member.path.get(..prefix) {
                        Some(head) if member.path[prefix..].is_empty() || member.path[prefix..].starts_with('/') => head,
                        _ => return Err(refused(format!("set {}: hierarchy {:?}: cgns_prefix {prefix} does not end a component of {:?}", set.id, member.name, member.path))),
                    }
                };
                roots.push((index, rewrite(root)));
            }
        }
        sets.insert(set.id, paths);
        if in_namespace {
            cgns_roots.insert(set.id, roots);
        }
    }
    Ok(Plan { mode: options.mode, hierarchies, sets, cgns_roots })
}

/// The plan for the dump in `dir`: `None` with `--manage-cgroups=ignore` or without
/// cgroup.img (every task was in the dumping tool's cgroups, and stays in crust's).
pub(crate) fn read_plan(dir: &std::path::Path, options: &Options) -> Result<Option<Plan>, CgroupError> {
    let images = crust_images::ImageDir::new(dir);
    if options.mode == CgroupMode::Ignore || !images.exists(crust_images::ImageKind::Cgroup, 0) {
        if !options.roots.is_empty() {
            log::warn!("--cgroup-root: nothing to move (--manage-cgroups={} or no cgroup.img)", options.mode.name());
        }
        return Ok(None);
    }
    let image: pb::CgroupEntry = images.read_single(crust_images::ImageKind::Cgroup, 0).map_err(|e| refused(e.to_string()))?;
    plan(&image, options).map(Some)
}

/// The hierarchies mounted, the directories made: what the moves and the later
/// properties work on. Drop removes the cgroups it made unless the restore succeeded.
pub(crate) struct Yard {
    plan: Plan,
    mounts: Vec<OwnedFd>,
    /// (hierarchy, path) of each directory made here, in the order made.
    created: Vec<(usize, String)>,
    /// (hierarchy, dir index) of the directories that get properties.
    with_properties: Vec<(usize, usize)>,
    /// crust's own cgroups: where a task of crust's set goes.
    own: Membership,
    kept: bool,
}

impl Yard {
    /// Mounts the hierarchies, makes the directories and writes the properties a task
    /// needs before it joins.
    pub(crate) fn prepare(plan: Plan) -> Result<Yard, CgroupError> {
        let own = super::read("self", "self")?;
        let mut yard = Yard { mounts: Vec::new(), created: Vec::new(), with_properties: Vec::new(), own, kept: false, plan: plan.clone() };
        for hierarchy in &plan.hierarchies {
            let mount = sys::cgroup::mount_hierarchy(&hierarchy.controllers)
                .map_err(cg_io(format!("cgroup hierarchy {}: mount it (this host must have it, with these controllers together)", hierarchy.label())))?;
            yard.mounts.push(mount);
        }
        let mode = plan.mode;
        for (h, hierarchy) in plan.hierarchies.iter().enumerate() {
            for (d, dir) in hierarchy.dirs.iter().enumerate() {
                let name = format!("cgroup {}:/{}", hierarchy.label(), dir.path);
                let exists = dir.path.is_empty() || sys::cgroup::stat_at(&yard.mounts[h], &dir.path).map_err(cg_io(format!("{name}: stat")))?.is_some();
                match (mode, exists) {
                    (CgroupMode::None | CgroupMode::Props, false) => {
                        return Err(CgroupError::Refused(format!("{name} does not exist (--manage-cgroups={} restores into existing cgroups only)", mode.name())))
                    }
                    (CgroupMode::Strict, true) if !dir.path.is_empty() => {
                        return Err(CgroupError::Refused(format!("{name} exists already (--manage-cgroups=strict makes every cgroup)")))
                    }
                    (_, false) => yard.make(h, &dir.path, dir.perms)?,
                    _ => {}
                }
                let properties = match mode {
                    CgroupMode::Props | CgroupMode::Full | CgroupMode::Strict => true,
                    CgroupMode::Soft => !exists,
                    CgroupMode::None | CgroupMode::Ignore => false,
                };
                if properties && dir.path.is_empty() {
                    log::debug!("{name}: a hierarchy's root keeps its properties");
                } else if properties {
                    yard.with_properties.push((h, d));
                }
            }
        }
        for &(h, d) in &yard.with_properties {
            yard.write_phase(h, d, Phase::Early)?;
        }
        log::info!(
            "cgroups ({}): {} hierarchies, {} cgroups made, {} given properties",
            mode.name(),
            plan.hierarchies.len(),
            yard.created.len(),
            yard.with_properties.len()
        );
        Ok(yard)
    }

    /// Makes `path` (and the missing directories above it) in hierarchy `h`.
    fn make(&mut self, h: usize, path: &str, perms: Option<pb::CgroupPerms>) -> Result<(), CgroupError> {
        let label = self.plan.hierarchies[h].label().to_string();
        let mut partial = String::new();
        for component in path.split('/') {
            if !partial.is_empty() {
                partial.push('/');
            }
            partial.push_str(component);
            if sys::cgroup::stat_at(&self.mounts[h], &partial).map_err(cg_io(format!("cgroup {label}:/{partial}: stat")))?.is_some() {
                continue;
            }
            sys::cgroup::make_dir(&self.mounts[h], &partial, 0o755).map_err(cg_io(format!("cgroup {label}:/{partial}: make it")))?;
            self.created.push((h, partial.clone()));
        }
        if let Some(perms) = perms.filter(|p| p.mode & libc::S_IFMT == libc::S_IFDIR && (p.uid != 0 || p.gid != 0 || p.mode & 0o7777 != 0o755)) {
            sys::cgroup::set_owner_mode(&self.mounts[h], path, perms.uid, perms.gid, perms.mode)
                .map_err(cg_io(format!("cgroup {label}:/{path}: chown {}:{} and chmod {:o}", perms.uid, perms.gid, perms.mode & 0o7777)))?;
        }
        Ok(())
    }

    /// Writes the properties of phase `phase` of directory `d` of hierarchy `h` (Early
    /// also gives the files their owners and modes).
    fn write_phase(&self, h: usize, d: usize, phase: Phase) -> Result<(), CgroupError> {
        let hierarchy = &self.plan.hierarchies[h];
        let dir = &hierarchy.dirs[d];
        let name = format!("cgroup {}:/{}", hierarchy.label(), dir.path);
        let fd = sys::cgroup::open_dir(&self.mounts[h], &dir.path).map_err(cg_io(format!("{name}: open")))?;
        for property in &dir.properties {
            if phase == Phase::Early {
                if let Some(perms) = property.perms.filter(|p| p.mode & libc::S_IFMT == libc::S_IFREG && p.mode & !0o177777 == 0) {
                    let current = sys::cgroup::stat_at(&fd, &property.name).map_err(cg_io(format!("{name}: stat {}", property.name)))?;
                    if let Some((mode, uid, gid, ..)) = current {
                        if (mode & 0o7777, uid, gid) != (perms.mode & 0o7777, perms.uid, perms.gid) {
                            sys::cgroup::set_owner_mode(&fd, &property.name, perms.uid, perms.gid, perms.mode)
                                .map_err(cg_io(format!("{name}: chown {}:{} and chmod {:o} {}", perms.uid, perms.gid, perms.mode & 0o7777, property.name)))?;
                        }
                    }
                }
            }
            if props::phase(&property.name, &property.value) != phase {
                continue;
            }
            for (file, value) in props::writes(&property.name, &property.value) {
                if let Err(error) = sys::cgroup::write_file(&fd, &file, &value) {
                    // A limit below the memory+swap limit's old value: raise that first.
                    if file == "memory.limit_in_bytes" {
                        if let Some(memsw) = dir.properties.iter().find(|p| p.name == "memory.memsw.limit_in_bytes") {
                            if sys::cgroup::write_file(&fd, &memsw.name, &memsw.value).is_ok() && sys::cgroup::write_file(&fd, &file, &value).is_ok() {
                                continue;
                            }
                        }
                    }
                    // What the kernel no longer lets be written (a deprecated v1 knob)
                    // is fine when it holds the value already.
                    let now = sys::cgroup::read_file(&fd, &file).map(|(text, ..)| text.trim().to_string()).unwrap_or_default();
                    if now == value.trim() {
                        log::debug!("{name}: {file} refused {value:?} ({error}) but holds it");
                        continue;
                    }
                    return Err(CgroupError::Io { what: format!("{name}: write {value:?} into {file}"), source: error });
                }
            }
        }
        Ok(())
    }

    /// The target of set `set` per hierarchy: the set's paths, or crust's own cgroups
    /// for crust's set (`root_set`) and sets the image does not have.
    fn target(&self, set: u32) -> Vec<(usize, String)> {
        if let Some(paths) = self.plan.sets.get(&set) {
            return paths.clone();
        }
        self.plan
            .hierarchies
            .iter()
            .enumerate()
            .filter_map(|(h, hierarchy)| self.own_path(&hierarchy.controllers).map(|path| (h, path)))
            .collect()
    }

    fn own_path(&self, controllers: &str) -> Option<String> {
        membership_path(&self.own, controllers)
    }

    /// Moves host task `tid` into `targets`, each hierarchy where its /proc/TID/cgroup
    /// says otherwise; `process`: it is a process (its leader), not another thread.
    fn move_task(&self, tid: i32, process: bool, targets: &[(usize, String)]) -> Result<usize, CgroupError> {
        let current = super::read(&tid.to_string(), &tid.to_string())?;
        let mut moved = 0;
        for (h, path) in targets {
            let hierarchy = &self.plan.hierarchies[*h];
            if membership_path(&current, &hierarchy.controllers).as_deref() == Some(path.as_str()) {
                continue;
            }
            let dir = sys::cgroup::open_dir(&self.mounts[*h], path.trim_start_matches('/'))
                .map_err(cg_io(format!("cgroup {}:{path}: open to move task {tid} in", hierarchy.label())))?;
            let cgroup_type = if !process && hierarchy.unified() {
                sys::cgroup::read_file(&dir, "cgroup.type").ok().map(|(text, ..)| text.trim().to_string())
            } else {
                None
            };
            let file = membership_file(process, hierarchy.unified(), cgroup_type.as_deref());
            let what = || format!("cgroup {}:{path}: move task {tid} in ({file})", hierarchy.label());
            sys::cgroup::write_file(&dir, file, &tid.to_string()).map_err(|source| {
                let hint = match source.raw_os_error() {
                    Some(libc::EAGAIN) => " (the cgroup's pids.max is reached)",
                    Some(libc::ENOSPC) => " (a cpuset without cpus or mems)",
                    Some(libc::EOPNOTSUPP) => " (a unified cgroup with controllers for its children takes no task)",
                    _ => "",
                };
                CgroupError::Io { what: format!("{}{hint}", what()), source }
            })?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Right after the root's clone: moves it into its set, or, when it makes a cgroup
    /// namespace of its own (`cgroup_ns`), into that namespace's roots (its unshare
    /// comes next; the tracer moves it on into its set at its first stop).
    pub(crate) fn place_root(&self, pid: i32, set: u32, cgroup_ns: bool) -> Result<(), CgroupError> {
        let targets = match self.plan.cgns_roots.get(&set) {
            Some(roots) if cgroup_ns => roots.clone(),
            _ if cgroup_ns => self.target(set).into_iter().map(|(h, _)| (h, "/".to_string())).collect(),
            _ => self.target(set),
        };
        let moved = self.move_task(pid, true, &targets)?;
        log::info!("cgroups: root {pid} moved in {moved} hierarchies{}", if cgroup_ns { " (its cgroup namespace's roots)" } else { "" });
        Ok(())
    }

    /// Once every task is restored, before the tree runs: the limits.
    pub(crate) fn finish(&self) -> Result<(), CgroupError> {
        for &(h, d) in &self.with_properties {
            self.write_phase(h, d, Phase::Late)?;
        }
        Ok(())
    }

    /// Once the tree runs: the freezer states; the cgroups stay.
    pub(crate) fn resume(mut self) -> Result<(), CgroupError> {
        self.kept = true;
        for &(h, d) in &self.with_properties {
            self.write_phase(h, d, Phase::Last)?;
        }
        Ok(())
    }
}

impl Drop for Yard {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for (h, path) in self.created.iter().rev() {
            if let Err(error) = sys::cgroup::remove_dir(&self.mounts[*h], path) {
                log::warn!("restore failed: cgroup {}:/{path} it made stays: {error}", self.plan.hierarchies[*h].label());
            }
        }
    }
}

/// The file a task is written into to join a cgroup: a process (its leader) into
/// `cgroup.procs`; another thread into `tasks` in a v1 hierarchy and into
/// `cgroup.threads` of a threaded unified cgroup (`cgroup_type` "threaded" or "domain
/// threaded"). A unified domain cgroup takes whole processes only (`cgroup.threads`
/// there is EOPNOTSUPP), so the thread goes in through `cgroup.procs`, which moves its
/// whole thread group: every thread of a process is in one domain cgroup anyway (a
/// process whose leader is gone has only such threads to name it by).
fn membership_file(process: bool, unified: bool, cgroup_type: Option<&str>) -> &'static str {
    match (process, unified, cgroup_type) {
        (true, ..) => "cgroup.procs",
        (false, false, _) => "tasks",
        (false, true, Some("threaded" | "domain threaded")) => "cgroup.threads",
        (false, true, _) => "cgroup.procs",
    }
}

/// The path of the hierarchy with `controllers` in a membership (controller lists
/// compared as sets).
fn membership_path(membership: &Membership, controllers: &str) -> Option<String> {
    let mut wanted: Vec<&str> = controllers.split(',').collect();
    wanted.sort_unstable();
    membership
        .iter()
        .find(|m| {
            let mut have: Vec<&str> = m.controllers.split(',').collect();
            have.sort_unstable();
            have == wanted
        })
        .map(|m| m.path.clone())
}

/// The tracer's side: each task of the tree put in its set at its first stop.
pub(crate) struct Placement<'a> {
    yard: &'a Yard,
    /// Per task (as the images number it): its set, and whether it is a process.
    sets: BTreeMap<i32, (u32, bool)>,
    placed: BTreeSet<i32>,
    pub(crate) moves: usize,
}

impl<'a> Placement<'a> {
    /// `tasks`: (tid as the images number it, set, is a process).
    pub(crate) fn new(yard: &'a Yard, tasks: impl IntoIterator<Item = (i32, u32, bool)>) -> Placement<'a> {
        Placement { yard, sets: tasks.into_iter().map(|(tid, set, process)| (tid, (set, process))).collect(), placed: BTreeSet::new(), moves: 0 }
    }

    /// At the first stop of task `tid` (`host_tid` on this host): moves it into its set
    /// where it is not yet; later stops do nothing. A task the images do not name (a
    /// helper standing in for an exited leader) stays where it was born.
    pub(crate) fn place(&mut self, tid: i32, host_tid: i32) -> Result<(), CgroupError> {
        if !self.placed.insert(host_tid) {
            return Ok(());
        }
        let Some(&(set, process)) = self.sets.get(&tid) else { return Ok(()) };
        self.moves += self.yard.move_task(host_tid, process, &self.yard.target(set))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str, properties: &[(&str, &str)], children: Vec<pb::CgroupDirEntry>) -> pb::CgroupDirEntry {
        pb::CgroupDirEntry {
            dir_name: name.into(),
            children,
            properties: properties.iter().map(|(n, v)| pb::CgroupPropEntry { name: n.to_string(), value: v.to_string(), perms: None }).collect(),
            dir_perms: None,
        }
    }

    fn member(name: &str, path: &str, prefix: Option<u32>) -> pb::CgMemberEntry {
        pb::CgMemberEntry { name: name.into(), path: path.into(), cgns_prefix: prefix }
    }

    /// The shape of CRIU's image of the runc container (containers.md 2.5): one top
    /// directory per hierarchy, a cgroup namespace rooted there.
    fn runc_like() -> pb::CgroupEntry {
        pb::CgroupEntry {
            sets: vec![
                pb::CgSetEntry { id: 2, ctls: vec![member("", "/crust-research/b1", Some(18)), member("blkio", "/", None), member("pids", "/crust-research/b1", Some(18))] },
                pb::CgSetEntry { id: 3, ctls: vec![member("", "/crust-research/b1", Some(18)), member("blkio", "/", None), member("pids", "/crust-research/b1/sub", Some(18))] },
            ],
            controllers: vec![
                pb::CgControllerEntry { cnames: vec!["pids".into()], dirs: vec![dir("crust-research/b1", &[("pids.max", "64")], vec![dir("sub", &[], vec![])])], is_threaded: Some(true) },
                pb::CgControllerEntry { cnames: vec!["blkio".into()], dirs: vec![dir("", &[], vec![])], is_threaded: Some(true) },
                pb::CgControllerEntry { cnames: vec![String::new()], dirs: vec![dir("crust-research/b1", &[("cgroup.max.descendants", "7")], vec![])], is_threaded: Some(false) },
            ],
        }
    }

    #[test]
    fn a_thread_joins_a_domain_cgroup_with_its_process() {
        assert_eq!(membership_file(true, true, None), "cgroup.procs");
        assert_eq!(membership_file(true, false, None), "cgroup.procs");
        assert_eq!(membership_file(false, false, None), "tasks");
        assert_eq!(membership_file(false, true, Some("threaded")), "cgroup.threads");
        assert_eq!(membership_file(false, true, Some("domain threaded")), "cgroup.threads");
        // A domain cgroup refuses cgroup.threads (EOPNOTSUPP): the thread group moves.
        assert_eq!(membership_file(false, true, Some("domain")), "cgroup.procs");
        assert_eq!(membership_file(false, true, None), "cgroup.procs");
    }

    #[test]
    fn a_plan_lists_directories_top_down_and_sets_by_hierarchy() {
        let plan = plan(&runc_like(), &Options::default()).unwrap();
        let pids: Vec<&str> = plan.hierarchies[0].dirs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(pids, ["crust-research/b1", "crust-research/b1/sub"]);
        assert_eq!(plan.hierarchies[1].dirs[0].path, "");
        assert_eq!(plan.hierarchies[2].controllers, "");
        assert_eq!(plan.sets[&3], [(2, "/crust-research/b1".to_string()), (1, "/".to_string()), (0, "/crust-research/b1/sub".to_string())]);
        // The namespace's roots: the prefix, and `/` where there is none.
        assert_eq!(plan.cgns_roots[&3], [(2, "/crust-research/b1".to_string()), (1, "/".to_string()), (0, "/crust-research/b1".to_string())]);
        assert_eq!(plan.mode, CgroupMode::Soft);
    }

    #[test]
    fn cgroup_root_rewrites_dirs_sets_and_namespace_roots() {
        // runc sends every controller; a plain `--cgroup-root /new` is the default.
        let options = Options { mode: CgroupMode::Full, roots: vec![(Some("pids".into()), "/ct/x".into()), (None, "/new".into())] };
        let plan = plan(&runc_like(), &options).unwrap();
        let pids: Vec<&str> = plan.hierarchies[0].dirs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(pids, ["ct/x", "ct/x/sub"]);
        // blkio's top is the hierarchy's root: the tree goes below the new root.
        assert_eq!(plan.hierarchies[1].dirs[0].path, "new");
        assert_eq!(plan.sets[&3], [(2, "/new".to_string()), (1, "/new".to_string()), (0, "/ct/x/sub".to_string())]);
        assert_eq!(plan.cgns_roots[&3], [(2, "/new".to_string()), (1, "/new".to_string()), (0, "/ct/x".to_string())]);
    }

    #[test]
    fn bad_images_and_roots_are_refused_by_name() {
        let mut image = runc_like();
        image.controllers[0].dirs[0].children[0].dir_name = "../escape".into();
        assert_eq!(plan(&image, &Options::default()).unwrap_err().to_string(), "cgroup.img: directory name \"../escape\" leaves its parent");
        let mut image = runc_like();
        image.sets[0].ctls.push(member("memory", "/x", None));
        assert!(plan(&image, &Options::default()).unwrap_err().to_string().contains("set 2 names hierarchy \"memory\", which no controller entry describes"));
        let mut image = runc_like();
        image.controllers[0].dirs.push(dir("other", &[], vec![]));
        let error = plan(&image, &Options { roots: vec![(None, "/r".into())], ..Default::default() }).unwrap_err().to_string();
        assert!(error.contains("have 2 top directories (crust-research/b1, other)"), "{error}");
        let error = plan(&runc_like(), &Options { roots: vec![(None, "r".into())], ..Default::default() }).unwrap_err().to_string();
        assert!(error.contains("must be an absolute cgroup path"), "{error}");
        let mut image = runc_like();
        image.sets[0].ctls[0].cgns_prefix = Some(5);
        assert!(plan(&image, &Options::default()).unwrap_err().to_string().contains("cgns_prefix 5 does not end a component"));
    }

    #[test]
    fn membership_paths_match_controller_sets() {
        let own = super::super::parse("2:cpuacct,cpu:/a\n0::/b\n");
        assert_eq!(membership_path(&own, "cpu,cpuacct").as_deref(), Some("/a"));
        assert_eq!(membership_path(&own, "").as_deref(), Some("/b"));
        assert_eq!(membership_path(&own, "pids"), None);
    }
}
