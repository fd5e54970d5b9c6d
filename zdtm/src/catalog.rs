//! The zdtm test list: every test's name, program, arguments and requirements. Adding a
//! test is one entry here plus its program (a module of `src/bin/zdtm-rs/` or a file
//! `c/NAME.c`).

/// Which executable a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// A test of the multiplexed Rust binary `zdtm-rs`, by its subcommand.
    Rust(&'static str),
    /// A program built by build.rs: `c/NAME.c`, or `rs-static/NAME.rs` (static Rust).
    C(&'static str),
    /// A language runtime running `runtime/FILE` (`.py` python3, `.java` java, `.js`
    /// node, `.go` built with `go build`), daemonized by `c/rt_daemon.c`.
    Runtime(&'static str),
}

/// How the harness runs a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// As the harness's child in the host's pid namespace, restored under its old pid.
    Host,
    /// Under a tiny init (`c/ns_init.c`) that is pid 1 of a new pid namespace; the init
    /// and everything under it is dumped and restored into a new pid namespace.
    Ns,
    /// Under a container init (`c/ct_init.c`) that is pid 1 of new pid, mount, network,
    /// UTS, IPC and cgroup namespaces the harness builds (rootfs, /dev, /proc, /sys, a
    /// veth, cgroups with limits: `container.rs`), dumped and restored the way runc does it.
    Container,
    /// [`Flavor::Container`] inside a new user namespace (root of the container is host
    /// uid and gid [`crate::container::USERNS_FIRST_ID`]).
    ContainerUserns,
    /// Under `c/mntns_init.c`, pid 1 of new pid, IPC, mount and UTS namespaces, in a root
    /// of its own (the harness's read-only rootfs: the test programs, their libraries,
    /// `/dev/null`) with the test's directory bound at `/zdtm` and a host name
    /// `zdtm-<test>`; dumped with `/zdtm` as an external mount and restored with
    /// `--root` and the directory given back by key. So far (issue 15, M1) it has no
    /// /proc, /dev, network or cgroup namespace: it lists only the tests that need
    /// namespaces of their own ([`Requirement::MntnsFlavor`]), which the other flavors do
    /// not list.
    Mntns,
}

impl Flavor {
    /// Every flavor.
    pub const ALL: [Flavor; 5] = [Flavor::Host, Flavor::Ns, Flavor::Mntns, Flavor::Container, Flavor::ContainerUserns];

    /// What `--flavor all` runs: every flavor.
    pub const ALL_RUN: [Flavor; 5] = Flavor::ALL;

    /// `host`, `ns`, `mntns`, `container` or `container-uns`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Host => "host",
            Flavor::Ns => "ns",
            Flavor::Mntns => "mntns",
            Flavor::Container => "container",
            Flavor::ContainerUserns => "container-uns",
        }
    }

    /// The flavors `--flavor LIST` selects: comma-separated names (`host,container`, each
    /// once, in the order given), `all` standing for [`Self::ALL_RUN`]; `None` if a word
    /// names no flavor.
    pub fn parse_list(list: &str) -> Option<Vec<Flavor>> {
        let mut flavors = Vec::new();
        for word in list.split(',') {
            let named: Vec<Flavor> = if word == "all" {
                Flavor::ALL_RUN.to_vec()
            } else {
                vec![*Flavor::ALL.iter().find(|flavor| flavor.name() == word)?]
            };
            for flavor in named {
                if !flavors.contains(&flavor) {
                    flavors.push(flavor);
                }
            }
        }
        Some(flavors)
    }

    /// The dumped root is an init the harness started, not the test itself.
    pub fn has_init(self) -> bool {
        self != Flavor::Host
    }

    /// One of the container flavors.
    pub fn is_container(self) -> bool {
        matches!(self, Flavor::Container | Flavor::ContainerUserns)
    }
}

/// Something a test needs from the host before it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Must run as root (uid 0).
    Root,
    /// A `/proc/cpuinfo` flag (e.g. `avx512f`).
    CpuFlag(&'static str),
    /// Only with `--big`: slow or memory-hungry.
    Big,
    /// Transparent huge pages configured (`/sys/kernel/mm/transparent_hugepage`).
    TransparentHugePages,
    /// A program crust runs, found in `PATH` (`nft` for `--tcp-established`).
    Program(&'static str),
    /// Namespaces of its own (mount, network, UTS, cgroup, time): runs only in the
    /// container flavors, skipped in `host` and `ns` with "needs namespaces of its own".
    ContainerFlavor,
    /// Namespaces of its own (mount, UTS, ...), which the mntns flavor gives each test;
    /// only that flavor lists it (checked by the suite, which knows the flavor).
    MntnsFlavor,
    /// `pidfd_open(PIDFD_THREAD)` (Linux 6.9): crust reaches the fds of a process whose
    /// leader thread exited through a pidfd of a live thread (`pidfd_getfd` of the parasite's
    /// control socket); before 6.9 the dump of such a process fails.
    PidfdThread,
    /// Cgroups of its own: in the `ns` flavor the harness puts the init into cgroups of
    /// the test's with limits and a cgroup namespace (`own_cgroups.rs`); the container
    /// flavors give every test that; skipped in `host`.
    OwnCgroups,
}

/// What the test does between its ready message and the dump; the harness waits for it
/// before recording /proc state, so the record is not taken mid-way into the sleep (a
/// test on its way into sigsuspend still has its old signal mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtDump {
    /// Asleep in a syscall: state `S` in /proc/PID/stat.
    Asleep,
    /// Spinning in user space: nothing to wait for.
    Running,
}

/// One entry of the suite.
#[derive(Debug, Clone, Copy)]
pub struct TestSpec {
    /// Unique name; also the stem of the verdict file.
    pub name: &'static str,
    /// What to execute.
    pub program: Program,
    /// Extra command-line arguments.
    pub args: &'static [&'static str],
    /// What the host must offer, checked by `can_run`.
    pub requirements: &'static [Requirement],
    /// `/proc/PID/status` keys this test changes by itself while running (an itimer makes
    /// SIGALRM pending now and then), left out of the comparison; the pseudo-key
    /// `tree::VOLATILE_ANON_MAPS` leaves out anonymous mappings (a JVM's arenas).
    pub volatile_status: &'static [&'static str],
    /// Where the test is when it gets dumped.
    pub at_dump: AtDump,
    /// Why the test does not fit the `ns` flavor (it compares host-visible pids, say);
    /// `None`: it runs in both.
    pub host_only: Option<&'static str>,
    /// Why the test cannot work in a container (the container flavors skip it with this
    /// reason); `None`: it runs in them.
    pub container_skip: Option<&'static str>,
    /// Why the test cannot work in a user namespace of its own (`container-uns` skips
    /// it with this reason); `None`: it runs there.
    pub userns_skip: Option<&'static str>,
    /// Extra `crust dump` flags (`--tcp-established`); those CRIU's restore needs too
    /// (`cross::ALSO_ON_RESTORE`) go to the restore as well.
    pub dump_args: &'static [&'static str],
    /// The test's group (`--group`): `"runtime"` for language runtimes, else `"core"`.
    pub group: &'static str,
}

impl TestSpec {
    /// Why this test does not run in `flavor` (the catalog's own reasons, before the
    /// host's requirements are checked); `None`: it runs there.
    pub fn flavor_skip(&self, flavor: Flavor) -> Option<String> {
        let needs_container = self.requirements.contains(&Requirement::ContainerFlavor);
        match flavor {
            Flavor::Host | Flavor::Ns if needs_container => Some("needs namespaces of its own: runs in the container flavors".into()),
            Flavor::Host if self.requirements.contains(&Requirement::OwnCgroups) => {
                Some("needs cgroups and a cgroup namespace of its own: runs in the ns and container flavors".into())
            }
            Flavor::Host => None,
            Flavor::Ns | Flavor::Mntns => self.host_only.map(|reason| format!("not in a pid namespace: {reason}")),
            Flavor::Container | Flavor::ContainerUserns => {
                if let Some(reason) = self.container_skip {
                    Some(format!("not in a container: {reason}"))
                } else if let (Flavor::ContainerUserns, Some(reason)) = (flavor, self.userns_skip) {
                    Some(format!("not in a user namespace: {reason}"))
                } else if matches!(self.program, Program::Runtime(_)) {
                    Some("not in a container: language runtimes need /usr, which the container's rootfs (busybox and the test programs) does not have".into())
                } else {
                    None
                }
            }
        }
    }
}

/// Group of tests for what crust does not support yet (run with `--group unsupported` or
/// `--group all`; the default run leaves them out): a process group or session led by a
/// sibling or by a process that is gone, a thread group whose leader exited, another
/// uid's rlimits (reading them needs CAP_SYS_RESOURCE, which this machine lacks), POSIX
/// timers.
pub const UNSUPPORTED: &str = "unsupported";

const fn rust(name: &'static str) -> TestSpec {
    TestSpec {
        name,
        program: Program::Rust(name),
        args: &[],
        requirements: &[],
        volatile_status: &[],
        at_dump: AtDump::Asleep,
        host_only: None,
        container_skip: None,
        userns_skip: None,
        dump_args: &[],
        group: "core",
    }
}

const fn c(name: &'static str) -> TestSpec {
    TestSpec {
        name,
        program: Program::C(name),
        args: &[],
        requirements: &[],
        volatile_status: &[],
        at_dump: AtDump::Asleep,
        host_only: None,
        container_skip: None,
        userns_skip: None,
        dump_args: &[],
        group: "core",
    }
}

/// A C program under another catalog name (one program, several argument sets).
const fn cas(name: &'static str, program: &'static str) -> TestSpec {
    TestSpec {
        program: Program::C(program),
        ..c(name)
    }
}

/// A language runtime running `runtime/FILE`.
const fn runtime(name: &'static str, file: &'static str) -> TestSpec {
    TestSpec {
        program: Program::Runtime(file),
        group: "runtime",
        ..c(name)
    }
}

/// Why the System V shared memory tests skip in `container-uns`: crust fills a segment
/// through /proc/self/map_files, which needs CAP_CHECKPOINT_RESTORE of the initial user
/// namespace, from the restored root inside the tree's (another way is not written yet).
const SHM_IN_USERNS: &str = "waits on crust: it fills System V shared memory through /proc/self/map_files, which needs CAP_CHECKPOINT_RESTORE of the initial user namespace";

/// Why tests of memfds and bound unix sockets skip in `container-uns`: the restored
/// processes keep the host root's ids until their restorer ends (they read the images,
/// which only that root may read), so a memfd or socket file they make belongs to the
/// host's root, and they may not give it its owner in the namespace.
const OWNED_BY_HOST_ROOT: &str = "waits on crust: a memfd or bound socket file made at restore belongs to the host's root, which has no uid in the tree's user namespace, and cannot be given its dumped owner from inside it";

/// Every test, in the order they run.
pub const TESTS: &[TestSpec] = &[
    TestSpec {
        args: &["--alpha", "two words", "", "ünïcode"],
        ..rust("env_args_auxv")
    },
    TestSpec { host_only: Some("compares getpid() with the /proc/self link, which names the host pid without a mount namespace"), ..rust("pid_kept") },
    rust("anon_4k"),
    rust("anon_64m"),
    rust("anon_256m"),
    rust("big_area_shapes"),
    TestSpec {
        requirements: &[Requirement::Big],
        ..rust("anon_1g")
    },
    c("holes_guard"),
    rust("private_file_cow"),
    rust("shared_file"),
    rust("shared_anon"),
    rust("mapped_deleted_file"),
    rust("mremap_moved"),
    c("brk_heap"),
    c("stack_growsdown"),
    rust("mprotect_split"),
    TestSpec {
        requirements: &[Requirement::TransparentHugePages],
        ..rust("madvise_flags")
    },
    TestSpec {
        at_dump: AtDump::Running,
        ..rust("gpr_asm")
    },
    TestSpec {
        requirements: &[Requirement::CpuFlag("sse2")],
        at_dump: AtDump::Running,
        ..c("fpu_sse")
    },
    TestSpec {
        requirements: &[Requirement::CpuFlag("avx")],
        at_dump: AtDump::Running,
        ..c("fpu_avx")
    },
    TestSpec {
        requirements: &[Requirement::CpuFlag("avx512f")],
        at_dump: AtDump::Running,
        ..c("fpu_avx512")
    },
    c("sigactions"),
    c("sigpending"),
    rust("sigaltstack"),
    c("altstack_off"),
    TestSpec {
        volatile_status: &["SigPnd", "ShdPnd"],
        ..c("itimer")
    },
    rust("sleep_nanosleep"),
    c("sleep_pause"),
    c("sleep_sigsuspend"),
    rust("sleep_poll"),
    TestSpec {
        at_dump: AtDump::Running,
        ..rust("busy_counter")
    },
    rust("cwd"),
    rust("file_offsets"),
    rust("unlinked_file"),
    c("opath_symlink"),
    c("file_mtime"),
    TestSpec { container_skip: Some("waits on crust: the restore reopens the tree's /proc/PID files by the host pid in the container's /proc (open /proc/PID/stat: ENOENT, seen 2026-12-06)"), ..c("proc_files") },
    TestSpec { container_skip: Some("waits on crust: the shared /dev/zero mapping comes back different in a container (its VMA differs after restore, seen 2026-12-06)"), ..c("devzero_shared") },
    TestSpec { userns_skip: Some(OWNED_BY_HOST_ROOT), ..c("memfd_exec") },
    c("file_owners"),
    TestSpec { requirements: &[Requirement::Root], ..c("chroot_sub") },
    // Its unlinked sparse file is 256 MiB long: over CRIU's default --ghost-limit.
    TestSpec { dump_args: &["--ghost-limit", "256M"], ..c("file_flags") },
    c("high_fd"),
    c("fds_many"),
    TestSpec { userns_skip: Some(OWNED_BY_HOST_ROOT), ..c("memfd_data") },
    TestSpec { requirements: &[Requirement::Root], userns_skip: Some(SHM_IN_USERNS), ..c("sysv_ipc") },
    TestSpec { userns_skip: Some(SHM_IN_USERNS), ..c("sysv_shm_host") },
    c("cow_shared"),
    // Issue 18: memory that must come back exactly.
    c("shm_anon_mremap"),
    c("ghost_shared"),
    c("droppable"),
    c("wipeonfork"),
    c("cow_file_shared"),
    TestSpec { requirements: &[Requirement::TransparentHugePages], ..c("madv_state") },
    c("guard_regions"),
    // Four processes write shared memory while they are dumped: run it with --iters 10,
    // --snap and --pre-dump too.
    TestSpec { at_dump: AtDump::Running, userns_skip: Some(OWNED_BY_HOST_ROOT), ..c("shm_stress") },
    c("pidfds"),
    c("unix_scm"),
    c("unix_scm_gone"),
    c("pty_pair"),
    TestSpec {
        dump_args: &["--tcp-established"],
        requirements: &[Requirement::Root, Requirement::Program("nft")],
        at_dump: AtDump::Running,
        // The peer is adopted by whoever reaps orphans: the harness in the host flavor
        // (outside the dumped tree), the init in the others, where both ends of the
        // connection are dumped, locked and restored (in the container's network
        // namespace in the container flavor).
        ..c("tcp_established")
    },
    c("static_bin"),
    // The s390x dump under images/tests/fixtures/s390x-dump is of this one.
    TestSpec { args: &["tiny"], ..cas("static_tiny", "static_bin") },
    c("static_rust"),
    rust("rust_std"),
    rust("umask"),
    TestSpec {
        requirements: &[Requirement::Root],
        // Only a tree's root may have a time namespace of its own: under an init the
        // test's would be a second one.
        host_only: Some("it makes a time namespace of its own, which only the tree's root may have"),
        container_skip: Some("it makes a time namespace of its own, which only the tree's root may have"),
        ..rust("timens_monotonic")
    },
    c("personality"),
    TestSpec { userns_skip: Some("real-time policies need CAP_SYS_NICE of the initial user namespace: the test cannot set them up there"), ..c("sched_attrs") },
    TestSpec { userns_skip: Some("only the process itself may set its audit login uid, with CAP_AUDIT_CONTROL of the initial user namespace, which a restored process in another has not"), ..c("loginuid") },
    c("membarrier"),
    // Two threads nearly always inside an rseq critical section: the dump catches them
    // there, and they must resume at the abort handler (in the running tree too).
    TestSpec { at_dump: AtDump::Running, ..c("rseq_cs") },
    c("sockopts"),
    // Issue 18: socket states.
    c("sk_shutdown"),
    // Variants without what CRIU 4.2.1 keeps no image of, for the cross runs.
    TestSpec { args: &["no-udp-queue"], ..cas("sk_shutdown_noq", "sk_shutdown") },
    TestSpec { userns_skip: Some(OWNED_BY_HOST_ROOT), ..c("unix_unconnected") },
    TestSpec {
        container_skip: Some("waits on crust: a process of the restored container exits with 0 during the restore of sockets bound in removed directories (seen 2026-12-06)"),
        userns_skip: Some(OWNED_BY_HOST_ROOT),
        ..c("unix_names")
    },
    TestSpec { requirements: &[Requirement::Root], ..c("sk_raw_udplite") },
    TestSpec { args: &["no-queue"], requirements: &[Requirement::Root], ..cas("sk_raw_udplite_noq", "sk_raw_udplite") },
    c("sk_netlink"),
    TestSpec { args: &["low"], ..cas("sk_netlink_low", "sk_netlink") },
    TestSpec { requirements: &[Requirement::Root], ..c("sk_packet") },
    TestSpec { args: &["single"], requirements: &[Requirement::Root], ..cas("sk_packet_single", "sk_packet") },
    TestSpec { userns_skip: Some("raising a hard limit needs CAP_SYS_RESOURCE of the initial user namespace: the test cannot set its limits up there"), ..rust("rlimits") },
    rust("comm"),
    TestSpec {
        requirements: &[Requirement::Root],
        ..rust("caps_ids")
    },
    rust("prctl_flags"),
    c("vdso"),
    c("vdso_unmapped"),
    rust("pipe_data"),
    rust("fifo_data"),
    TestSpec { userns_skip: Some(OWNED_BY_HOST_ROOT), ..rust("unix_sockets") },
    rust("event_fds"),
    rust("inet_sockets"),
    // Both tools dump locks only when told; CRIU restores them only when told too
    // (`cross.rs` passes the flag on restore).
    TestSpec { dump_args: &["--file-locks"], ..rust("file_locks") },
    rust("inotify_watches"),
    // Issue 4: process trees.
    c("tree_child"),
    TestSpec { args: &["wide", "16"], ..cas("tree_wide", "tree_shapes") },
    TestSpec { args: &["deep", "12"], ..cas("tree_deep", "tree_shapes") },
    TestSpec { args: &["mixed", "4"], ..cas("tree_mixed", "tree_shapes") },
    // 10 children with 10 grandchildren each: 111 processes with the root.
    TestSpec { args: &["mixed", "10"], ..cas("tree_111", "tree_shapes") },
    TestSpec { args: &["groups"], ..cas("tree_pgids", "tree_groups") },
    TestSpec { args: &["sessions"], ..cas("tree_sessions", "tree_groups") },
    TestSpec { args: &["orphans"], ..cas("tree_orphans", "tree_groups") },
    TestSpec { args: &["session_gone"], ..cas("tree_session_gone", "tree_groups") },
    TestSpec { args: &["group_gone"], ..cas("tree_group_gone", "tree_groups") },
    TestSpec { args: &["exit"], ..cas("zombie_exit", "zombies") },
    TestSpec { args: &["signal"], ..cas("zombie_signal", "zombies") },
    TestSpec { args: &["nested"], ..cas("zombie_nested", "zombies") },
    TestSpec { args: &["group_gone"], ..cas("zombie_group_gone", "zombies") },
    TestSpec { args: &["SIGSTOP"], ..cas("stopped_sigstop", "stopped") },
    TestSpec { args: &["SIGTSTP"], ..cas("stopped_sigtstp", "stopped") },
    TestSpec { args: &["mixed"], ..cas("stopped_mixed", "stopped") },
    TestSpec { args: &["wnowait"], ..cas("stopped_wnowait", "stopped") },
    // Issue 4: threads.
    TestSpec {
        args: &["spin", "16"],
        at_dump: AtDump::Running,
        ..cas("threads_spin", "threads")
    },
    TestSpec { args: &["tls", "8"], ..cas("threads_tls", "threads") },
    TestSpec { args: &["sigmask", "12"], ..cas("threads_sigmask", "threads") },
    TestSpec { args: &["pending", "8"], ..cas("threads_pending", "threads") },
    TestSpec { args: &["altstack", "6"], ..cas("threads_altstack", "threads") },
    TestSpec { args: &["rseq", "6"], ..cas("threads_rseq", "threads") },
    TestSpec { args: &["robust", "4"], ..cas("threads_robust", "threads") },
    TestSpec { args: &["join", "8"], ..cas("threads_join", "threads") },
    TestSpec { args: &["join", "100"], ..cas("threads_100", "threads") },
    TestSpec { args: &["names", "8"], ..cas("threads_names", "threads") },
    TestSpec {
        args: &["leader", "4"],
        requirements: &[Requirement::PidfdThread],
        // The leader is a zombie: nothing to wait for.
        at_dump: AtDump::Running,
        ..cas("threads_leader_gone", "threads")
    },
    TestSpec { args: &["children", "3"], ..cas("threads_children", "threads") },
    // Issue 4: state across a tree.
    TestSpec { args: &["shm"], ..cas("tree_shm", "tree_state") },
    TestSpec { args: &["cow"], ..cas("tree_cow", "tree_state") },
    TestSpec {
        args: &["creds"],
        requirements: &[Requirement::Root],
        ..cas("tree_creds", "tree_state")
    },
    TestSpec { args: &["prctl"], ..cas("tree_prctl", "tree_state") },
    TestSpec { args: &["misc"], ..cas("tree_misc", "tree_state") },
    TestSpec { args: &["itimers"], ..cas("tree_itimers", "tree_state") },
    TestSpec { args: &["filter"], requirements: &[Requirement::Root], ..cas("seccomp_filter", "seccomp") },
    TestSpec { args: &["strict"], requirements: &[Requirement::Root], ..cas("seccomp_strict", "seccomp") },
    // Issue 18: a child with SIGTERM at its default action dies of it after restore
    // (asserted through a pidfd), under TSYNC seccomp filters or holding a pty pair.
    TestSpec { args: &["seccomp_tsync"], requirements: &[Requirement::Root], ..cas("sigterm_seccomp_tsync", "sigterm_exit") },
    TestSpec { args: &["pty"], ..cas("sigterm_pty", "sigterm_exit") },
    TestSpec { args: &["posix_timers"], volatile_status: &["SigPnd", "ShdPnd"], ..cas("posix_timers", "tree_state") },
    // Issue 15, M1: mounts and UTS names of a tree's own (the mntns flavor).
    TestSpec { args: &["dir"], requirements: &[Requirement::Root, Requirement::MntnsFlavor], ..cas("mnt_bind_dir", "mnt_binds") },
    TestSpec { args: &["file"], requirements: &[Requirement::Root, Requirement::MntnsFlavor], ..cas("mnt_bind_file", "mnt_binds") },
    TestSpec { args: &["ro"], requirements: &[Requirement::Root, Requirement::MntnsFlavor], ..cas("mnt_ro_bind", "mnt_binds") },
    TestSpec { requirements: &[Requirement::Root, Requirement::MntnsFlavor], ..c("uts_names") },
    // Issue 15, M4: cgroups and a cgroup namespace of the tree's own (ns flavor:
    // `own_cgroups.rs`), the tree frozen through its cgroup.
    TestSpec { requirements: &[Requirement::Root, Requirement::OwnCgroups], ..cas("cg_sleep", "sleep_pause") },
    TestSpec { args: &["children", "2"], requirements: &[Requirement::Root, Requirement::OwnCgroups], ..cas("cg_threads", "threads") },
    TestSpec { args: &["tmpfs"], requirements: &[Requirement::Root, Requirement::MntnsFlavor], ..cas("mnt_tmpfs", "mnt_shapes") },
    TestSpec { args: &["propagation"], requirements: &[Requirement::Root, Requirement::MntnsFlavor], ..cas("mnt_propagation", "mnt_shapes") },
    TestSpec { args: &["overmount"], requirements: &[Requirement::Root, Requirement::MntnsFlavor], ..cas("mnt_overmount", "mnt_shapes") },
    // Issue 4: real language runtimes (`--group runtime`).
    runtime("rt_python", "threads.py"),
    TestSpec {
        volatile_status: &[crate::tree::VOLATILE_ANON_MAPS],
        ..runtime("rt_java", "Threads.java")
    },
    runtime("rt_node", "threads.js"),
    runtime("rt_go", "threads.go"),
];

/// The counter program the demo checkpoints (not part of the suite).
pub const DEMO_COUNTER: TestSpec = rust("counter");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_there_are_enough() {
        let mut names: Vec<&str> = TESTS.iter().map(|spec| spec.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TESTS.len());
        assert!(TESTS.len() >= 25);
    }

    #[test]
    fn flavors_are_named_and_listed() {
        assert_eq!(Flavor::parse_list("all"), Some(Flavor::ALL_RUN.to_vec()));
        assert!(Flavor::ALL_RUN.contains(&Flavor::Container) && Flavor::ALL_RUN.contains(&Flavor::ContainerUserns));
        assert_eq!(Flavor::parse_list("container-uns"), Some(vec![Flavor::ContainerUserns]));
        assert_eq!(Flavor::parse_list("ns"), Some(vec![Flavor::Ns]));
        assert_eq!(Flavor::parse_list("vm"), None);
        assert_eq!(Flavor::parse_list("host,container"), Some(vec![Flavor::Host, Flavor::Container]));
        assert_eq!(Flavor::parse_list("container,all,host"), Some(vec![Flavor::Container, Flavor::Host, Flavor::Ns, Flavor::Mntns, Flavor::ContainerUserns]));
        assert_eq!(Flavor::parse_list("host,"), None);
        assert!(Flavor::Container.has_init() && Flavor::Ns.has_init() && !Flavor::Host.has_init());
        assert!(Flavor::ContainerUserns.is_container() && !Flavor::Ns.is_container());
    }

    #[test]
    fn flavor_skips_say_why() {
        let timens = TESTS.iter().find(|spec| spec.name == "timens_monotonic").expect("in the catalog");
        assert_eq!(timens.flavor_skip(Flavor::Host), None);
        assert!(timens.flavor_skip(Flavor::Ns).is_some_and(|r| r.starts_with("not in a pid namespace: ")));
        assert!(timens.flavor_skip(Flavor::Container).is_some_and(|r| r.starts_with("not in a container: ")));
        let pid_kept = TESTS.iter().find(|spec| spec.name == "pid_kept").expect("in the catalog");
        // The container has a /proc of its own: the ns flavor's reason does not apply.
        assert_eq!(pid_kept.flavor_skip(Flavor::Container), None);
        let python = TESTS.iter().find(|spec| spec.name == "rt_python").expect("in the catalog");
        assert!(python.flavor_skip(Flavor::ContainerUserns).is_some_and(|r| r.contains("/usr")));
        let own_namespaces = TestSpec { requirements: &[Requirement::ContainerFlavor], ..c("x") };
        for flavor in [Flavor::Host, Flavor::Ns] {
            assert_eq!(own_namespaces.flavor_skip(flavor).as_deref(), Some("needs namespaces of its own: runs in the container flavors"));
        }
        assert_eq!(own_namespaces.flavor_skip(Flavor::Container), None);
        let cgroups = TESTS.iter().find(|spec| spec.name == "cg_threads").expect("in the catalog");
        assert!(cgroups.flavor_skip(Flavor::Host).is_some_and(|r| r.starts_with("needs cgroups and a cgroup namespace of its own")));
        assert_eq!(cgroups.flavor_skip(Flavor::Ns), None);
        assert_eq!(cgroups.flavor_skip(Flavor::Container), None);
    }

    /// Issue 15: at least 90 % of the host flavor's default group runs in the container
    /// flavors (the catalog's own skips; the host's requirements apply to all flavors).
    #[test]
    fn most_of_the_default_group_runs_in_containers() {
        let default_group: Vec<&TestSpec> = TESTS.iter().filter(|spec| spec.group == "core").collect();
        let in_host = default_group.iter().filter(|spec| spec.flavor_skip(Flavor::Host).is_none()).count();
        let in_container = default_group.iter().filter(|spec| spec.flavor_skip(Flavor::Container).is_none()).count();
        assert!(in_container * 10 >= in_host * 9, "{in_container} of {in_host} host-flavor tests run in a container");
    }
}
