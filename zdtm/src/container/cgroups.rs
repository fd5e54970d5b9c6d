//! The container flavor's cgroups: every hierarchy mounted here (cgroup v1 controllers,
//! named ones, the unified v2 one), found from /proc/self/mountinfo and
//! /proc/self/cgroup; per run a directory `crust-zdtm-SLOT` below the harness's own
//! cgroup in each, per test a directory below that with distinctive limits
//! ([`LIMITS`]); their removal. The parsers are pure; the rest is file I/O on cgroupfs.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One mounted cgroup hierarchy and the harness's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The controllers field of /proc/PID/cgroup: `memory`, `cpu,cpuacct`,
    /// `name=systemd`, or empty for the unified (v2) hierarchy.
    pub controllers: String,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The harness's own cgroup directory in it.
    pub own: PathBuf,
}

impl Hierarchy {
    /// The unified (cgroup v2) hierarchy.
    pub fn is_unified(&self) -> bool {
        self.controllers.is_empty()
    }

    /// A v1 hierarchy with controller `name` (`memory`), or, for `""`, the unified one.
    pub fn has(&self, name: &str) -> bool {
        if name.is_empty() {
            return self.is_unified();
        }
        self.controllers.split(',').any(|controller| controller == name)
    }

    /// Short name for messages: the controllers, or `unified`.
    pub fn label(&self) -> &str {
        if self.is_unified() {
            "unified"
        } else {
            &self.controllers
        }
    }
}

/// A limit the harness sets on every test's cgroup: in hierarchy `controller` (`""`: the
/// unified one), `file` gets `value`. Values are not the defaults, so a restore that
/// loses them shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The v1 controller, or `""` for the unified hierarchy.
    pub controller: &'static str,
    /// File in the cgroup directory.
    pub file: &'static str,
    /// What the harness writes.
    pub value: &'static str,
}

/// The limits of every test's cgroup (1.5 GiB of memory, 4096 tasks, 512 cpu shares);
/// a file the hierarchy lacks (v2 controllers not enabled) is left out.
pub const LIMITS: &[Limit] = &[
    Limit { controller: "memory", file: "memory.limit_in_bytes", value: "1610612736" },
    Limit { controller: "pids", file: "pids.max", value: "4096" },
    Limit { controller: "cpu", file: "cpu.shares", value: "512" },
    Limit { controller: "", file: "memory.max", value: "1610612736" },
    Limit { controller: "", file: "pids.max", value: "4096" },
];

/// The v2 controllers the harness enables below its own cgroup when it can.
const UNIFIED_CONTROLLERS: &[&str] = &["memory", "pids"];

/// `(mount point, root, controllers)` of each cgroup mount in mountinfo text; the
/// controllers are the super options' controller names (`cpu`, `name=systemd`), empty
/// for cgroup2.
pub fn parse_cgroup_mounts(mountinfo: &str) -> Vec<(PathBuf, String, String)> {
    const OPTIONS: &[&str] = &["rw", "ro", "nsdelegate", "memory_recursiveprot", "memory_localevents", "memory_hugetlb_accounting", "favordynmods", "clone_children", "noprefix", "xattr", "cpuset_v2_mode"];
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((head, tail)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = head.split(' ').collect();
        let mut tail = tail.split(' ');
        let (Some(fstype), Some(_source), Some(super_options)) = (tail.next(), tail.next(), tail.next()) else { continue };
        if fields.len() < 5 || (fstype != "cgroup" && fstype != "cgroup2") {
            continue;
        }
        let controllers = if fstype == "cgroup2" {
            String::new()
        } else {
            super_options
                .split(',')
                .filter(|option| !OPTIONS.contains(option) && !option.starts_with("release_agent="))
                .collect::<Vec<_>>()
                .join(",")
        };
        mounts.push((PathBuf::from(fields[4]), fields[3].to_string(), controllers));
    }
    mounts
}

/// `(controllers, path)` of each line of /proc/PID/cgroup (`4:memory:/a/b`, `0::/`).
pub fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// The hierarchies of `mountinfo` with the harness's own cgroup from `proc_cgroup`:
/// each mounted hierarchy once (the first mount of it), its own directory being the
/// mount point plus the cgroup path below the mount's root.
pub fn hierarchies(mountinfo: &str, proc_cgroup: &str) -> Vec<Hierarchy> {
    let own = parse_proc_cgroup(proc_cgroup);
    let mut found: Vec<Hierarchy> = Vec::new();
    for (mount, root, controllers) in parse_cgroup_mounts(mountinfo) {
        if found.iter().any(|known| known.controllers == controllers) {
            continue;
        }
        let same = |listed: &str| {
            let mut a: Vec<&str> = listed.split(',').filter(|c| !c.is_empty()).collect();
            let mut b: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        let Some((_, path)) = own.iter().find(|(listed, _)| same(listed)) else { continue };
        // The mount shows the hierarchy from `root` down; our cgroup must lie below it.
        let root = root.trim_end_matches('/');
        let below = if root.is_empty() {
            path.as_str()
        } else if path == root {
            ""
        } else if let Some(rest) = path.strip_prefix(&format!("{root}/")) {
            rest
        } else {
            continue;
        };
        let below = below.trim_start_matches('/');
        let own = if below.is_empty() { mount.clone() } else { mount.join(below) };
        found.push(Hierarchy { controllers, mount, own });
    }
    found
}

/// The hierarchies of this host, from the harness's own /proc files.
pub fn host_hierarchies() -> anyhow::Result<Vec<Hierarchy>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
    Ok(hierarchies(&mountinfo, &cgroup))
}

/// Creates `parent/name` in `hierarchy` (a cpuset gets its parent's cpus and mems: an
/// empty cpuset takes no task). Returns the directory.
pub fn create(hierarchy: &Hierarchy, parent: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
    if hierarchy.has("cpuset") {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = std::fs::read_to_string(parent.join(file)).with_context(|| format!("read {}", parent.join(file).display()))?;
            write(&dir.join(file), value.trim())?;
        }
    }
    if hierarchy.is_unified() {
        enable_unified_controllers(parent);
    }
    Ok(dir)
}

/// Enables the [`UNIFIED_CONTROLLERS`] that `parent` offers in `parent`'s
/// `cgroup.subtree_control`, for the child just made there. Never in the child itself:
/// a non-root cgroup that delegates a controller takes no process (the test's cgroup
/// refused its init with EBUSY on a v2-only host whose harness sits in the root,
/// 2026-12-06). A cgroup with processes of its own cannot delegate controllers either
/// (the harness's, when it is not the root), so failures leave the controllers off and
/// the v2 limits out.
fn enable_unified_controllers(parent: &Path) {
    let offered = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    for controller in UNIFIED_CONTROLLERS.iter().filter(|c| offered.split_whitespace().any(|o| o == **c)) {
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{controller}"));
    }
}

/// Sets every [`LIMITS`] entry of `hierarchy` whose file `dir` has; returns the files
/// set with their values.
pub fn set_limits(hierarchy: &Hierarchy, dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut set = Vec::new();
    for limit in LIMITS.iter().filter(|limit| hierarchy.has(limit.controller)) {
        let file = dir.join(limit.file);
        if file.exists() {
            write(&file, limit.value)?;
            set.push((file, limit.value.to_string()));
        }
    }
    Ok(set)
}

/// The freezer state file of a test's cgroup in `hierarchy` and its thawed value:
/// `freezer.state` = `THAWED` (v1 freezer), `cgroup.freeze` = `0` (unified).
pub fn freezer_file(hierarchy: &Hierarchy) -> Option<(&'static str, &'static str)> {
    if hierarchy.has("freezer") {
        Some(("freezer.state", "THAWED"))
    } else if hierarchy.is_unified() {
        Some(("cgroup.freeze", "0"))
    } else {
        None
    }
}

/// Thaws `dir` of `hierarchy` if it is a freezer cgroup (a frozen task cannot even die).
pub fn thaw(hierarchy: &Hierarchy, dir: &Path) {
    if let Some((file, thawed)) = freezer_file(hierarchy) {
        let path = dir.join(file);
        if path.exists() {
            let _ = std::fs::write(&path, thawed);
        }
    }
}

/// Pids listed in `dir/cgroup.procs`.
pub fn processes(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// Removes `dir` and every cgroup below it, deepest first, retrying for up to `timeout`
/// while dying tasks still hold one (EBUSY).
pub fn remove_tree(dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs);
    dirs.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for path in dirs {
        loop {
            match std::fs::remove_dir(&path) {
                Ok(()) => break,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                Err(error) if Instant::now() < deadline && error.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("remove cgroup {} (tasks {:?})", path.display(), processes(&path))
                    })
                }
            }
        }
    }
    Ok(())
}

/// Child cgroups (directories) below `dir`, not `dir` itself.
pub fn children(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}

fn collect_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    found.push(dir.to_path_buf());
    for child in children(dir) {
        collect_dirs(&child, found);
    }
}

fn write(file: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(file, value).with_context(|| format!("write {value} into {}", file.display()))
}

/// Checks that the hierarchies give the flavor what it needs: at least one, and a
/// freezer (v1) or the unified hierarchy for `--freeze-cgroup`.
pub fn check_usable(hierarchies: &[Hierarchy]) -> anyhow::Result<()> {
    if hierarchies.is_empty() {
        bail!("no cgroup hierarchy mounted (mount cgroup2 on /sys/fs/cgroup)");
    }
    if !hierarchies.iter().any(|h| h.has("freezer") || h.is_unified()) {
        bail!("neither a v1 freezer nor the unified cgroup hierarchy is mounted: --freeze-cgroup needs one");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's layout on 2026-12-06: v1 controllers and a unified hierarchy side
    /// by side, the harness in a memory cgroup of its own.
    const HYBRID_MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpuacct,cpu
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
6:freezer:/
4:memory:/process_api/1ebd
1:cpu:/
2:cpu,cpuacct:/x
0::/
";

    #[test]
    fn hierarchies_of_a_hybrid_host() {
        let found = hierarchies(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let summary: Vec<(&str, &Path)> = found.iter().map(|h| (h.controllers.as_str(), h.own.as_path())).collect();
        assert_eq!(
            summary,
            vec![
                ("cpu", Path::new("/sys/fs/cgroup/cpu")),
                ("memory", Path::new("/sys/fs/cgroup/memory/process_api/1ebd")),
                ("name=systemd", Path::new("/sys/fs/cgroup/systemd")),
                ("", Path::new("/sys/fs/cgroup/unified")),
                ("freezer", Path::new("/sys/fs/cgroup/freezer")),
                ("cpuacct,cpu", Path::new("/sys/fs/cgroup/cpu,cpuacct/x")),
            ]
        );
        assert!(found[3].is_unified() && found[3].has("") && !found[1].has(""));
        assert!(found[5].has("cpu") && found[5].has("cpuacct") && !found[5].has("memory"));
        assert_eq!(found[3].label(), "unified");
        check_usable(&found).expect("freezer and unified");
    }

    #[test]
    fn a_unified_only_host_and_a_mount_of_a_subtree() {
        let mountinfo = "40 1 0:30 /sub /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let found = hierarchies(mountinfo, "0::/sub/me\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].own, PathBuf::from("/sys/fs/cgroup/me"));
        // Our cgroup outside the mounted subtree: not usable.
        assert!(hierarchies(mountinfo, "0::/other\n").is_empty());
        assert!(check_usable(&[]).is_err());
    }
}
