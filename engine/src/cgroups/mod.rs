//! Cgroups, a subsystem with a dump half and a restore half, in CRIU's `cgroup.img`.
//!
//! - A *set* is one task's membership: per hierarchy (named by its controllers as
//!   /proc/PID/cgroup names them: `pids`, `cpu,cpuacct`, `name=systemd`, `""` for the
//!   unified one) the cgroup path, and for a task in a cgroup namespace of the tree's
//!   own the length of the namespace's root in that path (`cgns_prefix`). Members are
//!   kept sorted by name, as CRIU keeps them. Set 1 is the dumping tool's own
//!   (`inventory.root_cg_set`, not written); the tree's others are 2, 3, ... in the
//!   order the tree's threads are met, named by each thread's `thread_core.cg_set`.
//! - A *controller* entry per hierarchy: its controller names and the directories of
//!   the tree's cgroups (`dump.rs`): each set's cgroup with every cgroup below it, the
//!   path above the first one collapsed into its name (`crust-research/b1`), with the
//!   properties of `props.rs` and the owners and modes.
//! - `freezer.rs`: `--freeze-cgroup`, the tree frozen through the v1 freezer or the
//!   unified hierarchy's `cgroup.freeze`.
//! - `restore.rs`: the plan (pure: the image, `--manage-cgroups` mode, `--cgroup-root`)
//!   and its execution: the hierarchies mounted detached, the directories made, the
//!   properties written in the order the kernel takes them, every task put in its set.
//!
//! As CRIU, nothing is written when every task is in crust's own cgroups.
//!
//! Invariant: the parsers and planners are pure; the hierarchies are reached through
//! detached mounts of crust's own (`sys::cgroup`), never through the host's mounts.

use std::io;

pub(crate) mod dump;
pub(crate) mod freezer;
pub(crate) mod props;
pub(crate) mod restore;

/// Why cgroups could not be dumped or restored.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A step on a cgroup file or directory (`what` names the hierarchy and the path).
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// Something crust will not do (or an image it will not take), in one line.
    #[error("{0}")]
    Refused(String),
}

pub(crate) fn cg_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> CgroupError {
    let what = what.into();
    move |source| CgroupError::Io { what, source }
}

/// The `--manage-cgroups` modes (CRIU's names; RPC `criu_cg_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupMode {
    /// No cgroups at all: nothing dumped but membership, nothing moved on restore.
    Ignore,
    /// Restore: every cgroup must exist; no property is written.
    None,
    /// Restore: every cgroup must exist; every property is written.
    Props,
    /// Restore: missing cgroups are made, properties written to those only (the default).
    #[default]
    Soft,
    /// Restore: missing cgroups are made, properties written to every one.
    Full,
    /// Restore: no cgroup may exist yet; all are made with their properties.
    Strict,
}

impl CgroupMode {
    /// A mode by CRIU's name.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "none" => CgroupMode::None,
            "props" => CgroupMode::Props,
            "soft" => CgroupMode::Soft,
            "full" => CgroupMode::Full,
            "strict" => CgroupMode::Strict,
            "ignore" => CgroupMode::Ignore,
            other => return Err(format!("unknown cgroups mode `{other}' (none, props, soft, full, strict, ignore)")),
        })
    }

    /// CRIU's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            CgroupMode::Ignore => "ignore",
            CgroupMode::None => "none",
            CgroupMode::Props => "props",
            CgroupMode::Soft => "soft",
            CgroupMode::Full => "full",
            CgroupMode::Strict => "strict",
        }
    }
}

/// One line of /proc/PID/cgroup: the hierarchy's controllers (`""`: unified) and the
/// path, as the reader's cgroup namespace sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Member {
    pub(crate) controllers: String,
    pub(crate) path: String,
}

/// One task's cgroups, sorted by controllers (CRIU's order: byte order of the names).
pub(crate) type Membership = Vec<Member>;

/// Parses /proc/PID/cgroup (`ID:CONTROLLERS:PATH` lines) into a sorted membership.
/// Pure.
pub(crate) fn parse(text: &str) -> Membership {
    let mut members: Membership = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Member { controllers: controllers.to_string(), path: path.to_string() })
        })
        .collect();
    members.sort();
    members
}

/// The cgroups of task `tid` of process `pid` (`"self"`: crust's own).
pub(crate) fn read(pid: &str, tid: &str) -> Result<Membership, CgroupError> {
    let path = if pid == "self" { "/proc/self/cgroup".to_string() } else { format!("/proc/{pid}/task/{tid}/cgroup") };
    let text = std::fs::read_to_string(&path).map_err(cg_io(format!("read {path}")))?;
    Ok(parse(&text))
}

/// The set of the dumping tool itself (`inventory.root_cg_set`).
pub(crate) const OWN_SET: u32 = 1;

/// The controller names of a hierarchy as cgroup.img lists them (`cnames`):
/// `cpu,cpuacct` → `cpu`, `cpuacct`; the unified hierarchy is `[""]`.
pub(crate) fn cnames(controllers: &str) -> Vec<String> {
    controllers.split(',').map(str::to_string).collect()
}

/// `path` below `top` (both absolute cgroup paths): `Some("")` for `top` itself,
/// `Some("a/b")` below it, `None` elsewhere.
pub(crate) fn below<'a>(path: &'a str, top: &str) -> Option<&'a str> {
    if top == "/" {
        return Some(path.trim_start_matches('/'));
    }
    let rest = path.strip_prefix(top)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// Joins an absolute cgroup path and a relative one (`""`: the path itself).
pub(crate) fn join(path: &str, relative: &str) -> String {
    match (path, relative) {
        (_, "") => path.to_string(),
        ("/", _) => format!("/{relative}"),
        _ => format!("{path}/{relative}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "9:name=systemd:/\n8:pids:/\n1:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn proc_cgroup_parses_sorted_by_controllers() {
        let members = parse(OWN);
        let names: Vec<&str> = members.iter().map(|m| m.controllers.as_str()).collect();
        assert_eq!(names, ["", "cpu,cpuacct", "name=systemd", "pids"]);
        assert_eq!(members[1].path, "/");
        // A path may hold colons.
        assert_eq!(parse("4:memory:/a:b\n")[0].path, "/a:b");
        assert_eq!(cnames("cpu,cpuacct"), ["cpu", "cpuacct"]);
        assert_eq!(cnames(""), [""]);
    }

    #[test]
    fn paths_below_a_top() {
        assert_eq!(below("/a/b", "/a"), Some("b"));
        assert_eq!(below("/a", "/a"), Some(""));
        assert_eq!(below("/ab", "/a"), None);
        assert_eq!(below("/a/b", "/"), Some("a/b"));
        assert_eq!(below("/", "/"), Some(""));
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/x", "a/b"), "/x/a/b");
        assert_eq!(join("/x", ""), "/x");
    }
}
