//! The task model both pipelines share, below them and the subsystems: CRIU's task
//! states, VMA status bits and seccomp modes (image ABI), and what /proc told about a
//! process at dump time ([`Collected`]).
//!
//! Invariant: plain data and constants; no I/O, nothing from a pipeline.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::procfs;

/// CRIU's task states (`task_core_entry.task_state`).
pub const TASK_ALIVE: u32 = 1;
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;

/// `SECCOMP_MODE_*` of a thread (`thread_core_entry.seccomp_mode`).
pub const SECCOMP_MODE_STRICT: u32 = 1;
pub const SECCOMP_MODE_FILTER: u32 = 2;

/// `sigev_notify`'s flag for a timer that signals one thread.
pub const SIGEV_THREAD_ID: u32 = 4;

/// Size of a kernel siginfo.
pub use crate::sys::ptrace::SIGINFO_SIZE;

/// CRIU's `VmaEntry.status` bits (image ABI).
pub mod vma {
    pub const REGULAR: u32 = 1 << 0;
    pub const STACK: u32 = 1 << 1;
    pub const VSYSCALL: u32 = 1 << 2;
    pub const VDSO: u32 = 1 << 3;
    pub const HEAP: u32 = 1 << 5;
    pub const FILE_PRIVATE: u32 = 1 << 6;
    pub const FILE_SHARED: u32 = 1 << 7;
    pub const ANON_SHARED: u32 = 1 << 8;
    pub const ANON_PRIVATE: u32 = 1 << 9;
    pub const SYSVIPC: u32 = 1 << 10;
    pub const VVAR: u32 = 1 << 12;
    pub const MEMFD: u32 = 1 << 14;
    /// A run of guard pages (MADV_GUARD_INSTALL) inside the areas before it: CRIU lists
    /// them after every real area.
    pub const GUARD: u32 = 1 << 16;
}

/// What /proc tells about a stopped process (the collect stage of a dump).
#[cfg_attr(test, derive(Default))]
pub(crate) struct Collected {
    pub(crate) stat: procfs::Stat,
    pub(crate) status: BTreeMap<String, String>,
    pub(crate) smaps: Vec<procfs::SmapsEntry>,
    pub(crate) auxv: Vec<u64>,
    pub(crate) exe: PathBuf,
    pub(crate) cwd: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) personality: u32,
    pub(crate) rlimits: Vec<(u64, u64)>,
    /// The inode of each of its namespaces (/proc/PID/ns).
    pub(crate) ns: crate::ns::NsInodes,
    /// The inode of the time namespace its children would start in.
    pub(crate) time_for_children: Option<u64>,
}
