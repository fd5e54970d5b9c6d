//! Tests with [`crate::catalog::Requirement::OwnCgroups`] in the `ns` flavor: the
//! harness puts the ns init into cgroups of the test's own in every hierarchy (with the
//! container flavor's distinctive limits, `container::cgroups::LIMITS`) and the init
//! unshares a cgroup namespace rooted there; once the test is ready, its main process
//! moves into a child cgroup `sub` of the pids and unified hierarchies (its own pids.max
//! and cgroup.max.descendants), so the tree has two sets, nested cgroups and tasks that
//! the restore must move back out of their parent's cgroup. The tree is dumped with
//! `--manage-cgroups --freeze-cgroup` (the test's v1 freezer, else its unified cgroup);
//! between dump and restore the harness checks the cgroups are empty and removes them,
//! so the restore must make them again with their limits. Compared before and after:
//! every process's /proc/PID/cgroup, the init's view from inside its cgroup namespace,
//! the limits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::container::cgroups::{self, Hierarchy};
use crate::container::sys::{self as ctsys, Namespace};

/// The limits of the `sub` cgroup (not the defaults, not the parent's).
const SUB_LIMITS: &[(&str, &str, &str)] = &[("pids", "pids.max", "77"), ("", "cgroup.max.descendants", "3")];

/// How long dead tasks may take to leave their cgroups.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// One test's cgroups.
pub struct OwnCgroups {
    hierarchies: Vec<Hierarchy>,
    /// The run's directory in each hierarchy (`crust-zdtm-cg-<harness pid>`).
    bases: Vec<PathBuf>,
    /// The test's directory in each hierarchy.
    dirs: Vec<PathBuf>,
    /// Limit files set (the test's and `sub`'s).
    limit_files: Vec<PathBuf>,
}

impl OwnCgroups {
    /// Makes the test's cgroups (and the run's around them when missing).
    pub fn create(test: &str) -> anyhow::Result<OwnCgroups> {
        let hierarchies = cgroups::host_hierarchies()?;
        cgroups::check_usable(&hierarchies).context("cgroup test")?;
        let mut own = OwnCgroups { hierarchies: Vec::new(), bases: Vec::new(), dirs: Vec::new(), limit_files: Vec::new() };
        let base_name = format!("crust-zdtm-cg-{}", std::process::id());
        for hierarchy in &hierarchies {
            let base = hierarchy.own.join(&base_name);
            if !base.exists() {
                cgroups::create(hierarchy, &hierarchy.own, &base_name).with_context(|| format!("the run's cgroup in the {} hierarchy", hierarchy.label()))?;
            }
            let dir = base.join(test);
            if dir.exists() {
                cgroups::remove_tree(&dir, EMPTY_TIMEOUT)?;
            }
            let dir = cgroups::create(hierarchy, &base, test).with_context(|| format!("the test's cgroup in the {} hierarchy", hierarchy.label()))?;
            own.limit_files.extend(cgroups::set_limits(hierarchy, &dir)?.into_iter().map(|(file, _)| file));
            own.bases.push(base);
            own.dirs.push(dir);
        }
        own.hierarchies = hierarchies;
        Ok(own)
    }

    /// The ns init's environment: the `cgroup.procs` files it joins.
    pub fn launcher_env(&self) -> (String, String) {
        let procs: Vec<String> = self.dirs.iter().map(|dir| dir.join("cgroup.procs").display().to_string()).collect();
        ("ZDTM_CGROUPS".to_string(), procs.join("\n"))
    }

    /// Moves the test's main process `pid` into `sub` of the pids and unified
    /// hierarchies, made with [`SUB_LIMITS`].
    pub fn split(&mut self, pid: i32) -> anyhow::Result<()> {
        for (hierarchy, dir) in self.hierarchies.iter().zip(&self.dirs) {
            let limits: Vec<&(&str, &str, &str)> = SUB_LIMITS.iter().filter(|(controller, ..)| hierarchy.has(controller)).collect();
            if limits.is_empty() {
                continue;
            }
            let sub = cgroups::create(hierarchy, dir, "sub")?;
            for (_, file, value) in limits {
                let path = sub.join(file);
                if path.exists() {
                    std::fs::write(&path, value).with_context(|| format!("write {value} into {}", path.display()))?;
                    self.limit_files.push(path);
                }
            }
            let procs = sub.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).with_context(|| format!("move pid {pid} into {}", procs.display()))?;
        }
        Ok(())
    }

    /// `--manage-cgroups` and the test's freezer.
    pub fn dump_args(&self) -> Vec<String> {
        let freezer = self
            .hierarchies
            .iter()
            .position(|h| h.has("freezer"))
            .or_else(|| self.hierarchies.iter().position(|h| h.is_unified()))
            .map(|index| self.dirs[index].display().to_string())
            .unwrap_or_default();
        vec!["--manage-cgroups".into(), "--freeze-cgroup".into(), freezer]
    }

    /// `--manage-cgroups`.
    pub fn restore_args(&self) -> Vec<String> {
        vec!["--manage-cgroups".into()]
    }

    /// Every process's cgroups (by namespace pid), the init's view from inside its
    /// cgroup namespace, and the limits, as `what = value` lines.
    pub fn snapshot(&self, init: i32, processes: &[(i32, i32)]) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (host, ns_pid) in processes {
            let text = std::fs::read_to_string(format!("/proc/{host}/cgroup")).with_context(|| format!("read /proc/{host}/cgroup"))?;
            out.insert(format!("pid {ns_pid} cgroups"), squeeze(&text));
        }
        let inside = ctsys::in_namespace_of(init, Namespace::Cgroup, || {
            std::fs::read_to_string(format!("/proc/{init}/cgroup")).with_context(|| format!("read /proc/{init}/cgroup"))
        })?;
        out.insert("init's cgroups inside its cgroup namespace".into(), squeeze(&inside));
        for file in &self.limit_files {
            let value = std::fs::read_to_string(file).map(|v| v.trim().to_string()).unwrap_or_else(|e| format!("unreadable: {e}"));
            out.insert(file.display().to_string(), value);
        }
        Ok(out)
    }

    /// After the dump: the cgroups must empty (the tree is gone), then they are removed.
    pub fn after_dump(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + EMPTY_TIMEOUT;
        loop {
            let busy: Vec<String> = self.dirs.iter().filter(|dir| !tasks_below(dir).is_empty()).map(|dir| format!("{} {:?}", dir.display(), tasks_below(dir))).collect();
            if busy.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("after dump: cgroups not empty: {}", busy.join(", "));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in &self.dirs {
            cgroups::remove_tree(dir, EMPTY_TIMEOUT)?;
        }
        Ok(())
    }

    /// At the end: thaws and removes the test's cgroups (and the run's when empty).
    pub fn finish(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for (hierarchy, dir) in self.hierarchies.iter().zip(&self.dirs) {
            cgroups::thaw(hierarchy, dir);
            if let Err(error) = cgroups::remove_tree(dir, EMPTY_TIMEOUT) {
                eprintln!("zdtm: {error:#}");
                left.push(dir.clone());
            }
        }
        for base in &self.bases {
            if cgroups::children(base).is_empty() {
                let _ = std::fs::remove_dir(base);
            }
        }
        left
    }
}

/// Pids in `dir` and every cgroup below it.
fn tasks_below(dir: &std::path::Path) -> Vec<i32> {
    let mut pids = cgroups::processes(dir);
    for child in cgroups::children(dir) {
        pids.extend(tasks_below(&child));
    }
    pids
}

fn squeeze(text: &str) -> String {
    text.trim().replace('\n', " ")
}
