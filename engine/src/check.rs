//! `crust check`: the kernel features crust needs, each probed for real.

use std::path::Path;

/// One probed feature.
#[derive(Clone, Debug)]
pub struct Feature {
    /// What is needed.
    pub name: &'static str,
    /// Whether this kernel has it.
    pub present: bool,
    /// How it was found out, or why it is missing.
    pub detail: String,
    /// Only some dumps need it (it says which); its absence does not fail `check`.
    pub optional: bool,
}

/// Probes every feature the dump and restore pipelines use.
pub fn check_features() -> Vec<Feature> {
    let mut out = Vec::new();
    let mut add = |name, present, detail: String| out.push(Feature { name, present, detail, optional: false });
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| crate::procfs::parse_key_values(&s).get("CapEff").cloned())
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0);
    add("CAP_SYS_ADMIN (clone3 set_tid, PR_SET_MM_MAP exe_fd)", root, "from CapEff".into());
    for (name, path) in [
        ("/proc/PID/pagemap", "/proc/self/pagemap"),
        ("/proc/PID/map_files", "/proc/self/map_files"),
        ("/proc/PID/auxv", "/proc/self/auxv"),
        ("/proc/PID/task/TID/children", "/proc/self/task"),
        ("/proc/PID/timers (POSIX timers)", "/proc/self/timers"),
    ] {
        add(name, Path::new(path).exists(), path.into());
    }
    let size = crate::sys::prctl_mm_map_size();
    add("prctl(PR_SET_MM, PR_SET_MM_MAP)", size == Some(104), format!("PR_SET_MM_MAP_SIZE = {size:?}"));
    let (major, minor) = kernel_version();
    add("clone3 with set_tid (5.5+)", (major, minor) >= (5, 5), format!("kernel {major}.{minor}"));
    add("PTRACE_GET/SETSIGMASK, PEEKSIGINFO (3.11+)", (major, minor) >= (3, 11), format!("kernel {major}.{minor}"));
    let mut optional = |name, present, detail: String| out.push(Feature { name, present, detail, optional: true });
    optional(
        "POSIX timer ids (PR_TIMER_CREATE_RESTORE_IDS, 6.17+; else placeholder timers, ids up to 4096)",
        crate::sys::timer_restore_ids_supported(),
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, GET)".into(),
    );
    let nft = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("nft").is_file()))
        .unwrap_or(false);
    optional("nft (dump --tcp-established locks connections)", nft, "nft in PATH".into());
    out
}

fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
