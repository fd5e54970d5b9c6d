//! The dump half: every thread's cgroups into sets, and per hierarchy the directories of
//! the tree's cgroups with their properties, as CRIU 4.2 writes them (checked against
//! its images of runc containers and of trees in cgroups of their own on this host):
//! - set members sorted by controllers, full paths as crust's cgroup namespace sees
//!   them, `cgns_prefix` only where the tree's cgroup namespace root is not `/`;
//! - one controller entry per hierarchy, `is_threaded` true for v1, false for unified;
//! - each set's cgroup is a directory named by its path (`crust-research/b1`), with
//!   every cgroup below it as children named by their last component (empty ones too).
//!   One deviation: a task in a hierarchy's root (`/`) gives the directory `""` with
//!   its properties, but crust does not walk the whole host hierarchy below it as CRIU
//!   does (those are the host's cgroups, not the tree's; a restore would make them).
//!
//! `--manage-cgroups=ignore` records the directories without properties or owners.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use crust_images::pb;

use super::{below, cg_io, cnames, join, read, CgroupError, Member, Membership, OWN_SET};
use crate::sys;

/// The cgroup the tree was frozen in (`--freeze-cgroup`) and its state before: recorded
/// instead of the frozen state crust put it in.
#[derive(Clone, Debug)]
pub(crate) struct FreezerOrigin {
    /// (dev, inode) of the cgroup's directory.
    pub(crate) dir: (u64, u64),
    /// `freezer.state` (v1) or `cgroup.freeze` (unified).
    pub(crate) file: &'static str,
    /// Its value before the dump (`THAWED`, `0`, ...).
    pub(crate) value: String,
}

/// What the dump of cgroups is asked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Record properties and owners (every mode but `ignore`).
    pub(crate) properties: bool,
    pub(crate) freezer: Option<FreezerOrigin>,
}

/// The dumped cgroups: each task's set (by host tid) and cgroup.img's entry, `None`
/// when every task is in crust's own set.
#[derive(Debug, Default)]
pub(crate) struct Dumped {
    pub(crate) per_task: BTreeMap<i32, u32>,
    pub(crate) image: Option<pb::CgroupEntry>,
}

impl Dumped {
    /// The set of host task `tid` (crust's own when it was not dumped).
    pub(crate) fn set_of(&self, tid: i32) -> u32 {
        self.per_task.get(&tid).copied().unwrap_or(OWN_SET)
    }
}

/// Dumps the cgroups of `tasks` ((pid, tid) on the host, every thread of every live
/// process, in pstree order). `cgns`: a pid of the tree when it has a cgroup namespace
/// of its own (all its tasks in it), whose view gives the namespace's root.
pub(crate) fn dump(tasks: &[(i32, i32)], cgns: Option<i32>, options: &Options) -> Result<Dumped, CgroupError> {
    let own = read("self", "self")?;
    let full = tasks.iter().map(|(pid, tid)| read(&pid.to_string(), &tid.to_string())).collect::<Result<Vec<_>, _>>()?;
    let inside = match cgns {
        Some(pid) => Some(in_cgroup_namespace_of(pid, || {
            tasks.iter().map(|(pid, tid)| read(&pid.to_string(), &tid.to_string())).collect::<Result<Vec<_>, _>>()
        })?),
        None => None,
    };
    let numbered = number_sets(&own, &full, inside.as_deref(), tasks)?;
    let per_task = tasks.iter().map(|&(_, tid)| tid).zip(numbered.per_task.iter().copied()).collect();
    if numbered.sets.is_empty() {
        return Ok(Dumped { per_task, image: None });
    }
    let controllers = controllers(&numbered.sets, options)?;
    Ok(Dumped { per_task, image: Some(pb::CgroupEntry { sets: numbered.sets, controllers }) })
}

/// Runs `work` on a thread of crust's that entered the cgroup namespace of `pid`.
fn in_cgroup_namespace_of<T: Send>(pid: i32, work: impl FnOnce() -> Result<T, CgroupError> + Send) -> Result<T, CgroupError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                sys::cgroup::enter_cgroup_namespace_of(pid).map_err(cg_io(format!("enter the cgroup namespace of pid {pid}")))?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(CgroupError::Refused("the cgroup namespace thread panicked".into())))
    })
}

/// The sets of a dump: each task's set id and the sets other than crust's own.
#[derive(Debug, PartialEq)]
pub(crate) struct Numbered {
    pub(crate) per_task: Vec<u32>,
    pub(crate) sets: Vec<pb::CgSetEntry>,
}

/// The length of the cgroup namespace's root in `full` (as crust sees the path), given
/// the path `inside` the namespace shows; 0 for a root of `/`.
fn cgns_prefix(full: &str, inside: &str) -> Option<usize> {
    if inside == "/" {
        return Some(if full == "/" { 0 } else { full.len() });
    }
    if inside.starts_with("/..") || !full.ends_with(inside) {
        return None;
    }
    let prefix = full.len() - inside.len();
    (prefix == 0 || full[..prefix].starts_with('/')).then_some(prefix)
}

/// Groups the tasks' memberships (`full`, crust's view; `inside`, the tree's cgroup
/// namespace's view when it has one) into sets against crust's own `own`. Pure.
pub(crate) fn number_sets(own: &Membership, full: &[Membership], inside: Option<&[Membership]>, tasks: &[(i32, i32)]) -> Result<Numbered, CgroupError> {
    let own_set: Vec<pb::CgMemberEntry> = own.iter().map(|m| member(m, None)).collect();
    let mut sets: Vec<pb::CgSetEntry> = Vec::new();
    let mut per_task = Vec::with_capacity(full.len());
    for (index, membership) in full.iter().enumerate() {
        let mut ctls = Vec::with_capacity(membership.len());
        for m in membership {
            let prefix = match inside.and_then(|views| views.get(index)) {
                None => None,
                Some(view) => {
                    let seen = view.iter().find(|v| v.controllers == m.controllers).map(|v| v.path.as_str()).unwrap_or("/");
                    let prefix = cgns_prefix(&m.path, seen).ok_or_else(|| {
                        let (pid, tid) = tasks.get(index).copied().unwrap_or_default();
                        CgroupError::Refused(format!(
                            "pid {pid} tid {tid}: cgroup {} of hierarchy {:?} shows as {seen} in its cgroup namespace: outside the namespace's root",
                            m.path, m.controllers
                        ))
                    })?;
                    (prefix > 0).then_some(prefix as u32)
                }
            };
            ctls.push(member(m, prefix));
        }
        if ctls.is_empty() || ctls == own_set {
            per_task.push(OWN_SET);
            continue;
        }
        let id = match sets.iter().find(|s| s.ctls == ctls) {
            Some(set) => set.id,
            None => {
                let id = OWN_SET + 1 + sets.len() as u32;
                sets.push(pb::CgSetEntry { id, ctls });
                id
            }
        };
        per_task.push(id);
    }
    Ok(Numbered { per_task, sets })
}

fn member(m: &Member, cgns_prefix: Option<u32>) -> pb::CgMemberEntry {
    pb::CgMemberEntry { name: m.controllers.clone(), path: m.path.clone(), cgns_prefix }
}

/// Per hierarchy named in `sets`, the directories of the tree's cgroups (I/O: each
/// hierarchy is mounted detached and read).
fn controllers(sets: &[pb::CgSetEntry], options: &Options) -> Result<Vec<pb::CgControllerEntry>, CgroupError> {
    let mut hierarchies: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for set in sets {
        for member in &set.ctls {
            let paths = hierarchies.entry(member.name.as_str()).or_default();
            if !paths.contains(&member.path) {
                paths.push(member.path.clone());
            }
        }
    }
    let mut out = Vec::new();
    for (controllers, paths) in hierarchies {
        let label = if controllers.is_empty() { "unified" } else { controllers };
        let mount = sys::cgroup::mount_hierarchy(controllers).map_err(cg_io(format!("cgroup hierarchy {label}: mount it")))?;
        let names = cnames(controllers);
        let mut dirs = Vec::new();
        for top in tops(&paths) {
            let rest: Vec<&String> = paths.iter().filter(|p| *p != top && below(p, top).is_some()).collect();
            dirs.push(dir_entry(&mount, top, top.trim_start_matches('/'), &rest, &names, label, options)?);
        }
        out.push(pb::CgControllerEntry { cnames: names, dirs, is_threaded: Some(!controllers.is_empty()) });
    }
    // CRIU lists named hierarchies after the others.
    out.sort_by_key(|c| c.cnames.iter().any(|n| n.starts_with("name=")));
    Ok(out)
}

/// The paths of `paths` below none of the others.
fn tops(paths: &[String]) -> Vec<&String> {
    paths.iter().filter(|p| !paths.iter().any(|q| q != *p && below(p, q).is_some())).collect()
}

/// The directory entry of cgroup `path`, named `name`: below a hierarchy root only the
/// tree's own cgroups (`rest`), below any other cgroup every child cgroup.
fn dir_entry(mount: &OwnedFd, path: &str, name: &str, rest: &[&String], cnames: &[String], label: &str, options: &Options) -> Result<pb::CgroupDirEntry, CgroupError> {
    let relative = path.trim_start_matches('/');
    let what = |step: &str| format!("cgroup hierarchy {label}: {step} {path}");
    let dir = sys::cgroup::open_dir(mount, relative).map_err(cg_io(what("open")))?;
    let mut children = Vec::new();
    if path == "/" {
        let rest: Vec<String> = rest.iter().map(|p| p.to_string()).collect();
        for top in tops(&rest) {
            let below_top: Vec<&String> = rest.iter().filter(|p| *p != top && below(p, top).is_some()).collect();
            children.push(dir_entry(mount, top, below(top, "/").unwrap_or_default(), &below_top, cnames, label, options)?);
        }
    } else {
        for child in sys::cgroup::child_dirs(dir.as_fd()).map_err(cg_io(what("list")))? {
            children.push(dir_entry(mount, &join(path, &child), &child, &[], cnames, label, options)?);
        }
    }
    let mut entry = pb::CgroupDirEntry { dir_name: name.to_string(), children, ..Default::default() };
    if options.properties {
        let (mode, uid, gid, dev, inode) = sys::cgroup::stat_at(&dir, "").map_err(cg_io(what("stat")))?.unwrap_or_default();
        entry.dir_perms = Some(pb::CgroupPerms { mode, uid, gid });
        entry.properties = properties(&dir, cnames, (dev, inode), options).map_err(|e| match e {
            CgroupError::Io { what: step, source } => CgroupError::Io { what: format!("cgroup hierarchy {label}: {path}: {step}"), source },
            other => other,
        })?;
    }
    Ok(entry)
}

/// The properties of the cgroup directory `dir` (those its kernel has).
fn properties(dir: &OwnedFd, cnames: &[String], dev_inode: (u64, u64), options: &Options) -> Result<Vec<pb::CgroupPropEntry>, CgroupError> {
    let unified = cnames.iter().all(|c| c.is_empty());
    let enabled = if unified {
        match sys::cgroup::read_file(dir, "cgroup.controllers") {
            Ok((text, ..)) => text,
            Err(_) => String::new(),
        }
    } else {
        String::new()
    };
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let mut out = Vec::new();
    for name in super::props::for_dir(cnames, &enabled) {
        let (text, mode, uid, gid) = match sys::cgroup::read_file(dir, name) {
            Ok(read) => read,
            // Not on this kernel (CRIU: "This cgroup property may not exist").
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(cg_io(format!("read {name}"))(error)),
        };
        let value = match name {
            _ if super::props::MEMBERSHIP_FILES.contains(&name) => String::new(),
            // `oom_kill_disable 0\nunder_oom 0\n...`: the writable flag alone, as CRIU keeps it.
            "memory.oom_control" => text.lines().find_map(|l| l.strip_prefix("oom_kill_disable ")).unwrap_or("0").trim().to_string(),
            _ => text.trim_end_matches('\n').to_string(),
        };
        out.push(pb::CgroupPropEntry { name: name.to_string(), value, perms: Some(pb::CgroupPerms { mode, uid, gid }) });
    }
    if let Some(origin) = options.freezer.as_ref().filter(|o| o.dir == dev_inode) {
        let fits = if unified { origin.file == "cgroup.freeze" } else { origin.file == "freezer.state" && cnames.iter().any(|c| c == "freezer") };
        if fits {
            // The state before crust froze it, not the state while dumped.
            match out.iter_mut().find(|p| p.name == origin.file) {
                Some(prop) => prop.value = origin.value.clone(),
                None => {
                    let perms = sys::cgroup::read_file(dir, origin.file).ok().map(|(_, mode, uid, gid)| pb::CgroupPerms { mode, uid, gid });
                    out.push(pb::CgroupPropEntry { name: origin.file.to_string(), value: origin.value.clone(), perms });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::parse;

    const OWN: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/1ebd\n0::/\n";

    #[test]
    fn a_tree_in_crusts_cgroups_has_no_sets() {
        let own = parse(OWN);
        let numbered = number_sets(&own, &[own.clone(), own.clone()], None, &[(1, 1), (1, 2)]).unwrap();
        assert_eq!(numbered, Numbered { per_task: vec![1, 1], sets: vec![] });
    }

    #[test]
    fn tasks_elsewhere_get_sets_from_2_in_task_order() {
        let own = parse(OWN);
        let a = parse("9:name=systemd:/\n8:pids:/jail/a\n4:memory:/jail\n0::/jail\n");
        let b = parse("9:name=systemd:/\n8:pids:/jail/a/b\n4:memory:/jail\n0::/jail\n");
        let numbered = number_sets(&own, &[a.clone(), own.clone(), b, a], None, &[(1, 1), (1, 2), (3, 3), (4, 4)]).unwrap();
        assert_eq!(numbered.per_task, [2, 1, 3, 2]);
        let names: Vec<(&str, &str)> = numbered.sets[0].ctls.iter().map(|m| (m.name.as_str(), m.path.as_str())).collect();
        assert_eq!(names, [("", "/jail"), ("memory", "/jail"), ("name=systemd", "/"), ("pids", "/jail/a")]);
        assert!(numbered.sets[0].ctls.iter().all(|m| m.cgns_prefix.is_none()));
    }

    #[test]
    fn a_cgroup_namespace_gives_prefixes() {
        // The runc container of section 1 of containers.md: CRIU wrote prefix 18 for
        // /crust-research/b1 and none for hierarchies whose namespace root is `/`.
        let own = parse(OWN);
        let full = parse("8:pids:/crust-research/b1/sub\n7:blkio:/\n0::/crust-research/b1\n");
        let inside = parse("8:pids:/sub\n7:blkio:/\n0::/\n");
        let numbered = number_sets(&own, &[full], Some(&[inside]), &[(5, 5)]).unwrap();
        let prefixes: Vec<(&str, Option<u32>)> = numbered.sets[0].ctls.iter().map(|m| (m.name.as_str(), m.cgns_prefix)).collect();
        assert_eq!(prefixes, [("", Some(18)), ("blkio", None), ("pids", Some(18))]);
        // A task moved outside its namespace's root is refused by name.
        let full = parse("8:pids:/elsewhere\n");
        let inside = parse("8:pids:/../elsewhere\n");
        let error = number_sets(&own, &[full], Some(&[inside]), &[(5, 6)]).unwrap_err().to_string();
        assert!(error.starts_with("pid 5 tid 6: cgroup /elsewhere of hierarchy \"pids\""), "{error}");
    }

    #[test]
    fn prefixes() {
        assert_eq!(cgns_prefix("/a/b", "/"), Some(4));
        assert_eq!(cgns_prefix("/", "/"), Some(0));
        assert_eq!(cgns_prefix("/a/b", "/b"), Some(2));
        assert_eq!(cgns_prefix("/a/b", "/a/b"), Some(0));
        assert_eq!(cgns_prefix("/ab", "/b"), None);
    }

    #[test]
    fn tops_of_paths() {
        let paths: Vec<String> = ["/a/b", "/a", "/c"].map(String::from).to_vec();
        assert_eq!(tops(&paths), [&paths[1], &paths[2]]);
        let rooted: Vec<String> = ["/a", "/"].map(String::from).to_vec();
        assert_eq!(tops(&rooted), [&rooted[1]]);
    }
}
