//! `cargo xtest ci`: the README's test command, what `.ci/run` runs after installing
//! what a fresh machine lacks. Each step runs in order; the first failure stops the run.
//!
//! Nothing may be left behind. The ci verb is the child subreaper of everything its
//! steps start, so whatever a step leaves running ends up as its child. After each step
//! it looks for what the step left: processes (its own descendants, and anything running
//! a program from the target directory), nftables tables named `crust_*` or `CRIU-*`
//! (a dump's TCP lock, named as CRIU names it, whichever tool made it) that appeared
//! during the step, mounts under the workspace or crust's scratch directories in
//! `$TMPDIR`. It removes them and fails the run, naming the step. A table is removed
//! only under CI (`CI=true`): on a machine shared with other runs it may be theirs, so
//! there the message gives the command instead.
//!
//! Unsafe here: `prctl(PR_SET_CHILD_SUBREAPER)`, `waitpid(-1, WNOHANG)` between steps (no
//! other wait is in flight then), `kill` of a leftover pid, `umount2(MNT_DETACH)`.
#![allow(unsafe_code)]

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One step: `cargo ARGS`; `slow` ones are left out by `--quick`.
struct Step {
    args: &'static [&'static str],
    slow: bool,
}

/// The tests CI's VM smoke run picks (`--filter`, comma-separated): signals, zombies,
/// stopped tasks and threads (the `sig` tests), anonymous memory, a pipe: 10 tests. On
/// aarch64 under TCG the 8 `sig` tests took 32 s from boot to power-off, and with these
/// two and fds_many 62 s, of which fds_many's dump and restore 20 s (so it is left out).
pub const SMOKE_TESTS: &str = "sig,anon_4k,pipe_data";

/// The flavors of CI's VM smoke run: the host flavor and the container flavor (each test
/// the init of its own namespaces and cgroups, rootfs from the arch's busybox-static).
/// Measured on 2026-12-06 (aarch64, load 9-12 from other builds), VM time of the 10
/// smoke tests: host alone 20 s, container alone 40 s, both in one boot 36 s (the
/// container flavor adds 16 s, and a busybox-static download on a fresh clone).
pub const SMOKE_FLAVORS: &str = "host,container";

/// The test steps: unit and integration tests, the arch crate's tests for aarch64,
/// ppc64le and s390x under qemu-user (about 80 s of CPU once the host's build scripts
/// are built, 2026-12-06), the fuzz crate's own tests, the zdtm suite, the same with the
/// reference CRIU dumping and crust restoring and the reverse (the core group in the
/// host flavor, about a minute each), runc's and podman's checkpoint and restore with
/// crust as their criu (`containers`), a few zdtm tests in a VM of another architecture
/// in the host and container flavors (so a tool the VM runs need shows missing at once),
/// the fuzz regression fixtures, 5 s of every fuzz target, and a minute of restore fuzz (mutated zdtm dumps through
/// `crust restore`; longer runs: `cargo xtest restore-fuzz --time S`).
const STEPS: &[Step] = &[
    Step { args: &["test", "--workspace"], slow: false },
    Step { args: &["xtest", "arch"], slow: true },
    Step { args: &["test", "--manifest-path", "fuzz/Cargo.toml"], slow: true },
    Step { args: &["xtest", "zdtm"], slow: false },
    Step { args: &["xtest", "zdtm", "--dump-with", "ci/criu"], slow: false },
    Step { args: &["xtest", "zdtm", "--restore-with", "ci/criu"], slow: false },
    Step { args: &["xtest", "containers"], slow: false },
    Step {
        args: &[
            "xtest",
            "zdtm",
            "--arch",
            crate::qemu::SMOKE_ARCH,
            "--filter",
            SMOKE_TESTS,
            "--flavor",
            SMOKE_FLAVORS,
            "--json",
            "target/cross/zdtm-smoke.json",
        ],
        slow: true,
    },
    Step { args: &["xtest", "fuzz", "--replay"], slow: true },
    Step { args: &["xtest", "fuzz", "--time", "5"], slow: true },
    Step { args: &["xtest", "restore-fuzz", "--time", "60"], slow: true },
];

/// How long what a step started may take to finish exiting before it counts as left.
const GRACE: Duration = Duration::from_secs(10);

/// Entry point of the ci verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(other) = args.iter().find(|a| *a != "--quick") {
        anyhow::bail!("ci: unknown option {other} (ci takes --quick: no fuzzing, no VM)");
    }
    become_subreaper()?;
    let scope = LeftoverScope::new();
    let started = Instant::now();
    for step in STEPS {
        if quick && step.slow {
            continue;
        }
        let step_started = Instant::now();
        let name = format!("cargo {}", step.args.join(" "));
        println!("\n=== ci: {name}");
        let tables_before = if scope.check_tables { crust_tables() } else { Vec::new() };
        let status = Command::new(&cargo).args(step.args).status().with_context(|| format!("run {name}"))?;
        println!("=== ci: {name}: {} in {:.0}s", if status.success() { "ok" } else { "FAILED" }, step_started.elapsed().as_secs_f64());
        let left = scope.collect(GRACE, &tables_before);
        if !left.is_empty() {
            anyhow::bail!("ci step `{name}` left behind (removed unless said otherwise): {}", left.join("; "));
        }
        if !status.success() {
            anyhow::bail!("ci step `{name}` failed ({status})");
        }
    }
    println!("\n=== ci: nothing left behind: no process, no crust nftables table, no mount");
    println!("=== ci: all steps passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Where leftovers are looked for.
struct LeftoverScope {
    /// Programs under here are the workspace's own builds (target/).
    target_dir: PathBuf,
    /// Mounts under these are the workspace's or crust's scratch directories'.
    mount_roots: Vec<PathBuf>,
    /// Look at nftables tables (not in unit tests: the machine's tables are not theirs).
    check_tables: bool,
    /// Delete a leftover table (under CI, where every table is this run's).
    remove_tables: bool,
}

impl LeftoverScope {
    fn new() -> Self {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
        let mut mount_roots = vec![workspace];
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            mount_roots.extend(
                entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("crust"))),
            );
        }
        let remove_tables = std::env::var("CI").is_ok_and(|value| value == "true");
        LeftoverScope { target_dir, mount_roots, check_tables: true, remove_tables }
    }

    /// What is left (after `grace` for processes and tables to go by themselves), each
    /// removed; empty when nothing is. A table counts only if it was not there before
    /// the step (`tables_before`), was there when the step ended and still is after the
    /// grace (a table of another run on the same machine comes and goes within a dump
    /// and a restore).
    fn collect(&self, grace: Duration, tables_before: &[(String, String)]) -> Vec<String> {
        let deadline = Instant::now() + grace;
        let mut tables_at_end = if self.check_tables { crust_tables() } else { Vec::new() };
        tables_at_end.retain(|table| !tables_before.contains(table));
        let (mut processes, mut tables);
        loop {
            reap_adopted();
            processes = self.processes();
            tables = if tables_at_end.is_empty() { Vec::new() } else { crust_tables() };
            tables.retain(|table| tables_at_end.contains(table));
            if (processes.is_empty() && tables.is_empty()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut left = Vec::new();
        for (pid, what) in &processes {
            // SAFETY: kill takes integers only; the pid is our descendant or runs one of
            // the workspace's programs.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
            left.push(format!("pid {pid} ({what})"));
        }
        for (family, name) in &tables {
            if self.remove_tables {
                let _ = Command::new("nft").args(["delete", "table", family, name]).stderr(Stdio::null()).status();
                left.push(format!("nftables table {family} {name}"));
            } else {
                left.push(format!("nftables table {family} {name} (not removed: outside CI it may be another run's; `nft delete table {family} {name}`)"));
            }
        }
        for mount in self.mounts() {
            let _ = detach_mount(&mount);
            left.push(format!("mount {}", mount.display()));
        }
        let killed_by = Instant::now() + grace;
        while !processes.is_empty() && Instant::now() < killed_by {
            reap_adopted();
            processes = self.processes();
            std::thread::sleep(Duration::from_millis(20));
        }
        left
    }

    /// Live processes under this one, and those running a program from the target
    /// directory (but this one and its ancestors), as (pid, `comm exe`).
    fn processes(&self) -> Vec<(i32, String)> {
        let own = std::process::id() as i32;
        let mut pids = descendants(own);
        let ancestors = ancestors(own);
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
                let from_target = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(&self.target_dir));
                if from_target && !ancestors.contains(&pid) && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        pids.into_iter()
            .filter(|&pid| pid != own)
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let (head, rest) = stat.rsplit_once(')')?;
                if rest.split_whitespace().next() == Some("Z") {
                    return None;
                }
                let comm = head.split_once('(').map_or("", |(_, comm)| comm);
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map(|e| e.display().to_string()).unwrap_or_default();
                Some((pid, format!("{comm} {exe}").trim().to_string()))
            })
            .collect()
    }

    /// Mount points of this process under the workspace or crust's scratch directories.
    fn mounts(&self) -> Vec<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|point| PathBuf::from(point.replace("\\040", " ")))
            .filter(|point| self.mount_roots.iter().any(|root| point.starts_with(root)))
            .collect();
        points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
        points
    }
}

/// `nft list tables`' lock tables (`crust_*`, `CRIU-*`) as (family, name); none
/// without nft.
fn crust_tables() -> Vec<(String, String)> {
    let Ok(output) = Command::new("nft").args(["list", "tables"]).stderr(Stdio::null()).output() else {
        return Vec::new();
    };
    parse_crust_tables(&String::from_utf8_lossy(&output.stdout))
}

/// The lock tables of `nft list tables` output: crust's own (`crust_*`) and those named
/// as CRIU names a dump's lock (`CRIU-<run id>`), which crust makes too.
fn parse_crust_tables(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["table", family, name] if name.starts_with("crust_") || name.starts_with("CRIU-") => Some((family.to_string(), name.to_string())),
            _ => None,
        })
        .collect()
}

/// Pids under `root` (excluded), parents first.
fn descendants(root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let pid = found[next];
        next += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.filter_map(|e| e.ok()) {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                if !found.contains(&child) {
                    found.push(child);
                }
            }
        }
    }
    found.remove(0);
    found
}

/// `pid`'s ancestors, up to pid 1.
fn ancestors(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut current = pid;
    while let Some(parent) = std::fs::read_to_string(format!("/proc/{current}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok()))
    {
        if parent <= 0 || found.contains(&parent) {
            break;
        }
        found.push(parent);
        current = parent;
    }
    found
}

#[doc(alias = "PR_SET_CHILD_SUBREAPER")]
fn become_subreaper() -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_CHILD_SUBREAPER)");
    }
    Ok(())
}

/// Reaps every exited child (orphans the steps left, adopted by this subreaper).
#[doc(alias = "waitpid")]
fn reap_adopted() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int into `status`, on this stack.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if pid <= 0 {
            return;
        }
    }
}

#[doc(alias = "umount2")]
fn detach_mount(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: c_path is NUL-terminated and outlives the call.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crust_tables_count() {
        let listing = "table inet filter\ntable ip crust_tcp_4711\ntable ip6 crust_tcp_9\ntable ip crustacean\ntable inet CRIU-a6f832d8-fea2-41e3-91\n";
        assert_eq!(
            parse_crust_tables(listing),
            vec![
                ("ip".to_string(), "crust_tcp_4711".to_string()),
                ("ip6".to_string(), "crust_tcp_9".to_string()),
                ("inet".to_string(), "CRIU-a6f832d8-fea2-41e3-91".to_string())
            ]
        );
    }

    #[test]
    fn a_leftover_child_is_found_and_removed() {
        let scope = LeftoverScope {
            target_dir: PathBuf::from("/nonexistent-target"),
            mount_roots: Vec::new(),
            check_tables: false,
            remove_tables: false,
        };
        let mut child = Command::new("sleep").arg("1000").spawn().expect("spawn sleep");
        let left = scope.collect(Duration::from_millis(100), &[]);
        let _ = child.wait();
        assert!(left.iter().any(|l| l.starts_with(&format!("pid {} (sleep", child.id()))), "{left:?}");
        assert!(scope.processes().is_empty());
    }

    #[test]
    fn smoke_step_runs_the_smoke_arch() {
        let smoke = STEPS.iter().find(|s| s.args.contains(&"--arch")).expect("a VM step");
        assert!(smoke.args.contains(&crate::qemu::SMOKE_ARCH) && smoke.slow);
        let flavors = smoke.args.iter().position(|a| *a == "--flavor").map(|i| smoke.args[i + 1]).expect("--flavor");
        assert!(crate::zdtm::wants_container_flavor(&["--flavor".to_string(), flavors.to_string()]));
    }
}
