//! Container runtimes driving a criu: the runc and podman flows of a counting busybox
//! container, run with each criu under test (crust installed as `criu`, the reference
//! CRIU), side by side with their checkpoint and restore wall times.
//!
//! Flows (`FLOWS`): runc checkpoint + restore, `--leave-running`, `--pre-dump` then a
//! checkpoint with `--parent-path`, a bind-mounted host directory, two processes over
//! loopback TCP (`--tcp-established`); podman `container checkpoint`/`restore` and
//! `--export`/`--import` under a new name. Each passes when the restored container's
//! count goes on from the dumped value and its long-lived processes have the pids
//! inside they had (see `counter`).
//!
//! Nothing is left behind: every container a flow starts is registered with the run's
//! [`Guard`] before it starts, and the guard deletes it after the flow, whatever the
//! flow's outcome (also on a panic: `Drop`); then it kills what is still in the run's
//! cgroups, removes them, unmounts what is mounted under the run's directory and
//! reports each such leftover as a failure. The runner is the child subreaper of
//! everything the runtimes start (`crate::reaper`).

pub mod counter;
pub mod exec;
pub mod podman;
pub mod rootfs;
pub mod runc;

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::reaper::Reaper;

/// A criu the runtimes are to use.
#[derive(Debug, Clone)]
pub struct Criu {
    /// Shown in the table: `crust`, `criu`.
    pub label: String,
    /// Given to runc as `--criu`; named `criu`, in `dir`.
    pub path: PathBuf,
    /// Put first in podman's `PATH`.
    pub dir: PathBuf,
}

/// What `zdtm-runner runtimes` was asked.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LABEL=PATH` pairs: each criu runs every flow.
    pub crius: Vec<(String, PathBuf)>,
    pub workdir: PathBuf,
    pub filter: Option<String>,
    /// A criu configuration file every container names (runc's `org.criu.config`
    /// annotation; it wins over runc's options): a probe to look past an option the
    /// criu under test refuses, e.g. `manage-cgroups ignore`. Not for passing runs.
    pub criu_config: Option<PathBuf>,
}

/// One flow: its name and what it runs.
pub struct Flow {
    pub name: &'static str,
    pub kind: FlowKind,
}

/// Which runtime and how.
#[derive(Debug, Clone, Copy)]
pub enum FlowKind {
    Runc(runc::RuncFlow),
    /// `true`: `--export` and `--import` under a new name.
    Podman(bool),
}

/// Every flow, in the order they run.
pub const FLOWS: &[Flow] = &[
    Flow { name: "runc", kind: FlowKind::Runc(runc::RuncFlow { leave_running: false, pre_dump: false, bind: false, tcp: false }) },
    Flow { name: "runc-leave-running", kind: FlowKind::Runc(runc::RuncFlow { leave_running: true, pre_dump: false, bind: false, tcp: false }) },
    Flow { name: "runc-pre-dump", kind: FlowKind::Runc(runc::RuncFlow { leave_running: false, pre_dump: true, bind: false, tcp: false }) },
    Flow { name: "runc-bind", kind: FlowKind::Runc(runc::RuncFlow { leave_running: false, pre_dump: false, bind: true, tcp: false }) },
    Flow { name: "runc-tcp", kind: FlowKind::Runc(runc::RuncFlow { leave_running: false, pre_dump: false, bind: false, tcp: true }) },
    Flow { name: "podman", kind: FlowKind::Podman(false) },
    Flow { name: "podman-export", kind: FlowKind::Podman(true) },
];

/// Wall times of a flow's runtime commands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub pre_dump: Option<Duration>,
    pub checkpoint: Option<Duration>,
    pub restore: Option<Duration>,
}

/// A flow's outcome with one criu.
#[derive(Debug)]
pub struct FlowResult {
    pub flow: &'static str,
    pub criu: String,
    pub outcome: Outcome,
}

/// Passed (with its wall times), failed (why, in one line) or skipped (why).
#[derive(Debug)]
pub enum Outcome {
    Pass(Timing),
    Fail(String),
    Skip(String),
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }
}

/// A flow that cannot run with this criu on this machine, and why.
#[derive(Debug)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

/// What every flow of the run shares.
pub struct RunContext {
    pub reaper: Reaper,
    pub workdir: PathBuf,
    pub busybox: PathBuf,
    pub runc: PathBuf,
    pub podman: PathBuf,
    /// runc's `--root` (its state of the run's containers).
    pub runc_root: PathBuf,
    /// podman's configuration, storage and state.
    pub podman_dir: PathBuf,
    /// The run's cgroup below the root of every hierarchy (`crust-runtimes-PID`).
    pub cgroup_parent: String,
    /// Containers are named `PREFIX-FLOW`.
    pub name_prefix: String,
    /// See [`Config::criu_config`].
    pub criu_config: Option<PathBuf>,
    pub guard: Guard,
}

/// One flow with one criu.
pub struct FlowContext<'a> {
    pub run: &'a RunContext,
    pub criu: &'a Criu,
    pub name: String,
    /// The flow's directory (bundle, images, logs).
    pub dir: PathBuf,
}

/// Runs the flows `config` picks with every criu; prints a table; returns the results.
/// Call before any other thread starts: the runner becomes a child subreaper.
pub fn run(config: &Config) -> anyhow::Result<Vec<FlowResult>> {
    let busybox = crate::container::rootfs::find_busybox().context("no busybox: ci/setup.sh installs busybox-static")?;
    rootfs::prepare(&busybox)?;
    let runc = find_in_path("runc").context("no runc: ci/setup.sh installs runc")?;
    let flows: Vec<&Flow> = FLOWS.iter().filter(|flow| config.filter.as_deref().is_none_or(|f| f.split(',').any(|w| flow.name.contains(w)))).collect();
    let wants_podman = flows.iter().any(|flow| matches!(flow.kind, FlowKind::Podman(_)));
    let podman_path = find_in_path("podman");
    if wants_podman && podman_path.is_none() {
        bail!("no podman: ci/setup.sh installs podman");
    }
    let workdir = exec::fresh_dir(&config.workdir)?;
    let workdir = workdir.canonicalize().context("workdir")?;
    let reaper = Reaper::start()?;
    let pid = std::process::id();
    let cgroup_parent = format!("crust-runtimes-{pid}");
    let run = RunContext {
        reaper: reaper.clone(),
        busybox,
        runc,
        podman: podman_path.unwrap_or_default(),
        runc_root: workdir.join("runc-state"),
        podman_dir: workdir.join("podman"),
        cgroup_parent: cgroup_parent.clone(),
        name_prefix: format!("crust-{pid}"),
        criu_config: config.criu_config.clone(),
        guard: Guard::new(reaper, workdir.clone(), cgroup_parent),
        workdir: workdir.clone(),
    };
    let tables_before = nft_tables();
    let mut crius = Vec::new();
    for (label, path) in &config.crius {
        // Labels name containers, cgroups and directories.
        if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            bail!("--criu {label}=...: a label is letters, digits, _ and - only");
        }
        crius.push(criu_as_named(&workdir, label, path)?);
    }
    if wants_podman {
        podman::write_config(&run.podman_dir)?;
        podman::import_image(&run)?;
    }
    let mut results = Vec::new();
    println!("{:<20} {:<8} {:<6} {:>11} {:>9} {:>9}  detail", "flow", "criu", "result", "pre-dump s", "ckpt s", "restore s");
    for flow in &flows {
        for criu in &crius {
            let dir = exec::fresh_dir(&workdir.join(&criu.label).join(flow.name))?;
            let ctx = FlowContext { run: &run, criu, name: format!("{}-{}", flow.name, criu.label), dir };
            let outcome = match flow.kind {
                FlowKind::Runc(spec) => runc::run_flow(&ctx, spec),
                FlowKind::Podman(export) => podman::run_flow(&ctx, export),
            };
            let left = run.guard.clean(&run);
            let outcome = match (outcome, left) {
                (Ok(timing), left) if left.is_empty() => Outcome::Pass(timing),
                (Ok(_), left) => Outcome::Fail(format!("left behind (removed): {}", left.join("; "))),
                (Err(error), left) if left.is_empty() => match error.downcast_ref::<Skip>() {
                    Some(skip) => Outcome::Skip(skip.0.clone()),
                    None => Outcome::Fail(format!("{error:#}")),
                },
                (Err(error), left) => Outcome::Fail(format!("{error:#}; and left behind (removed): {}", left.join("; "))),
            };
            let result = FlowResult { flow: flow.name, criu: criu.label.clone(), outcome };
            println!("{}", row(&result));
            results.push(result);
        }
    }
    let mut left = run.guard.finish(&run);
    match (tables_before, nft_tables()) {
        (Some(before), Some(after)) => {
            for table in after.iter().filter(|t| !before.contains(t)) {
                let named = format!("{} {}", table.family, table.name);
                if is_lock_table(&table.name) {
                    // A lock table (crust's, or named as CRIU names a dump's lock): the
                    // run's own, removed.
                    let _ = Command::new("nft").args(["delete", "table", &table.family, &table.name]).status();
                    left.push(format!("nftables table {named}"));
                } else {
                    // Another tool's (iptables-nft makes `ip filter` on first use): not
                    // the run's to remove.
                    println!("note: nftables table {named} appeared during the run (no lock table: left as it is)");
                }
            }
        }
        _ => println!("note: `nft list tables` failed: lock tables left behind were not looked for"),
    }
    if !left.is_empty() {
        results.push(FlowResult { flow: "teardown", criu: "-".into(), outcome: Outcome::Fail(format!("the run left behind (removed): {}", left.join("; "))) });
        println!("{}", row(results.last().expect("just pushed")));
    }
    print_side_by_side(&results);
    Ok(results)
}

/// One line of the table.
pub fn row(result: &FlowResult) -> String {
    let secs = |d: Option<Duration>| d.map(|d| format!("{:.2}", d.as_secs_f64())).unwrap_or_else(|| "-".into());
    match &result.outcome {
        Outcome::Pass(t) => format!("{:<20} {:<8} {:<6} {:>11} {:>9} {:>9}", result.flow, result.criu, "pass", secs(t.pre_dump), secs(t.checkpoint), secs(t.restore)),
        Outcome::Fail(why) => format!("{:<20} {:<8} {:<6} {:>11} {:>9} {:>9}  {why}", result.flow, result.criu, "FAIL", "-", "-", "-"),
        Outcome::Skip(why) => format!("{:<20} {:<8} {:<6} {:>11} {:>9} {:>9}  {why}", result.flow, result.criu, "skip", "-", "-", "-"),
    }
}

/// With two criu or more: per flow, each one's checkpoint/restore wall times.
fn print_side_by_side(results: &[FlowResult]) {
    let mut labels: Vec<&str> = results.iter().map(|r| r.criu.as_str()).filter(|l| *l != "-").collect();
    labels.dedup();
    labels.sort();
    labels.dedup();
    if labels.len() < 2 {
        return;
    }
    println!("\nwall times, checkpoint / restore (s):");
    let mut flows: Vec<&str> = results.iter().map(|r| r.flow).filter(|f| *f != "teardown").collect();
    flows.dedup();
    print!("{:<20}", "flow");
    for label in &labels {
        print!(" {:>16}", label);
    }
    println!();
    for flow in flows {
        print!("{flow:<20}");
        for label in &labels {
            let cell = results.iter().find(|r| r.flow == flow && r.criu == *label).map(|r| match &r.outcome {
                Outcome::Pass(t) => format!("{:.2} / {:.2}", t.checkpoint.unwrap_or_default().as_secs_f64(), t.restore.unwrap_or_default().as_secs_f64()),
                Outcome::Fail(_) => "fail".to_string(),
                Outcome::Skip(_) => "skip".to_string(),
            });
            print!(" {:>16}", cell.unwrap_or_else(|| "-".into()));
        }
        println!();
    }
}

/// The criu at `path` under the name `criu` (runc runs what `--criu` names; podman
/// finds `criu` in `PATH`): itself when it is called so, else a script in the run's
/// directory that execs it.
fn criu_as_named(workdir: &Path, label: &str, path: &Path) -> anyhow::Result<Criu> {
    // Absolute but not resolved: a link named criu keeps its name (crust answers as
    // criu under it).
    let path = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().context("current directory")?.join(path) };
    if !path.exists() {
        bail!("criu {label}: {}: no such file", path.display());
    }
    if path.file_name().is_some_and(|n| n == "criu") {
        let dir = path.parent().context("criu's directory")?.to_path_buf();
        return Ok(Criu { label: label.to_string(), path, dir });
    }
    let dir = workdir.join(format!("criu-{label}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let script = dir.join("criu");
    std::fs::write(&script, format!("#!/bin/sh\nexec '{}' \"$@\"\n", path.display())).with_context(|| format!("write {}", script.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).context("chmod criu script")?;
    Ok(Criu { label: label.to_string(), path: script, dir })
}

/// A program in `PATH`.
fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// The tables `nft list tables` lists: none without nft, `None` when it fails three
/// times (a listing interrupted by a concurrent change fails).
fn nft_tables() -> Option<Vec<crate::leftovers::NftTable>> {
    for _ in 0..3 {
        match Command::new("nft").args(["list", "tables"]).stdin(std::process::Stdio::null()).output() {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
            Ok(output) if output.status.success() => return Some(crate::leftovers::parse_tables(&String::from_utf8_lossy(&output.stdout))),
            _ => {}
        }
    }
    None
}

/// A lock table's name: crust's own (`crust_*`) or as CRIU names a dump's lock
/// (`CRIU-<run id>`), which crust makes too.
fn is_lock_table(name: &str) -> bool {
    name.starts_with("crust_") || name.starts_with("CRIU-")
}

/// What the run's flows started, to be removed whatever happens.
pub struct Guard {
    reaper: Reaper,
    workdir: PathBuf,
    cgroup_parent: String,
    runc: Mutex<Vec<String>>,
    podman: Mutex<Vec<String>>,
    netns: Mutex<Vec<String>>,
    finished: Mutex<bool>,
}

impl Guard {
    fn new(reaper: Reaper, workdir: PathBuf, cgroup_parent: String) -> Self {
        Guard { reaper, workdir, cgroup_parent, runc: Mutex::new(Vec::new()), podman: Mutex::new(Vec::new()), netns: Mutex::new(Vec::new()), finished: Mutex::new(false) }
    }

    /// A runc container the flow is about to start.
    pub fn runc_container(&self, id: &str) {
        self.runc.lock().unwrap_or_else(|p| p.into_inner()).push(id.to_string());
    }

    /// A podman container the flow is about to create.
    pub fn podman_container(&self, name: &str) {
        self.podman.lock().unwrap_or_else(|p| p.into_inner()).push(name.to_string());
    }

    /// A named network namespace (`ip netns add`) the flow is about to make.
    pub fn netns(&self, name: &str) {
        self.netns.lock().unwrap_or_else(|p| p.into_inner()).push(name.to_string());
    }

    /// After a flow: deletes its containers (those still there are leftovers only if
    /// the flow meant to delete them; a flow that failed leaves them to this), then
    /// kills what is left in the run's cgroups. Returns what had to be removed that
    /// the flow should have removed itself: processes in the run's cgroups.
    fn clean(&self, run: &RunContext) -> Vec<String> {
        let mut left = Vec::new();
        for id in std::mem::take(&mut *self.runc.lock().unwrap_or_else(|p| p.into_inner())) {
            let mut delete = Command::new(&run.runc);
            delete.arg("--root").arg(&run.runc_root).args(["delete", "-f", &id]);
            let _ = exec::run(&self.reaper, &mut delete, &self.workdir, Duration::from_secs(60));
        }
        for name in std::mem::take(&mut *self.podman.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = exec::run(&self.reaper, &mut podman::podman(run, &run.podman_dir, &["rm", "-f", "-t", "0", &name]), &self.workdir, Duration::from_secs(60));
        }
        for name in std::mem::take(&mut *self.netns.lock().unwrap_or_else(|p| p.into_inner())) {
            if Path::new("/run/netns").join(&name).exists() {
                let _ = exec::run(&self.reaper, Command::new("ip").args(["netns", "delete", &name]), &self.workdir, Duration::from_secs(60));
            }
        }
        // podman's conmon and the `podman container cleanup` it runs leave a moment
        // after `podman rm`: what is still in the run's cgroups after that is left.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.cgroup_processes().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in self.cgroup_processes() {
            left.push(format!("process {pid} ({})", comm(pid)));
            crate::container::sys::kill_hard(pid);
        }
        left
    }

    /// At the end of the run: removes the run's cgroups, podman's storage and every
    /// mount under the run's directory. Returns what was left there.
    fn finish(&self, run: &RunContext) -> Vec<String> {
        let mut left = self.clean(run);
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
        if run.podman_dir.join("storage.conf").exists() {
            let _ = exec::run(&self.reaper, &mut podman::podman(run, &run.podman_dir, &["rm", "-a", "-f", "-t", "0"]), &self.workdir, Duration::from_secs(60));
            let _ = exec::run(&self.reaper, &mut podman::podman(run, &run.podman_dir, &["rmi", "-a", "-f"]), &self.workdir, Duration::from_secs(60));
        }
        left.extend(self.remove_cgroups());
        for mount in crate::leftovers::own_mounts_under(&self.workdir) {
            let _ = crate::leftovers::detach_mount(&mount);
            left.push(format!("mount {}", mount.display()));
        }
        left
    }

    /// Host pids in the run's cgroups (any hierarchy), thawing frozen ones first.
    fn cgroup_processes(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for hierarchy in crate::container::cgroups::host_hierarchies().unwrap_or_default() {
            let top = hierarchy.mount.join(&self.cgroup_parent);
            if !top.exists() {
                continue;
            }
            let mut dirs = vec![top.clone()];
            dirs.extend(all_below(&top));
            for dir in dirs {
                crate::container::cgroups::thaw(&hierarchy, &dir);
                pids.extend(crate::container::cgroups::processes(&dir));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn remove_cgroups(&self) -> Vec<String> {
        let mut left = Vec::new();
        for hierarchy in crate::container::cgroups::host_hierarchies().unwrap_or_default() {
            let top = hierarchy.mount.join(&self.cgroup_parent);
            if top.exists() {
                if let Err(error) = crate::container::cgroups::remove_tree(&top, Duration::from_secs(10)) {
                    left.push(format!("cgroup {}: {error:#}", top.display()));
                }
            }
        }
        left
    }
}

impl Drop for Guard {
    /// A run cut short (a panic) still removes the run's cgroups' processes and the
    /// cgroups themselves; the containers' state goes with the run's directory.
    fn drop(&mut self) {
        if *self.finished.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        for pid in self.cgroup_processes() {
            crate::container::sys::kill_hard(pid);
        }
        let _ = self.remove_cgroups();
        for name in self.netns.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = exec::run(&self.reaper, Command::new("ip").args(["netns", "delete", name]), &self.workdir, Duration::from_secs(60));
        }
        for mount in crate::leftovers::own_mounts_under(&self.workdir) {
            let _ = crate::leftovers::detach_mount(&mount);
        }
    }
}

fn all_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for child in crate::container::cgroups::children(dir) {
        found.extend(all_below(&child));
        found.push(child);
    }
    found
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim().to_string()).unwrap_or_else(|_| "?".into())
}
