//! Which cgroup files are properties, and in which order restore writes them.
//!
//! The v1 lists are CRIU 4.2's built-in ones (its dump log prints them; on this host
//! CRIU recorded exactly these), plus on every v1 directory `cgroup.clone_children`,
//! `notify_on_release` and, with an empty value (only their owner and mode count),
//! `cgroup.procs` and `tasks`. The unified hierarchy gets CRIU's `cgroup.*` files and,
//! for each controller enabled in the directory (its `cgroup.controllers`), that
//! controller's v2 limits, which CRIU 4.2 does not record (`memory.max`, `pids.max`,
//! ...): CRIU's restore writes any property it finds, so it takes them too.
//!
//! Restore phases ([`Phase`]): what must be in place before a task joins (a cpuset's
//! cpus and mems, the devices list, a threaded type, the controllers given to the
//! children); the limits once every task is restored (a restore needs more memory and
//! tasks for a moment than the tree does); the freezer state once the tree runs.
//!
//! Pure.

/// Per v1 controller, its properties (CRIU 4.2's lists).
const V1: &[(&str, &[&str])] = &[
    ("cpu", &["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us", "cpu.rt_runtime_us"]),
    (
        "memory",
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.soft_limit_in_bytes",
            "memory.move_charge_at_immigrate",
            "memory.oom_control",
            "memory.use_hierarchy",
            "memory.kmem.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ],
    ),
    (
        "cpuset",
        &[
            "cpuset.cpus",
            "cpuset.mems",
            "cpuset.memory_migrate",
            "cpuset.cpu_exclusive",
            "cpuset.mem_exclusive",
            "cpuset.mem_hardwall",
            "cpuset.memory_spread_page",
            "cpuset.memory_spread_slab",
            "cpuset.sched_load_balance",
            "cpuset.sched_relax_domain_level",
        ],
    ),
    ("blkio", &["blkio.weight"]),
    ("net_cls", &["net_cls.classid"]),
    ("net_prio", &["net_prio.ifpriomap"]),
    ("pids", &["pids.max"]),
    ("devices", &["devices.list"]),
];

/// Every v1 directory's own files.
const V1_COMMON: &[&str] = &["cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks"];

/// Files whose value is never recorded or written (only owner and mode).
pub(crate) const MEMBERSHIP_FILES: &[&str] = &["cgroup.procs", "tasks", "cgroup.threads"];

/// Every unified directory's own files (CRIU 4.2's list).
const V2_COMMON: &[&str] = &["cgroup.subtree_control", "cgroup.max.descendants", "cgroup.max.depth", "cgroup.freeze", "cgroup.type"];

/// Per v2 controller, the limits crust records.
const V2: &[(&str, &[&str])] = &[
    ("cpu", &["cpu.weight", "cpu.max"]),
    ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
    ("io", &["io.weight"]),
    ("memory", &["memory.min", "memory.low", "memory.high", "memory.max", "memory.swap.max"]),
    ("pids", &["pids.max"]),
];

/// The properties of a directory of a hierarchy with controllers `cnames`
/// (`[""]`: unified, then `enabled` are the controllers of its `cgroup.controllers`),
/// in the order cgroup.img lists them.
pub(crate) fn for_dir(cnames: &[String], enabled: &[&str]) -> Vec<&'static str> {
    let mut names = Vec::new();
    if cnames.iter().all(|c| c.is_empty()) {
        for (controller, list) in V2 {
            if enabled.contains(controller) {
                names.extend_from_slice(list);
            }
        }
        names.extend_from_slice(V2_COMMON);
    } else {
        for controller in cnames {
            if let Some((_, list)) = V1.iter().find(|(name, _)| name == controller) {
                names.extend_from_slice(list);
            }
        }
        names.extend_from_slice(V1_COMMON);
    }
    names
}

/// When restore writes a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Before any task joins the cgroup (top-down, right after the directories).
    Early,
    /// Once every task is restored, before the tree runs.
    Late,
    /// Once the tree runs: the freezer state.
    Last,
    /// Never: membership files, read-only or derived values.
    Never,
}

/// When property `name` with `value` is written.
pub(crate) fn phase(name: &str, value: &str) -> Phase {
    match name {
        _ if MEMBERSHIP_FILES.contains(&name) => Phase::Never,
        // Only `threaded` can be written; `domain` is the default, the others derived.
        "cgroup.type" if value == "threaded" => Phase::Early,
        "cgroup.type" => Phase::Never,
        "cgroup.subtree_control" | "cpuset.cpus" | "cpuset.mems" | "devices.list" | "memory.use_hierarchy" | "memory.kmem.limit_in_bytes" => {
            Phase::Early
        }
        "freezer.state" | "cgroup.freeze" => Phase::Last,
        _ => Phase::Late,
    }
}

/// The writes that give file `name` the dumped `value`: (file, value) pairs in order.
/// A devices list becomes a deny of everything and an allow per line; a v2
/// `subtree_control` list becomes `+controller` words; `net_prio.ifpriomap` is
/// written one interface at a time; an empty value writes nothing.
pub(crate) fn writes(name: &str, value: &str) -> Vec<(String, String)> {
    match name {
        "devices.list" => {
            let mut out = vec![("devices.deny".to_string(), "a".to_string())];
            out.extend(value.lines().filter(|l| !l.trim().is_empty()).map(|line| ("devices.allow".to_string(), line.to_string())));
            out
        }
        "cgroup.subtree_control" => {
            let words: Vec<String> = value.split_whitespace().map(|c| format!("+{c}")).collect();
            if words.is_empty() {
                Vec::new()
            } else {
                vec![(name.to_string(), words.join(" "))]
            }
        }
        "net_prio.ifpriomap" => value.lines().filter(|l| !l.trim().is_empty()).map(|line| (name.to_string(), line.to_string())).collect(),
        _ if value.is_empty() => Vec::new(),
        _ => vec![(name.to_string(), value.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_per_hierarchy() {
        let pids = for_dir(&["pids".to_string()], &[]);
        assert_eq!(pids, ["pids.max", "cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks"]);
        let cpu = for_dir(&["cpu".to_string(), "cpuacct".to_string()], &[]);
        assert_eq!(cpu.len(), 5 + 4);
        let unified = for_dir(&[String::new()], &["memory", "pids"]);
        assert_eq!(&unified[..6], ["memory.min", "memory.low", "memory.high", "memory.max", "memory.swap.max", "pids.max"]);
        assert_eq!(unified[6], "cgroup.subtree_control");
        assert_eq!(for_dir(&["name=systemd".to_string()], &[]), V1_COMMON);
    }

    #[test]
    fn phases_and_writes() {
        assert_eq!(phase("cgroup.procs", ""), Phase::Never);
        assert_eq!(phase("cgroup.type", "domain"), Phase::Never);
        assert_eq!(phase("cgroup.type", "threaded"), Phase::Early);
        assert_eq!(phase("cpuset.mems", "0"), Phase::Early);
        assert_eq!(phase("pids.max", "64"), Phase::Late);
        assert_eq!(phase("freezer.state", "THAWED"), Phase::Last);
        assert_eq!(
            writes("devices.list", "c 1:3 rwm\nc 5:0 rwm"),
            [("devices.deny", "a"), ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 5:0 rwm")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(writes("cgroup.subtree_control", "memory pids"), [("cgroup.subtree_control".to_string(), "+memory +pids".to_string())]);
        assert!(writes("cgroup.subtree_control", "").is_empty());
        assert!(writes("cgroup.clone_children", "").is_empty());
    }
}
