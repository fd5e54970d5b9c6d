//! Cross runs: `--dump-with PATH` dumps with another binary that speaks CRIU's command
//! line and restores with the engine, `--restore-with PATH` the reverse. With the
//! reference CRIU as the other tool, the tests CRIU itself refuses, or gets wrong on its
//! own (CRIU dumping and restoring fails the same way), are skipped with CRIU's words:
//! a failure there says nothing about crust. A few more wait on crust (`Cause::Crust`,
//! said so in the skip). Measured with CRIU 4.2.1 on Linux 6.18 (no soft-dirty, no
//! CAP_SYS_RESOURCE), 2026-12-06; `ZDTM_CROSS_RUN_ALL=1` runs them all to check again.
//! With CRIU on both halves the run checks the harness itself: `cargo xtest zdtm --engine
//! ci/criu --flavor container` gave 82 passed, 0 failed, 17 skipped (2026-12-06; 82
//! passed and 15 failed before these skips, each failure one of the limits below).
//! Checked again with `ZDTM_CROSS_RUN_ALL=1` on 2026-12-06 (host and ns flavors): every
//! test the table skips failed as its reason says, 24 of 24 with `--restore-with ci/criu`
//! and 16 of 16 with `--dump-with ci/criu` (where the table skips a test in one flavor
//! only, the other flavor passed).
//!
//! Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, /dev/zero mapped shared): CRIU
//! 4.2.1 on Linux 6.18 dumps it as a mapping of a memfd named `/dev/zero`, and crust
//! writes the same since 2026-12-06. CRIU's restore, of its own dumps and of crust's,
//! brings such an area back as a memfd mapping, `/memfd:/dev/zero (deleted)` in
//! /proc/PID/maps where the dump had `/dev/zero (deleted)`, with the same data and
//! sharing; the harness counts the two names as the same mapping
//! (`procfs::is_shared_anon`), so the tests with such areas run in both roles. crust's
//! restore maps them as shared anonymous memory again.

use crate::catalog::Flavor;

/// What the other tool does in a cross run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherDoes {
    /// `--dump-with`: it dumps, the engine restores.
    Dump,
    /// `--restore-with`: the engine dumps, it restores.
    Restore,
    /// It does both halves (`--engine ci/criu`, or both cross options naming it): the
    /// run checks the harness itself (the container flavors against a tool that
    /// supports containers), and every limit of CRIU's own applies.
    Both,
}

/// Whose the limit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// CRIU refuses the test, or gets it wrong on its own.
    Criu,
    /// crust does not yet write or read what CRIU needs for it.
    Crust,
}

/// A test that cannot pass with the reference CRIU in one role.
#[derive(Clone, Copy, Debug)]
pub struct CriuLimit {
    /// The test's name.
    pub test: &'static str,
    /// CRIU's role where it fails.
    pub role: OtherDoes,
    /// Only in this flavor (`None`: both).
    pub flavor: Option<Flavor>,
    /// Whose limit it is.
    pub cause: Cause,
    /// What CRIU says or does, in its words where it says something.
    pub reason: &'static str,
}

const fn limit(test: &'static str, role: OtherDoes, flavor: Option<Flavor>, reason: &'static str) -> CriuLimit {
    CriuLimit { test, role, flavor, cause: Cause::Criu, reason }
}

/// CRIU's `--freeze-cgroup` through a v1 freezer with a stopped task in it (observed
/// 2026-12-06, Linux 6.18 hybrid).
const FROZEN_STOPPED: &str = "with --freeze-cgroup on a v1 freezer and a stopped task in it, CRIU hangs in the kernel's \
    ptrace_attach right after \"SEIZE N (comm stopped): success\", until the harness's 120 s engine timeout";

use OtherDoes::{Dump, Restore};

/// The tests CRIU 4.2.1 refuses, or gets wrong on its own (CRIU dump and CRIU restore
/// fail the same way).
pub const CRIU_LIMITS: &[CriuLimit] = &[
    limit(
        "cow_file_shared",
        Restore,
        None,
        "CRIU keeps no copy-on-write sharing of a private file mapping's written pages between parent and child (CRIU dump and restore: \"FAIL: 0 of 1024 pages shared after restore, 992 before\", 2026-12-06)",
    ),
    limit(
        "guard_regions",
        Restore,
        None,
        "CRIU restores a guarded area merged with its anonymous neighbour, so the guard flag covers 19 pages instead of 16 (CRIU dump and restore alike; the test's own checks pass, 2026-12-06)",
    ),
    limit(
        "cow_file_shared",
        Dump,
        None,
        "CRIU keeps no copy-on-write sharing of a private file mapping's written pages between parent and child (CRIU dump and restore: \"FAIL: 0 of 1024 pages shared after restore, 992 before\", 2026-12-06)",
    ),
    limit(
        "threads_leader_gone",
        Dump,
        None,
        "CRIU dumps no thread group whose leader exited: \"Unable to interrupt task: N (Operation not permitted)\", \"Unable to detach from N: No such process\", \"Dumping FAILED.\" (in a pid namespace: \"Error (criu/seize.c:882): Zombies with threads are not supported\", 2026-12-06)",
    ),
    limit(
        "threads_leader_gone",
        Restore,
        None,
        "CRIU restores no thread group whose leader exited: \"Error (criu/cr-restore.c:877): Core info data missed for non-zombie\"",
    ),
    limit(
        "sysv_shm_host",
        Dump,
        Some(Flavor::Host),
        "CRIU refuses an attach of the host's System V memory: \"Task N with SysVIPC shmem map @ADDR doesn't live in IPC ns\"",
    ),
    limit(
        "sysv_shm_host",
        Restore,
        Some(Flavor::Host),
        "CRIU restores no attach of a segment of its own IPC namespace: \"Error (criu/shmem.c:306): Can't find sysv shmem for N\"",
    ),
    limit(
        "sockopts",
        Restore,
        None,
        "CRIU restores no UDP socket bound with IP_FREEBIND to an address the machine lacks (CRIU dump and restore alike): \"Error (criu/sk-inet.c:1059): inet: Can't bind inet socket (id 7): Cannot assign requested address\" (2026-12-06)",
    ),
    limit(
        "tree_creds",
        Dump,
        None,
        "CRIU cannot dump another user's task without CAP_SYS_RESOURCE: \"Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted\"",
    ),
    limit(
        "personality",
        Dump,
        None,
        "CRIU reads /proc/PID/personality (hex) as a decimal number: 0x00260000 dumped as 260000, \"status personality: 00260000 -> 0003f7a0\"",
    ),
    limit(
        "tree_misc",
        Dump,
        None,
        "CRIU reads /proc/PID/personality (hex) as a decimal number: \"status personality: 00600000 -> 000927c0\"",
    ),
    limit(
        "personality",
        Restore,
        None,
        "CRIU restores personality 0 (\"status personality: 00260000 -> 00000000\", CRIU dumping and restoring too)",
    ),
    limit(
        "tree_misc",
        Restore,
        None,
        "CRIU restores personality 0 (\"00600000 -> 0\", \"00040000 -> 0\", CRIU dumping and restoring too)",
    ),
    limit(
        "event_fds",
        Dump,
        None,
        "CRIU's dump drops EFD_SEMAPHORE (eventfd flags 2050 where the file has 2051): \"semaphore eventfd read is not 1\"",
    ),
    limit(
        "event_fds",
        Restore,
        None,
        "CRIU's restore makes the eventfd without EFD_SEMAPHORE: \"semaphore eventfd read is not 1\" (CRIU dumping and restoring too)",
    ),
    limit(
        "inet_sockets",
        Dump,
        None,
        "CRIU dumps no UDP receive queue: \"recv queued datagram: Resource temporarily unavailable\"",
    ),
    limit(
        "inet_sockets",
        Restore,
        None,
        "CRIU restores no UDP receive queue: \"recv queued datagram: Resource temporarily unavailable\" (CRIU dumping and restoring too)",
    ),
    limit(
        "sysv_ipc",
        Restore,
        None,
        "CRIU maps a SHM_RDONLY attach back as [me mr ms mw rd sh] instead of [me mr ms rd] (CRIU dumping and restoring too)",
    ),
    limit(
        "sysv_shm_host",
        Restore,
        Some(Flavor::Ns),
        "CRIU maps a SHM_RDONLY attach back as [me mr ms mw rd sh] instead of [me mr ms rd] (CRIU dumping and restoring too)",
    ),
    limit(
        "zombie_exit",
        Restore,
        None,
        "CRIU's restore gets an exit code of 128 or more wrong: \"status 0x1100, expected exit 145\" (CRIU dumping and restoring too)",
    ),
    limit(
        "zombie_nested",
        Restore,
        None,
        "CRIU's restore gets an exit code of 128 or more wrong: \"status 0x2500, expected exit 165\" (CRIU dumping and restoring too)",
    ),
    limit(
        "zombie_group_gone",
        Restore,
        None,
        "CRIU's restore gets an exit code of 128 or more wrong: \"zombie status 0x7a00, expected exit 250\" (CRIU dumping and restoring too, 2026-12-06)",
    ),
    limit(
        "tree_session_gone",
        Restore,
        Some(Flavor::Host),
        "CRIU restores a session whose leader exited outside the tree, reparented to init: \"missing after restore\" (CRIU dumping and restoring too)",
    ),
    limit(
        "tree_session_gone",
        Restore,
        Some(Flavor::Ns),
        "CRIU refuses a session whose leader exited: \"Error (criu/pstree.c:801): Can't find a session leader for 4\" (CRIU dumping and restoring too)",
    ),
    limit(
        "posix_timers",
        Dump,
        Some(Flavor::Ns),
        "CRIU writes a garbage notify_thread_id (-1911041888) for a SIGEV_THREAD_ID timer in a pid namespace, which no timer_create takes (EINVAL; CRIU restoring its own: \"Can't create posix timer - 3: -22\")",
    ),
    limit(
        "mnt_propagation",
        Restore,
        Some(Flavor::Mntns),
        "CRIU restores no shared mount of the tree's propagation groups here: \"Error (criu/mount-v2.c:991): mnt-v2: Failed to make mount N shared: No such file or directory\" (CRIU dumping and restoring too, 2026-12-06)",
    ),
    limit(
        "proc_files",
        Restore,
        None,
        "CRIU restores a directory fd without O_DIRECTORY (fdinfo flags 0300000 -> 0100000, of /proc/PID and of /tmp alike, with CRIU dumping too, 2026-12-06)",
    ),
    limit(
        "proc_files",
        Dump,
        Some(Flavor::Ns),
        "CRIU names a /proc file of a tree that shares the host's /proc by the host pid (/proc/HOSTPID/stat), which no restored process has: crust's restore fails with \"file /proc/5764/stat for fd 3: No such file or directory\" (2026-12-06)",
    ),
    // The container flavors freeze through the test's freezer cgroup, as runc does: the
    // v1 freezer on a hybrid host.
    limit("stopped_sigstop", Dump, Some(Flavor::Container), FROZEN_STOPPED),
    limit("stopped_sigstop", Dump, Some(Flavor::ContainerUserns), FROZEN_STOPPED),
    limit("stopped_sigtstp", Dump, Some(Flavor::Container), FROZEN_STOPPED),
    limit("stopped_sigtstp", Dump, Some(Flavor::ContainerUserns), FROZEN_STOPPED),
    limit("stopped_mixed", Dump, Some(Flavor::Container), FROZEN_STOPPED),
    limit("stopped_mixed", Dump, Some(Flavor::ContainerUserns), FROZEN_STOPPED),
];

/// Why test `test` is skipped in a cross run where the other tool, CRIU, does `role`,
/// in `flavor`; `None`: it runs.
pub fn criu_skip_reason(test: &str, role: OtherDoes, flavor: Flavor) -> Option<String> {
    CRIU_LIMITS
        .iter()
        // The ns flavor's limits hold in the container flavors too (an init in pid and
        // IPC namespaces of its own, and more).
        .filter(|l| l.test == test && l.flavor.is_none_or(|f| f == flavor || (f == Flavor::Ns && flavor.has_init())))
        // With CRIU on both halves crust plays no part: only CRIU's own limits count.
        .find(|l| l.role == role || (role == OtherDoes::Both && l.cause == Cause::Criu))
        .map(|l| match l.cause {
            Cause::Criu => format!("CRIU 4.2 {}: {}", if l.role == Dump { "dumping" } else { "restoring" }, l.reason),
            Cause::Crust => format!("waits on crust: {}", l.reason),
        })
}

/// Why no test of `flavor` can pass where CRIU does `role`, if so: a limit of CRIU's
/// that every test of the flavor meets.
pub fn criu_flavor_skip_reason(role: OtherDoes, flavor: Flavor) -> Option<String> {
    (flavor == Flavor::ContainerUserns && role != OtherDoes::Dump).then(|| {
        "CRIU 4.2.1 restores no veth into a container's user namespace here (Linux 6.18): \"Restoring netdev eth0 idx 2 via \
         usernsd\", \"Error (criu/libnetlink.c:54): -95 reported by netlink: Operation not supported\", \"couldn't restore veth \
         interface eth0 via usernsd\" (its dump of the flavor works)"
            .to_string()
    })
}

/// Set (to anything) in the environment, the table is not applied: every test runs, to
/// see whether a limit still holds (a newer CRIU, another machine).
pub const RUN_ALL_ENV: &str = "ZDTM_CROSS_RUN_ALL";

/// Options of a crust dump CRIU's restore needs as well (CRIU restores no established
/// connection, and takes no lock, without being told).
pub const ALSO_ON_RESTORE: &[&str] = &["--tcp-established", "--file-locks"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_names_a_test_of_the_catalog() {
        for limit in CRIU_LIMITS {
            assert!(crate::catalog::TESTS.iter().any(|t| t.name == limit.test), "{} is not a test", limit.test);
        }
    }

    #[test]
    fn skips_follow_role_and_flavor() {
        assert!(criu_skip_reason("threads_leader_gone", OtherDoes::Dump, Flavor::Ns).is_some());
        assert!(criu_skip_reason("sysv_shm_host", OtherDoes::Dump, Flavor::Ns).is_none());
        assert!(criu_skip_reason("sysv_shm_host", OtherDoes::Dump, Flavor::Host).unwrap().starts_with("CRIU 4.2 dumping: "));
        assert!(criu_skip_reason("anon_4k", OtherDoes::Restore, Flavor::Host).is_none());
    }

    #[test]
    fn a_whole_flavor_is_skipped_only_where_criu_restores_it() {
        assert!(criu_flavor_skip_reason(OtherDoes::Both, Flavor::ContainerUserns).is_some());
        assert!(criu_flavor_skip_reason(OtherDoes::Restore, Flavor::ContainerUserns).is_some());
        assert!(criu_flavor_skip_reason(OtherDoes::Dump, Flavor::ContainerUserns).is_none());
        assert!(criu_flavor_skip_reason(OtherDoes::Both, Flavor::Container).is_none());
    }

    #[test]
    fn criu_on_both_halves_skips_its_own_limits_of_either_half_only() {
        assert!(criu_skip_reason("threads_leader_gone", OtherDoes::Both, Flavor::Container).unwrap().starts_with("CRIU 4.2 dumping: "));
        assert!(criu_skip_reason("tree_creds", OtherDoes::Both, Flavor::Ns).is_some());
        assert!(criu_skip_reason("sysv_shm_host", OtherDoes::Both, Flavor::Container).unwrap().contains("SHM_RDONLY"));
        assert!(criu_skip_reason("sysv_shm_host", OtherDoes::Both, Flavor::Host).unwrap().contains("doesn't live in IPC ns"));
        assert!(criu_skip_reason("sysv_shm_host", OtherDoes::Dump, Flavor::Container).is_none());
        // A wait on crust is no limit of CRIU's.
        assert!(criu_skip_reason("shared_anon", OtherDoes::Both, Flavor::Host).is_none());
    }
}
