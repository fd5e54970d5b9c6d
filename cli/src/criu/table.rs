//! Every option of CRIU 4.2's command line (its getopt table: 85 options, 27 of them with
//! a `--no-` form), plus crust's own, as data: names, short letters, how each takes its
//! argument, what it does, and what crust does with it (implemented, accepted and why,
//! or not yet). `--help` and the README's option table are written from this table; the
//! behaviour itself lives in `options.rs`.

/// How an option takes its argument (getopt's `has_arg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A flag.
    None,
    /// `--opt VALUE` or `--opt=VALUE`; the text names the value in `--help`.
    Required(&'static str),
    /// `--opt=VALUE` or just `--opt` (and `--opt VALUE` when VALUE is one the option
    /// takes); the text names the value in `--help`.
    Optional(&'static str),
}

/// What crust does with an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Done as CRIU does it.
    Implemented,
    /// Done as CRIU does it, with a difference the text says.
    ImplementedNote(&'static str),
    /// Accepted: crust already behaves the way the option asks, for the reason given.
    Accepted(&'static str),
    /// Refused in one line (`crust: --opt is not supported yet`), with what it needs.
    NotYet(&'static str),
    /// The answer depends on the value; the text says which value gets which.
    ByValue(&'static str),
    /// CRIU itself refuses it as deprecated.
    Deprecated,
}

impl State {
    /// The short word for tables: implemented, accepted, not yet, by value, deprecated.
    pub fn label(&self) -> &'static str {
        match self {
            State::Implemented | State::ImplementedNote(_) => "implemented",
            State::Accepted(_) => "accepted",
            State::NotYet(_) => "not yet",
            State::ByValue(_) => "by value",
            State::Deprecated => "deprecated",
        }
    }

    /// The explanation, if the state has one.
    pub fn why(&self) -> Option<&'static str> {
        match self {
            State::Implemented | State::Deprecated => None,
            State::ImplementedNote(why) | State::Accepted(why) | State::NotYet(why) | State::ByValue(why) => Some(why),
        }
    }
}

/// The `--help` section an option is listed in (CRIU's sections, then crust's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Generic,
    External,
    Special,
    Check,
    Logging,
    Memory,
    Server,
    Config,
    Other,
    Crust,
}

impl Group {
    /// All groups in `--help` order.
    pub const ALL: [Group; 10] = [
        Group::Generic,
        Group::External,
        Group::Special,
        Group::Check,
        Group::Logging,
        Group::Memory,
        Group::Server,
        Group::Config,
        Group::Other,
        Group::Crust,
    ];

    /// The section title.
    pub fn title(self) -> &'static str {
        match self {
            Group::Generic => "Dump/restore options",
            Group::External => "External resources",
            Group::Special => "Special resources",
            Group::Check => "Check options",
            Group::Logging => "Logging",
            Group::Memory => "Memory dumping",
            Group::Server => "Page server and service",
            Group::Config => "Configuration files",
            Group::Other => "Other options",
            Group::Crust => "crust's own options",
        }
    }
}

/// One option.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The long name, without dashes.
    pub long: &'static str,
    /// The short letter, if it has one.
    pub short: Option<char>,
    pub arg: Arg,
    /// It also has a `--no-LONG` form that turns it off (CRIU's list).
    pub negatable: bool,
    pub group: Group,
    /// What it does (CRIU's meaning, in one line or two).
    pub help: &'static str,
    pub state: State,
    /// Not listed in `--help` (testing aids).
    pub hidden: bool,
}

const fn spec(long: &'static str, short: Option<char>, arg: Arg, group: Group, help: &'static str, state: State) -> Spec {
    Spec { long, short, arg, negatable: false, group, help, state, hidden: false }
}

const fn negatable(mut s: Spec) -> Spec {
    s.negatable = true;
    s
}

use Arg::{None as Flag, Optional as Opt, Required as Req};
use Group::*;
use State::*;

const TLS_ONLY: &str = "only used with --tls, which crust refuses";

/// Every option crust's command line takes, CRIU's first, in CRIU's getopt order.
pub static OPTIONS: &[Spec] = &[
    spec("tree", Some('t'), Req("PID"), Generic, "checkpoint the process tree rooted at PID", Implemented),
    spec(
        "leave-stopped",
        Some('s'),
        Flag,
        Generic,
        "leave the tasks stopped after a dump or a restore instead of killing or resuming them",
        ImplementedNote("a restored task is detached with SIGSTOP and runs no instruction; after a dump each process gets SIGSTOP as crust detaches it, and its TCP connections stay locked, as in CRIU"),
    ),
    spec("leave-running", Some('R'), Flag, Generic, "leave the tasks running after a dump", Implemented),
    negatable(spec(
        "restore-detached",
        Some('d'),
        Flag,
        Generic,
        "return once the restored tree runs (without it, wait until the tree's root exits, then exit 0)",
        Implemented,
    )),
    negatable(spec(
        "restore-sibling",
        Some('S'),
        Flag,
        Generic,
        "restore the root task as a sibling of crust (a child of crust's parent)",
        ImplementedNote("the root is created with CLONE_PARENT and still traced by crust until it runs; needs -d, as in CRIU"),
    )),
    negatable(spec(
        "daemon",
        None,
        Flag,
        Server,
        "page-server, lazy-pages, service: run in the background",
        Accepted("no effect on dump and restore, as in CRIU"),
    )),
    spec("images-dir", Some('D'), Req("DIR"), Generic, "directory of the image files (default: the current directory)", Implemented),
    spec(
        "work-dir",
        Some('W'),
        Req("DIR"),
        Generic,
        "directory crust changes to, where relative log files, pidfiles and action scripts are found (default: the images directory)",
        Implemented,
    ),
    spec("log-file", Some('o'), Req("FILE"), Logging, "log file, relative to the work directory; `-` is stderr", Implemented),
    spec(
        "join-ns",
        Some('J'),
        Req("NS:{PID|NS_FILE}[,OPTIONS]"),
        External,
        "restore the tree inside an existing namespace",
        NotYet("needs namespace support in the engine"),
    ),
    spec(
        "root",
        Some('r'),
        Req("PATH"),
        Special,
        "restore with PATH as the root of the mount namespace",
        ImplementedNote("needed to restore a tree with a mount namespace of its own, whose root mount is made of PATH; ignored (with a warning) for a tree in crust's"),
    ),
    spec(
        "ext-unix-sk",
        Some('x'),
        Opt("INODE"),
        Special,
        "allow external unix sockets (all, or the one with socket inode INODE)",
        NotYet("a unix socket whose peer is outside the tree fails the dump naming it; needs the engine to dump it as external"),
    ),
    spec("help", Some('h'), Flag, Other, "show this text", Implemented),
    negatable(spec(
        "tcp-established",
        None,
        Flag,
        Special,
        "checkpoint and restore established TCP connections",
        ImplementedNote(
            "dump: TCP_REPAIR, the connections locked in CRIU's nftables table for the dump (inet CRIU-<run id>) \
             until the restore; the table is crust's over netlink (NFT_TABLE_F_OWNER), so a crust killed mid-dump takes \
             it along, and it is kept (NFT_TABLE_F_PERSIST, Linux 6.9) only once the tree is killed; older kernels get \
             it from the nft command; restore rebuilds every connection the images hold, with or without it, and lifts \
             the dump's lock (crust's or CRIU's, nftables or iptables)",
        ),
    )),
    spec("close", None, Req("FD"), Other, "close file descriptor FD before doing anything", Implemented),
    negatable(spec(
        "log-pid",
        None,
        Flag,
        Logging,
        "a separate log file per process (FILE.PID)",
        Accepted("the restored processes report to the crust process (through an error pipe), which writes the one log file, naming pids"),
    )),
    spec("version", Some('V'), Flag, Other, "show the version (`Version: 4.2` first, as CRIU prints it)", Implemented),
    negatable(spec(
        "evasive-devices",
        None,
        Flag,
        Special,
        "dump: use any path to a device file when the original one is inaccessible",
        Accepted("crust records the path the fd shows; a device file that is not there at restore still fails the restore, naming it"),
    )),
    spec(
        "pidfile",
        None,
        Req("FILE"),
        Generic,
        "restore: write the restored root's pid to FILE (relative to the work directory)",
        Implemented,
    ),
    spec(
        "veth-pair",
        None,
        Req("IN=OUT"),
        External,
        "restore: name OUT[@BRIDGE] for the host end of the tree's veth IN (its peer was outside the dump), made in crust's network namespace and enslaved to BRIDGE; the same as --external veth[IN]:OUT[@BRIDGE]",
        Implemented,
    ),
    spec(
        "action-script",
        None,
        Req("FILE"),
        Generic,
        "run FILE at each step (CRTOOLS_SCRIPT_ACTION names the step)",
        Accepted(
            "runs at pre-dump, pre-restore and post-resume with CRIU's environment; post-dump, setup-namespaces, \
             post-setup-namespaces, post-restore and pre-resume need hook points inside the engine and are not run yet \
             (a warning says so); network-lock/unlock run only for a tree with its own network namespace, as in CRIU",
        ),
    ),
    negatable(spec(
        "link-remap",
        None,
        Flag,
        Special,
        "allow linking unlinked files back into the filesystem",
        Accepted("crust copies every unlinked file into a ghost image (holes stay holes) and never links files back, so the filesystem is not changed"),
    )),
    negatable(spec(
        "shell-job",
        Some('j'),
        Flag,
        Generic,
        "the tree is a shell job: keep the caller's session and terminal",
        Implemented,
    )),
    negatable(spec(
        "file-locks",
        Some('l'),
        Flag,
        Special,
        "dump and restore file locks (flock, POSIX, OFD)",
        ImplementedNote("without it a tree holding a lock fails the dump, naming the pid, fd and lock, as in CRIU; restore takes back the locks the images hold, with or without it"),
    )),
    negatable(spec(
        "page-server",
        None,
        Flag,
        Memory,
        "dump, pre-dump: send the pages to a page server (--address, --port) instead of writing them",
        ImplementedNote("CRIU's wire protocol, to `crust page-server` or `criu page-server`; the images without the pages stay in -D, and crust-checksums.img is not written (the pages are elsewhere); with --prev-images-dir, pages equal to the parent dump's (compared by their XXH3-128 digests, kept in the parent's directory as crust-page-digests-PID) are sent as in the parent"),
    )),
    spec("address", None, Req("ADDR"), Server, "address of the page server (page-server: to listen on, default all) or the service's socket", Implemented),
    spec("port", None, Req("PORT"), Server, "port of the page server", Implemented),
    spec(
        "prev-images-dir",
        None,
        Req("DIR"),
        Memory,
        "an earlier dump to build on (relative to the images directory): unchanged pages are not written again",
        Implemented,
    ),
    spec("ms", None, Flag, Check, "deprecated (check only the features of memory snapshots)", Deprecated),
    negatable(spec(
        "track-mem",
        None,
        Flag,
        Memory,
        "turn on the kernel's memory change tracker",
        Accepted("crust finds changed pages by comparing them with the parent dump's, with or without it (no soft-dirty needed)"),
    )),
    negatable(spec(
        "auto-dedup",
        None,
        Flag,
        Memory,
        "dump: punch the parent's pages that this dump replaces; restore: punch pages once restored",
        NotYet("needs deduplication (the dedup verb)"),
    )),
    spec(
        "libdir",
        Some('L'),
        Req("DIR"),
        Other,
        "directory of CRIU plugins",
        Accepted("crust loads no plugins; what would need one (a GPU device) fails the dump naming the fd"),
    ),
    spec(
        "cpu-cap",
        None,
        Opt("CAP[,CAP...]"),
        Special,
        "CPU capabilities to record (dump) or require (restore): cpu, fpu, ins, all, none, ^CAP to drop one; no value means all",
        ByValue(
            "none and fpu accepted (crust writes no cpuinfo.img; the kernel refuses an FPU state this CPU cannot take); \
             cpu, ins and all not yet: they need cpuinfo.img",
        ),
    ),
    negatable(spec(
        "force-irmap",
        None,
        Flag,
        Special,
        "resolve the paths of inotify watches",
        Accepted("crust always resolves each watch's path from its file handle"),
    )),
    spec(
        "ext-mount-map",
        Some('M'),
        Req("KEY:VALUE"),
        External,
        "external bind mounts (old form of --external mnt[]...)",
        ImplementedNote("dump: MOUNTPOINT:KEY, or auto (= --external mnt[]); restore: KEY:PATH"),
    ),
    spec(
        "exec-cmd",
        None,
        Flag,
        Generic,
        "restore: once restored, exec the command given after `--`, which becomes the parent of the restored tree",
        Implemented,
    ),
    spec(
        "manage-cgroups",
        None,
        Opt("MODE"),
        Special,
        "dump and restore the tree's cgroups; MODE is none, props, soft (the default), full, strict or ignore",
        ImplementedNote("every mode; a hierarchy's root cgroup never gets properties, and below a root crust records the tree's cgroups only, not the whole host hierarchy as CRIU does; v2 controller limits (memory.max, pids.max, ...) are recorded too"),
    ),
    spec(
        "cgroup-root",
        None,
        Req("[CONTROLLER:]/NEWROOT"),
        Special,
        "change the root cgroup of a controller (dump: what is dumped; restore: where the tree goes)",
        ByValue("restore: the tree's top cgroup of each hierarchy (CONTROLLER, or every other one) is replaced by PATH; dump: refused, crust records every path as it is"),
    ),
    spec(
        "inherit-fd",
        None,
        Req("fd[NUM]:RES"),
        External,
        "restore: use crust's fd NUM for the resource RES (tty[rdev:dev], pipe[inode], socket[inode], file[mnt_id:inode], path)",
        ImplementedNote("keys pipe:[INO], socket:[INO] and a file's path; tty[...] and file[mnt_id:inode] match nothing crust dumps (logged); dump ignores it, as CRIU"),
    ),
    spec(
        "feature",
        None,
        Req("NAME"),
        Check,
        "check: only check the kernel feature NAME (`list` lists them)",
        Implemented,
    ),
    spec(
        "skip-mnt",
        None,
        Req("PATH"),
        External,
        "ignore this mount point when dumping the mount namespace",
        ImplementedNote("the mounts below it are left out too; a file of the tree on them fails the dump naming it"),
    ),
    spec(
        "enable-fs",
        None,
        Req("FSNAMES"),
        External,
        "dump and restore mounts of these filesystems (comma-separated, or all) even if unsupported",
        NotYet("crust makes anew only proc, sysfs, tmpfs, devpts, mqueue, cgroup and cgroup2 mounts, which need no --enable-fs"),
    ),
    spec(
        "enable-external-sharing",
        None,
        Flag,
        External,
        "allow external shared mounts (old form of --external mnt[]:s)",
        Accepted("crust refuses every shared mount of a dumped mount namespace for now, so the flag changes nothing"),
    ),
    spec(
        "enable-external-masters",
        None,
        Flag,
        External,
        "allow external slave mounts (old form of --external mnt[]:m)",
        Accepted("crust refuses every slave mount of a dumped mount namespace for now, so the flag changes nothing"),
    ),
    spec(
        "freeze-cgroup",
        None,
        Req("PATH"),
        Generic,
        "dump: use the cgroup freezer at PATH to stop the processes",
        ImplementedNote("v1 freezer.state or unified cgroup.freeze, waited for in 0.2-5 ms steps (v1) or with poll on cgroup.events (v2), not CRIU's 100 ms; every task of the cgroup must be in the tree; its state before the dump is put back on every path"),
    ),
    spec(
        "ghost-limit",
        None,
        Req("SIZE"),
        Special,
        "largest unlinked file carried in the images (K, M, G suffixes; default 1M)",
        Implemented,
    ),
    spec(
        "irmap-scan-path",
        None,
        Req("PATH"),
        Special,
        "a path to scan when resolving inotify watch paths",
        Accepted("crust resolves watch paths from file handles, without scanning"),
    ),
    spec(
        "lsm-profile",
        None,
        Req("TYPE:NAME"),
        Special,
        "restore: the LSM profile (apparmor or selinux) for the restored tasks",
        NotYet("crust does not dump or restore LSM profiles"),
    ),
    spec(
        "timeout",
        None,
        Req("SECONDS"),
        Generic,
        "dump: time limit for collecting the tasks (default 10)",
        ImplementedNote("bounds the wait for each thread to stop after it is seized (a task in uninterruptible sleep); 0 waits without a bound"),
    ),
    spec(
        "external",
        None,
        Req("RES"),
        External,
        "dump or restore this object as external: tty[rdev:dev], file[mnt_id:inode], dev[maj/min]:NAME, unix[ino], mnt[...], net[ino]:NAME, pid[ino]:NAME, veth[...], macvlan[...]",
        ByValue("mnt[MOUNTPOINT]:KEY (dump), mnt[KEY]:PATH (restore), mnt[] (auto-detection), veth[IN]:OUT[@BRIDGE] (restore) and net[INODE]:KEY (dump; the restore joins --inherit-fd fd[N]:KEY) implemented; every other kind not yet"),
    ),
    spec(
        "empty-ns",
        None,
        Req("net"),
        External,
        "restore: create the network namespace but leave it empty for the action scripts",
        Implemented,
    ),
    spec(
        "lazy-pages",
        None,
        Flag,
        Generic,
        "restore: the tree runs once its memory layout is in place; `crust lazy-pages` (started first, same work directory) fills its memory as it touches it. dump: private anonymous pages stay in the frozen tree, served on --address/--port to a `lazy-pages --page-server` on the destination; the tree is killed once it has them all",
        ByValue("restore: implemented (private anonymous memory through userfaultfd; lazy-pages.socket in the work directory); dump: implemented (needs --port; with --page-server not yet); pre-dump: not yet"),
    ),
    negatable(spec("extra", None, Flag, Check, "check: also check the features some trees need (CRIU's category 2)", Implemented)),
    negatable(spec("experimental", None, Flag, Check, "check: also check the experimental features (category 3)", Implemented)),
    spec("all", None, Flag, Check, "check: --extra and --experimental", Implemented),
    spec("cgroup-props", None, Req("STRING"), Special, "cgroup controllers and properties to dump, in CRIU's YAML form", NotYet("crust records its built-in property lists only")),
    spec("cgroup-props-file", None, Req("FILE"), Special, "the same, read from FILE", NotYet("crust records its built-in property lists only")),
    spec("cgroup-dump-controller", None, Req("NAME"), Special, "dump only this cgroup controller", NotYet("crust records every hierarchy")),
    negatable(spec(
        "skip-in-flight",
        None,
        Flag,
        Special,
        "ignore TCP connections that are not established yet instead of failing",
        ImplementedNote("a listener's connections still waiting for accept are left out (logged); without it they fail the dump, naming the listener"),
    )),
    negatable(spec(
        "deprecated",
        None,
        Flag,
        Other,
        "allow CRIU's deprecated features",
        Accepted("crust has no deprecated features to allow"),
    )),
    negatable(spec(
        "display-stats",
        None,
        Flag,
        Logging,
        "print the dump or restore statistics at the end",
        Implemented,
    )),
    negatable(spec(
        "weak-sysctls",
        None,
        Flag,
        Generic,
        "restore: skip sysctls this kernel lacks",
        Accepted("crust already skips the IPC namespace sysctls a kernel lacks (msg_next_id and the like); it restores no other sysctl"),
    )),
    spec(
        "status-fd",
        None,
        Req("FD"),
        Server,
        "page-server, lazy-pages, service: write a zero byte to FD and close it once ready",
        Accepted("no effect on dump and restore, as in CRIU"),
    ),
    negatable(spec(
        "tcp-close",
        None,
        Flag,
        Special,
        "do not dump established TCP connections; restore them closed",
        ImplementedNote("dump: no repair mode and no lock; the socket is recorded closed with its addresses and restored as a fresh socket, not bound"),
    )),
    spec(
        "verbosity",
        Some('v'),
        Opt("NUM"),
        Logging,
        "log level: -v0 none, -v1 errors, -v2 warnings (default), -v3 information, -v4 debug; -v, -vv... add one each",
        Implemented,
    ),
    spec("ps-socket", None, Req("FD"), Server, "use FD as the page server's socket", NotYet("a page server socket handed over as an fd")),
    negatable(spec(
        "stream",
        None,
        Flag,
        Generic,
        "dump and restore through criu-image-streamer",
        NotYet("needs the image streamer protocol"),
    )),
    spec("config", None, Req("FILE"), Config, "read options from FILE (CRIU's configuration file format)", Implemented),
    spec(
        "no-default-config",
        None,
        Flag,
        Config,
        "do not read /etc/criu/default.conf and ~/.criu/default.conf",
        Implemented,
    ),
    spec("tls-cacert", None, Req("FILE"), Server, "trust only certificates signed by this CA", Accepted(TLS_ONLY)),
    spec("tls-cacrl", None, Req("FILE"), Server, "certificate revocation list", Accepted(TLS_ONLY)),
    spec("tls-cert", None, Req("FILE"), Server, "TLS certificate", Accepted(TLS_ONLY)),
    spec("tls-key", None, Req("FILE"), Server, "TLS private key", Accepted(TLS_ONLY)),
    negatable(spec("tls", None, Flag, Server, "use TLS for the page server connection", NotYet("page server connections over TLS"))),
    spec("tls-no-cn-verify", None, Flag, Server, "do not verify the server certificate's common name", Accepted(TLS_ONLY)),
    spec(
        "cgroup-yard",
        None,
        Req("PATH"),
        Special,
        "a directory with the cgroup hierarchies already mounted",
        NotYet("crust mounts the hierarchies itself (detached mounts)"),
    ),
    spec(
        "pre-dump-mode",
        None,
        Req("splice|read"),
        Memory,
        "how pre-dump copies pages: splice (the default) or read",
        Accepted("crust picks per process: vmsplice for large resident memory, process_vm_readv for the rest"),
    ),
    spec(
        "file-validation",
        None,
        Req("filesize|buildid"),
        Special,
        "how restore checks that a file is the one that was dumped",
        NotYet("crust checks only that each file exists; needs the file's size (and build-id) in the images"),
    ),
    negatable(spec(
        "skip-file-rwx-check",
        None,
        Flag,
        Special,
        "restore: do not check the files' permission bits",
        Accepted("crust does not check permission bits"),
    )),
    spec(
        "lsm-mount-context",
        None,
        Req("CTX"),
        Special,
        "restore: SELinux context for restored mounts",
        NotYet("crust does not set SELinux contexts on the mounts it makes"),
    ),
    spec(
        "network-lock",
        None,
        Req("METHOD"),
        Generic,
        "how TCP connections are locked between dump and restore: iptables (CRIU's default), nftables or skip",
        ByValue(
            "nftables implemented (CRIU's lock: one nftables table for the dump, inet CRIU-<run id>, which CRIU's \
             restore lifts, as crust's restore lifts CRIU's nftables or iptables lock); iptables accepted with the same \
             lock: the connection's packets are dropped by the nftables table instead of iptables rules, and where \
             iptables is iptables-nft (Debian 10 and later; on the machine of 2026-12-06, CRIU 4.2.1's own iptables lock \
             shows in `nft list ruleset` as rules of table ip filter) both are nf_tables rules dropping the same packets, \
             and the inventory says nftables; skip implemented (connections are not locked: the caller locks the \
             network; the inventory says skip, as CRIU's, and the restore lifts nothing)",
        ),
    ),
    negatable(spec(
        "mntns-compat-mode",
        None,
        Flag,
        Generic,
        "use CRIU's older mount restore engine",
        Accepted("crust has one way of restoring mounts (the new mount API), which it uses either way"),
    )),
    negatable(spec(
        "unprivileged",
        None,
        Flag,
        Generic,
        "accept the limits of running without root",
        Accepted("crust runs the same way with or without it; what needs a privilege it lacks fails naming the call"),
    )),
    negatable(spec(
        "ghost-fiemap",
        None,
        Flag,
        Special,
        "find the data of sparse unlinked files with FIEMAP (on by default)",
        Accepted("crust finds the data runs with SEEK_DATA/SEEK_HOLE, CRIU's fallback, which gives the same image"),
    )),
    negatable(spec(
        "allow-uprobes",
        None,
        Flag,
        Generic,
        "allow a [uprobes] memory area",
        Accepted("a [uprobes] area still fails the dump naming it"),
    )),
    // crust's own.
    spec(
        "frozen-copy",
        None,
        Flag,
        Crust,
        "with --leave-running: keep the tree frozen while its pages are copied, instead of the copy-on-write snapshot",
        Implemented,
    ),
    spec(
        "skip-checksums",
        None,
        Flag,
        Crust,
        "restore without verifying the pages against the CRC-32C checksums crust's dump wrote (crust-checksums.img), nor the images against its list: for a dump known to be damaged",
        Implemented,
    ),
    Spec {
        long: "fault-inject",
        short: None,
        arg: Req("STEP"),
        negatable: false,
        group: Crust,
        help: "testing: fail the dump right after STEP (seize, collect, parasite, memory, files, images, pages, pages-killed); \
               hold:POINT waits at POINT (a dump step, or parasite-leader, parasite-threads, memory-pipes, restore-forked, \
               restore-seized, restore-restorers, restore-finished) until stdin closes, saying so on stderr",
        state: Implemented,
        hidden: true,
    },
];

/// The option with this long name.
pub fn find(long: &str) -> Option<&'static Spec> {
    OPTIONS.iter().find(|s| s.long == long)
}

/// The option with this short letter.
pub fn find_short(letter: char) -> Option<&'static Spec> {
    OPTIONS.iter().find(|s| s.short == Some(letter))
}

/// Every long name the command line takes, `no-` forms included.
pub fn all_long_names() -> Vec<String> {
    let mut names = Vec::new();
    for spec in OPTIONS {
        names.push(spec.long.to_string());
        if spec.negatable {
            names.push(format!("no-{}", spec.long));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRIU 4.2.1's getopt table, read from the reference binary (`tests/data`).
    fn criu_table() -> Vec<(String, u8, Option<char>)> {
        include_str!("../../tests/data/criu-4.2-options.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|line| {
                let mut words = line.split_whitespace();
                let name = words.next().unwrap().to_string();
                let arg = words.next().unwrap().parse().unwrap();
                let short = words.next().unwrap();
                (name, arg, if short == "-" { None } else { short.chars().next() })
            })
            .collect()
    }

    #[test]
    fn every_criu_option_is_in_the_table_with_its_argument_and_letter() {
        let names = all_long_names();
        for (name, arg, short) in criu_table() {
            assert!(names.contains(&name), "--{name} missing");
            let Some(spec) = find(&name) else {
                // A `no-` form: its base is negatable and takes no argument.
                let base = find(name.strip_prefix("no-").unwrap()).unwrap();
                assert!(base.negatable && arg == 0, "--{name}");
                continue;
            };
            let ours = match spec.arg {
                Arg::None => 0,
                Arg::Required(_) => 1,
                Arg::Optional(_) => 2,
            };
            assert_eq!(ours, arg, "--{name} argument");
            assert_eq!(spec.short, short, "--{name} short letter");
        }
    }

    #[test]
    fn crust_has_no_no_form_criu_lacks() {
        let criu: Vec<String> = criu_table().into_iter().map(|t| t.0).collect();
        for spec in OPTIONS.iter().filter(|s| s.negatable) {
            assert!(criu.contains(&format!("no-{}", spec.long)), "--no-{} is not CRIU's", spec.long);
        }
    }

    #[test]
    fn names_and_letters_are_unique() {
        let names = all_long_names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        let mut letters: Vec<char> = OPTIONS.iter().filter_map(|s| s.short).collect();
        let count = letters.len();
        letters.sort();
        letters.dedup();
        assert_eq!(letters.len(), count);
    }
}
