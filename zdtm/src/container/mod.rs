//! The container flavors (`--flavor container`, `container-uns`): what the harness
//! builds around a test so that it runs as the init of new pid, mount, network, UTS, IPC
//! and cgroup namespaces (and a user namespace), the engine options that dump and
//! restore it the way runc does, the checks between dump and restore, and the removal of
//! everything at the end of each test and of the run.
//!
//! Per run ([`ContainerRun`]): a slot (`/run/crust-zdtm/slot-N.lock`, so runs in other
//! worktrees use other names and addresses), the rootfs template (`rootfs.rs`), a bridge
//! `zdtmbrN` with 198.18.(16N).1/20 and fdcc:0:N::1/64 (our own test ranges: 198.18.0.0/15
//! and fdcc::/16), and a cgroup `crust-zdtm-N` below the harness's own in every
//! hierarchy. Per test ([`ContainerTest`]): a cgroup with [`cgroups::LIMITS`], a veth
//! `zdtmNvI` on the bridge whose other end is the container's `eth0` with an address of
//! each family and default routes (set up over rtnetlink, `netlink.rs`), and a hostname.
//! The launcher `c/ct_init.c` builds the namespaces and mounts.

pub mod cgroups;
pub mod elf;
pub mod netlink;
pub mod rootfs;
pub mod snapshot;
pub mod sys;

use crate::leftovers::{Leftovers, StrayProcess};
use anyhow::{bail, Context};
use cgroups::Hierarchy;
use netlink::Rtnl;
use snapshot::{ContainerSnapshot, Subject};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sys::Namespace;

/// Host uid and gid of root in the `container-uns` flavor's user namespace.
pub const USERNS_FIRST_ID: u32 = 100_000;
/// How many ids its maps cover.
pub const USERNS_COUNT: u32 = 65_536;
/// Where the test programs are inside the rootfs.
pub const CONTAINER_BIN: &str = "/zdtm-bin";
/// Where the test's output directory is bound inside the container.
pub const CONTAINER_OUTDIR: &str = "/zdtm";
/// The container's end of the veth.
pub const INNER_LINK: &str = "eth0";
/// Its MTU (not the default, so a restore that loses it shows).
pub const INNER_MTU: u32 = 1400;
/// Device nodes the `container-uns` init binds from the host's /dev (mknod is not
/// allowed in a user namespace): external mounts for the engine, as runc declares them.
pub const BOUND_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Runs of the container flavor on one machine at a time, each with its own names.
const SLOTS: u32 = 16;
/// How long the kernel may take to tear down a network namespace (and its veth) once its
/// last process is gone, or a cgroup to drop its dead tasks.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The container flavor's per-run state.
pub struct ContainerRun {
    slot: u32,
    _slot_lock: std::fs::File,
    rootfs: PathBuf,
    bridge: String,
    hierarchies: Vec<Hierarchy>,
    /// The run's cgroup in each hierarchy, in the order of `hierarchies`.
    bases: Vec<PathBuf>,
    next_index: Cell<u32>,
    keep_rootfs: bool,
    torn_down: Cell<bool>,
}

/// One test's container.
#[derive(Debug)]
pub struct ContainerTest {
    /// The test's number in the run.
    pub index: u32,
    /// `container-uns`.
    pub userns: bool,
    /// Host end of the veth.
    pub veth: String,
    /// The container's hostname.
    pub hostname: String,
    /// The test's cgroup in each hierarchy (same order as the run's).
    pub cgroups: Vec<PathBuf>,
    /// Limit files set on them, and their freezer state files: compared before the dump
    /// and after the restore.
    pub limit_files: Vec<PathBuf>,
    /// `eth0`'s addresses.
    pub address4: Ipv4Addr,
    /// IPv6 address of `eth0`.
    pub address6: Ipv6Addr,
    /// Namespaces (`/proc/PID/ns/KIND` inode and kind) of every init the test had: at
    /// launch and after each restore; the pid ones also find stray processes.
    pub namespaces: BTreeSet<(String, u64)>,
}

/// The namespace kinds the container has of its own (and `container-uns` a user
/// namespace).
const OWN_NAMESPACES: &[&str] = &["pid", "mnt", "net", "uts", "ipc", "cgroup"];

impl ContainerRun {
    /// Takes a free slot, builds the rootfs template in `<workdir>/rootfs` from the
    /// programs in `bin_dir` and `busybox`, creates the bridge and the run's cgroups.
    /// `keep_rootfs`: leave the template in place at the end (`--keep`).
    pub fn setup(workdir: &Path, bin_dir: &Path, busybox: &Path, keep_rootfs: bool) -> anyhow::Result<ContainerRun> {
        let (slot, slot_lock) = take_slot()?;
        let hierarchies = cgroups::host_hierarchies()?;
        cgroups::check_usable(&hierarchies).context("container flavor")?;
        let rootfs = workdir.join("rootfs");
        rootfs::build(&rootfs, bin_dir, busybox).context("build the container rootfs")?;
        let mut run = ContainerRun {
            slot,
            _slot_lock: slot_lock,
            rootfs,
            bridge: format!("zdtmbr{slot}"),
            bases: Vec::new(),
            hierarchies,
            next_index: Cell::new(0),
            keep_rootfs,
            torn_down: Cell::new(false),
        };
        // What a run that died in this slot left: ours to remove now.
        let stale = run.remove_network(true);
        let base_name = run.base_name();
        for hierarchy in &run.hierarchies {
            let base = hierarchy.own.join(&base_name);
            if base.exists() {
                eprintln!("zdtm: removing {} left by an earlier run in slot {slot}", base.display());
                cgroups::remove_tree(&base, TEARDOWN_TIMEOUT)?;
            }
        }
        if !stale.is_empty() {
            eprintln!("zdtm: removed what an earlier run in slot {slot} left: {}", stale.describe());
        }
        for hierarchy in &run.hierarchies {
            let base = cgroups::create(hierarchy, &hierarchy.own, &base_name)
                .with_context(|| format!("the run's cgroup in the {} hierarchy", hierarchy.label()))?;
            run.bases.push(base);
        }
        let mut rtnl = Rtnl::open()?;
        let bridge = rtnl.add_bridge(&run.bridge)?;
        rtnl.add_address(bridge, IpAddr::V4(run.gateway4()), 20)?;
        rtnl.add_address(bridge, IpAddr::V6(run.gateway6()), 64)?;
        rtnl.set_up(bridge, None)?;
        Ok(run)
    }

    /// The rootfs template.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    fn base_name(&self) -> String {
        format!("crust-zdtm-{}", self.slot)
    }

    fn veth_prefix(&self) -> String {
        format!("zdtm{}v", self.slot)
    }

    fn gateway4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + self.slot * 4096 + 1)
    }

    fn gateway6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfdcc, 0, self.slot as u16, 0, 0, 0, 0, 1)
    }

    /// Creates the test's cgroups (with limits) and picks its names and addresses.
    pub fn start_test(&self, name: &str, userns: bool) -> anyhow::Result<ContainerTest> {
        let index = self.next_index.get();
        self.next_index.set(index + 1);
        let mut test = ContainerTest {
            index,
            userns,
            veth: format!("{}{index}", self.veth_prefix()),
            hostname: format!("zdtm-{name}").chars().take(64).collect(),
            cgroups: Vec::new(),
            limit_files: Vec::new(),
            address4: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + self.slot * 4096 + 2 + index % 4000),
            address6: Ipv6Addr::new(0xfdcc, 0, self.slot as u16, 0, 0, 0, 0, 2 + (index % 60000) as u16),
            namespaces: BTreeSet::new(),
        };
        for (hierarchy, base) in self.hierarchies.iter().zip(&self.bases) {
            let dir = cgroups::create(hierarchy, base, name)
                .with_context(|| format!("the test's cgroup in the {} hierarchy", hierarchy.label()))?;
            test.limit_files.extend(cgroups::set_limits(hierarchy, &dir)?.into_iter().map(|(file, _)| file));
            if let Some((file, _)) = cgroups::freezer_file(hierarchy) {
                if dir.join(file).exists() {
                    test.limit_files.push(dir.join(file));
                }
            }
            test.cgroups.push(dir);
        }
        Ok(test)
    }

    /// The launcher's environment (`c/ct_init.c`), besides the ready and go fds.
    pub fn launcher_env(&self, test: &ContainerTest, outdir: &Path) -> Vec<(String, String)> {
        let procs: Vec<String> = test.cgroups.iter().map(|dir| dir.join("cgroup.procs").display().to_string()).collect();
        let mut env = vec![
            ("ZDTM_ROOTFS".to_string(), self.rootfs.display().to_string()),
            ("ZDTM_OUTDIR".to_string(), outdir.display().to_string()),
            ("ZDTM_HOSTNAME".to_string(), test.hostname.clone()),
            ("ZDTM_CT_INIT".to_string(), format!("{CONTAINER_BIN}/c-tests/ct_init")),
            ("ZDTM_CGROUPS".to_string(), procs.join("\n")),
        ];
        if test.userns {
            env.push(("ZDTM_USERNS".to_string(), format!("{USERNS_FIRST_ID}:{USERNS_COUNT}")));
        }
        env
    }

    /// Gives the container whose init is `init` its network: the veth (host end on the
    /// bridge, up), `eth0` up with an address of each family, default routes via the
    /// bridge.
    pub fn connect(&self, test: &ContainerTest, init: i32) -> anyhow::Result<()> {
        let mut host = Rtnl::open()?;
        let bridge = host.link_index(&self.bridge)?.with_context(|| format!("bridge {} gone", self.bridge))?;
        let index = host.add_veth(&test.veth, INNER_LINK, init, INNER_MTU)?;
        host.set_up(index, Some(bridge))?;
        let (address4, address6) = (test.address4, test.address6);
        let (gateway4, gateway6) = (self.gateway4(), self.gateway6());
        sys::in_namespace_of(init, Namespace::Net, || {
            let mut inner = Rtnl::open()?;
            let eth0 = inner.link_index(INNER_LINK)?.with_context(|| format!("no {INNER_LINK} in the container"))?;
            inner.set_up(eth0, None)?;
            inner.add_address(eth0, IpAddr::V4(address4), 20)?;
            inner.add_address(eth0, IpAddr::V6(address6), 64)?;
            inner.add_default_route(IpAddr::V4(gateway4))?;
            inner.add_default_route(IpAddr::V6(gateway6))?;
            Ok(())
        })
        .with_context(|| format!("network of the container of pid {init}"))
    }

    /// Records the namespaces of the container's (new) init.
    pub fn note_init(&self, test: &mut ContainerTest, init: i32) {
        let user: &[&str] = if test.userns { &["user"] } else { &[] };
        for kind in OWN_NAMESPACES.iter().chain(user) {
            if let Some(inode) = namespace_inode(&format!("/proc/{init}/ns/{kind}")) {
                test.namespaces.insert((kind.to_string(), inode));
            }
        }
    }

    /// The options runc gives a dump of such a container (minus `empty_ns`, so the
    /// network namespace is dumped): its root, the test's directory and (user
    /// namespace) the host's device nodes as external mounts, cgroups managed, frozen
    /// through the test's freezer cgroup.
    pub fn dump_args(&self, test: &ContainerTest) -> Vec<String> {
        let mut args = vec!["--root".to_string(), self.rootfs.display().to_string()];
        args.extend(["--ext-mount-map".to_string(), format!("{CONTAINER_OUTDIR}:{CONTAINER_OUTDIR}")]);
        if test.userns {
            for device in BOUND_DEVICES {
                args.extend(["--ext-mount-map".to_string(), format!("/dev/{device}:/dev/{device}")]);
            }
        }
        args.push("--manage-cgroups".to_string());
        args.extend(["--freeze-cgroup".to_string(), self.freezer(test).display().to_string()]);
        args
    }

    /// The options of the restore: the same root and external mounts (the test's
    /// directory at its host path), cgroups managed, the veth's host end named and put
    /// on the bridge.
    pub fn restore_args(&self, test: &ContainerTest, outdir: &Path) -> Vec<String> {
        let mut args = vec!["--root".to_string(), self.rootfs.display().to_string()];
        args.extend(["--ext-mount-map".to_string(), format!("{CONTAINER_OUTDIR}:{}", outdir.display())]);
        if test.userns {
            for device in BOUND_DEVICES {
                args.extend(["--ext-mount-map".to_string(), format!("/dev/{device}:/dev/{device}")]);
            }
        }
        args.push("--manage-cgroups".to_string());
        args.extend(["--external".to_string(), format!("veth[{INNER_LINK}]:{}@{}", test.veth, self.bridge)]);
        args
    }

    /// The test's freezer: its v1 freezer cgroup, or its unified one.
    fn freezer(&self, test: &ContainerTest) -> PathBuf {
        let position = self
            .hierarchies
            .iter()
            .position(|h| h.has("freezer"))
            .or_else(|| self.hierarchies.iter().position(|h| h.is_unified()))
            .expect("check_usable found a freezer or the unified hierarchy");
        test.cgroups[position].clone()
    }

    /// Between dump and restore: the old container must be gone (no process in its
    /// namespaces, the veth gone with its network namespace, its cgroups empty); then
    /// the harness removes its cgroups, which the restore must create again with their
    /// limits.
    pub fn after_dump(&self, test: &ContainerTest) -> anyhow::Result<()> {
        let deadline = Instant::now() + TEARDOWN_TIMEOUT;
        loop {
            let in_namespaces = processes_in(&test.namespaces);
            let veth = Rtnl::open()?.link_index(&test.veth)?;
            let busy: Vec<String> = test
                .cgroups
                .iter()
                .filter(|dir| !cgroups::processes(dir).is_empty())
                .map(|dir| format!("{} {:?}", dir.display(), cgroups::processes(dir)))
                .collect();
            if in_namespaces.is_empty() && veth.is_none() && busy.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let mut what = Vec::new();
                if !in_namespaces.is_empty() {
                    what.push(format!("processes {in_namespaces:?} still in the dumped container's namespaces"));
                }
                if veth.is_some() {
                    what.push(format!("veth {} still there", test.veth));
                }
                if !busy.is_empty() {
                    what.push(format!("cgroups not empty: {}", busy.join(", ")));
                }
                bail!("after dump, {}s later: {}", TEARDOWN_TIMEOUT.as_secs(), what.join("; "));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in &test.cgroups {
            cgroups::remove_tree(dir, TEARDOWN_TIMEOUT)?;
            if dir.exists() {
                bail!("cgroup {} still there after its removal", dir.display());
            }
        }
        Ok(())
    }

    /// Thaws the test's freezer cgroups: an engine killed while the container was frozen
    /// leaves it so, and frozen tasks do not die until thawed.
    pub fn thaw(&self, test: &ContainerTest) {
        for (hierarchy, dir) in self.hierarchies.iter().zip(&test.cgroups) {
            cgroups::thaw(hierarchy, dir);
        }
    }

    /// Records the container whose init is `init`.
    pub fn snapshot(&self, test: &ContainerTest, init: i32) -> anyhow::Result<ContainerSnapshot> {
        let processes: Vec<(i32, i32)> = crate::tree::descendants(init)
            .into_iter()
            .filter_map(|pid| crate::tree::ns_pid_of(pid).map(|ns_pid| (pid, ns_pid)))
            .collect();
        ContainerSnapshot::capture(&Subject { init, processes: &processes, host_end: &test.veth, limit_files: &test.limit_files })
    }

    /// After the harness killed the test's tree: kills what is left in the test's
    /// namespaces, waits for the veth to go with its network namespace, removes the
    /// test's cgroups and anything else below the run's cgroups. What should have gone
    /// by itself is returned (and removed).
    pub fn finish_test(&self, test: &ContainerTest) -> Leftovers {
        self.thaw(test);
        let mut found = Leftovers::default();
        let strays = processes_in(&test.namespaces);
        for pid in &strays {
            sys::kill_hard(*pid);
            found.processes.push(StrayProcess {
                pid: *pid,
                name: std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string(),
                exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
            });
        }
        let deadline = Instant::now() + TEARDOWN_TIMEOUT;
        while !processes_in(&test.namespaces).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let veth_there = || Rtnl::open().and_then(|mut rtnl| rtnl.link_index(&test.veth)).ok().flatten();
        while veth_there().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(index) = veth_there() {
            if let Err(error) = Rtnl::open().and_then(|mut rtnl| rtnl.delete_link(index)) {
                eprintln!("zdtm: could not delete veth {}: {error:#}", test.veth);
            }
            found.links.push(test.veth.clone());
        }
        for dir in &test.cgroups {
            if let Err(error) = cgroups::remove_tree(dir, TEARDOWN_TIMEOUT) {
                eprintln!("zdtm: {error:#}");
                found.cgroups.push(dir.clone());
            }
        }
        for base in &self.bases {
            for stray in cgroups::children(base) {
                if let Err(error) = cgroups::remove_tree(&stray, TEARDOWN_TIMEOUT) {
                    eprintln!("zdtm: {error:#}");
                }
                found.cgroups.push(stray);
            }
        }
        found.mounts.extend(crate::leftovers::own_mounts_under(&self.rootfs));
        for mount in &found.mounts {
            let _ = crate::leftovers::detach_mount(mount);
        }
        found
    }

    /// Deletes the bridge (and any veth of this run still there), the run's cgroups and
    /// the rootfs template; returns what was left besides them. Runs once (also on drop).
    pub fn teardown(&self) -> Leftovers {
        if self.torn_down.replace(true) {
            return Leftovers::default();
        }
        let mut found = self.remove_network(false);
        for base in &self.bases {
            for stray in cgroups::children(base) {
                found.cgroups.push(stray);
            }
            if let Err(error) = cgroups::remove_tree(base, TEARDOWN_TIMEOUT) {
                eprintln!("zdtm: {error:#}");
                found.cgroups.push(base.clone());
            }
        }
        if !self.keep_rootfs {
            if let Err(error) = std::fs::remove_dir_all(&self.rootfs) {
                eprintln!("zdtm: remove {}: {error}", self.rootfs.display());
            }
        }
        found
    }

    /// Deletes this slot's veths and (unless `bridge_is_stray` is false, then it is
    /// expected) its bridge; returns the links that should not have been there.
    fn remove_network(&self, bridge_is_stray: bool) -> Leftovers {
        let mut found = Leftovers::default();
        let Ok(mut rtnl) = Rtnl::open() else { return found };
        let Ok(links) = rtnl.links() else { return found };
        for link in links {
            let ours = link.name == self.bridge || link.name.starts_with(&self.veth_prefix());
            if !ours {
                continue;
            }
            if let Err(error) = rtnl.delete_link(link.index) {
                eprintln!("zdtm: could not delete link {}: {error:#}", link.name);
            }
            if link.name != self.bridge || bridge_is_stray {
                found.links.push(link.name);
            }
        }
        found
    }
}

impl Drop for ContainerRun {
    fn drop(&mut self) {
        let left = self.teardown();
        if !left.is_empty() {
            eprintln!("zdtm: the container run {}", left.describe());
        }
    }
}

/// Takes the first free slot's lock (`/run/crust-zdtm/slot-N.lock`).
fn take_slot() -> anyhow::Result<(u32, std::fs::File)> {
    let dir = Path::new("/run/crust-zdtm");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for slot in 0..SLOTS {
        let path = dir.join(format!("slot-{slot}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        if sys::try_lock(&file).with_context(|| format!("lock {}", path.display()))? {
            return Ok((slot, file));
        }
    }
    bail!("all {SLOTS} container-flavor slots ({}/slot-*.lock) are held by other runs", dir.display())
}

/// The inode of a `/proc/PID/ns/KIND` link (`net:[4026532180]`).
fn namespace_inode(link: &str) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let text = target.to_string_lossy();
    text.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// Host pids of the processes (any of their threads) in one of `namespaces`.
fn processes_in(namespaces: &BTreeSet<(String, u64)>) -> Vec<i32> {
    if namespaces.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| tasks.filter_map(|t| Some(t.ok()?.file_name().to_string_lossy().into_owned())).collect())
            .unwrap_or_default();
        let inside = tids.iter().any(|tid| {
            namespaces.iter().any(|(kind, inode)| namespace_inode(&format!("/proc/{pid}/task/{tid}/ns/{kind}")) == Some(*inode))
        });
        if inside {
            found.push(pid);
        }
    }
    found
}

/// The container's path of a program the harness runs from `bin_dir`.
pub fn program_path(bin_dir: &Path, program: &Path) -> anyhow::Result<String> {
    let relative = program
        .strip_prefix(bin_dir)
        .with_context(|| format!("{} is not in {}", program.display(), bin_dir.display()))?;
    Ok(format!("{CONTAINER_BIN}/{}", relative.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_under_the_containers_bin() {
        let bin = Path::new("/w/zdtm/bin");
        assert_eq!(program_path(bin, &bin.join("c-tests/sleep_pause")).unwrap(), "/zdtm-bin/c-tests/sleep_pause");
        assert_eq!(program_path(bin, &bin.join("zdtm-rs")).unwrap(), "/zdtm-bin/zdtm-rs");
        assert!(program_path(bin, Path::new("/usr/bin/python3")).is_err());
    }

    #[test]
    fn namespace_links_give_their_inode() {
        let inode = namespace_inode("/proc/self/ns/net").expect("own netns");
        assert!(inode > 0);
        assert_eq!(namespace_inode("/proc/self/ns/no-such"), None);
    }
}
