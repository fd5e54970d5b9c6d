//! Cgroups, a subsystem with only its dump half so far: each process's cgroups as
//! CRIU's `cgroup.img` keeps them, so that CRIU's restore puts a crust dump's tasks
//! back where they were. Set 1 is the dumping tool's own (`inventory.root_cg_set`, not
//! written); a process elsewhere gets a set of its own (2, 3, ...: one entry per line of
//! /proc/PID/cgroup, the hierarchy's controllers and the path), named by every thread's
//! `thread_core.cg_set`, and each hierarchy a controller entry with the directories of
//! the sets (no properties: CRIU's restore makes a missing one with its defaults). As
//! CRIU, nothing is written when every process is in crust's own cgroups.
//!
//! Restore does not move the tree into its cgroups yet: it comes back in crust's own
//! (`restore/image_set.rs` says so in the log).
//!
//! Invariant: `sets` is pure; only `read` looks at /proc.

use std::collections::BTreeMap;

use crust_images::pb;

/// One process's cgroups: (controllers of the hierarchy as /proc/PID/cgroup names them,
/// `""` for the unified one; path), in the file's order.
pub(crate) type Membership = Vec<(String, String)>;

/// Parses /proc/PID/cgroup (`ID:CONTROLLERS:PATH` lines). Pure.
pub(crate) fn parse(text: &str) -> Membership {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}

/// The cgroups of `pid` (`"self"` for crust), empty when /proc says nothing.
pub(crate) fn read(pid: &str) -> Membership {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default())
}

/// What the images say about cgroups: each process's set (in the order given) and
/// cgroup.img's entry, `None` when every process is in the dumping tool's set.
#[derive(Debug, PartialEq)]
pub(crate) struct Sets {
    pub(crate) per_process: Vec<u32>,
    pub(crate) image: Option<pb::CgroupEntry>,
}

/// The set of the dumping tool itself (`inventory.root_cg_set`).
pub(crate) const OWN_SET: u32 = 1;

/// Groups `processes` into CRIU's cgroup sets against the tool's own `own`. Pure.
pub(crate) fn sets(own: &Membership, processes: &[Membership]) -> Sets {
    let mut known: Vec<&Membership> = Vec::new();
    let mut per_process = Vec::with_capacity(processes.len());
    for membership in processes {
        if membership == own || membership.is_empty() {
            per_process.push(OWN_SET);
            continue;
        }
        let index = match known.iter().position(|m| *m == membership) {
            Some(index) => index,
            None => {
                known.push(membership);
                known.len() - 1
            }
        };
        per_process.push(OWN_SET + 1 + index as u32);
    }
    if known.is_empty() {
        return Sets { per_process, image: None };
    }
    let sets = known
        .iter()
        .enumerate()
        .map(|(index, membership)| pb::CgSetEntry {
            id: OWN_SET + 1 + index as u32,
            // One member per hierarchy, named by its controllers as /proc names them.
            ctls: membership
                .iter()
                .map(|(controllers, path)| pb::CgMemberEntry { name: controllers.clone(), path: path.clone(), cgns_prefix: None })
                .collect(),
        })
        .collect();
    // Per hierarchy (in the first set's order), the directories its sets name.
    let mut hierarchies: BTreeMap<&str, (usize, Vec<String>)> = BTreeMap::new();
    for membership in &known {
        for (position, (controllers, path)) in membership.iter().enumerate() {
            let entry = hierarchies.entry(controllers.as_str()).or_insert((position, Vec::new()));
            let dir = path.trim_start_matches('/').to_string();
            if !entry.1.contains(&dir) {
                entry.1.push(dir);
            }
        }
    }
    let mut ordered: Vec<(&str, (usize, Vec<String>))> = hierarchies.into_iter().collect();
    ordered.sort_by_key(|(_, (position, _))| *position);
    let controllers = ordered
        .into_iter()
        .map(|(controllers, (_, dirs))| pb::CgControllerEntry {
            cnames: controllers.split(',').map(str::to_string).collect(),
            dirs: dirs.into_iter().map(|dir_name| pb::CgroupDirEntry { dir_name, ..Default::default() }).collect(),
            is_threaded: None,
        })
        .collect();
    Sets { per_process, image: Some(pb::CgroupEntry { sets, controllers }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "9:name=systemd:/\n8:pids:/\n1:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn proc_cgroup_parses() {
        assert_eq!(parse(OWN)[2], ("cpu,cpuacct".to_string(), "/".to_string()));
        assert_eq!(parse(OWN)[3], (String::new(), "/".to_string()));
    }

    #[test]
    fn a_tree_in_crusts_cgroups_writes_no_image() {
        let own = parse(OWN);
        assert_eq!(sets(&own, &[own.clone(), own.clone()]), Sets { per_process: vec![1, 1], image: None });
    }

    #[test]
    fn processes_elsewhere_get_sets_from_2() {
        let own = parse(OWN);
        let elsewhere = parse("9:name=systemd:/\n8:pids:/jail/a\n1:cpu,cpuacct:/\n0::/\n");
        let Sets { per_process, image } = sets(&own, &[own.clone(), elsewhere.clone(), elsewhere]);
        assert_eq!(per_process, vec![1, 2, 2]);
        let image = image.expect("cgroup.img");
        assert_eq!(image.sets.len(), 1);
        assert_eq!(image.sets[0].id, 2);
        let names: Vec<(&str, &str)> = image.sets[0].ctls.iter().map(|m| (m.name.as_str(), m.path.as_str())).collect();
        assert_eq!(names, [("name=systemd", "/"), ("pids", "/jail/a"), ("cpu,cpuacct", "/"), ("", "/")]);
        assert_eq!(image.controllers[1].cnames, ["pids"]);
        assert_eq!(image.controllers[1].dirs[0].dir_name, "jail/a");
        assert_eq!(image.controllers[2].cnames, ["cpu", "cpuacct"]);
        assert_eq!(image.controllers[2].dirs[0].dir_name, "");
    }
}
