//! cgroup.img across tools, with the reference CRIU 4.2 (`ci/criu`): a tree in pid and
//! cgroup namespaces of its own (`tests/data/cg_tree.c`), its init in cgroups of the
//! test's own in the v1 pids hierarchy and the unified one, a child in a nested cgroup
//! of each, with limits that are not the defaults (pids.max, cgroup.max.descendants).
//! Each tool dumps with `--manage-cgroups`, the cgroups are removed, the other restores
//! with `--manage-cgroups`: the cgroups, their limits, every process's membership and
//! the init's view from inside its cgroup namespace must come back. crust on both
//! halves is checked the same way, and with `--cgroup-root` per hierarchy (the tree and
//! its limits below the new roots). Without root, the reference CRIU or the hierarchies
//! the test says `skipped: <reason>`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, crust, skip_reason, subreaper, tempdir, wait_exit};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ sits in the repository").to_path_buf()
}

fn reference_criu() -> Result<PathBuf, String> {
    let root = std::env::var_os("CRUST_CRIU_ROOT").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".cache/criu-root"));
    if !cfg!(target_arch = "x86_64") {
        return Err("the reference root is an x86_64 one".into());
    }
    if !root.join("usr/sbin/criu").exists() {
        return Err(format!("reference criu not installed ({} missing; run ci/criu-reference.sh)", root.join("usr/sbin/criu").display()));
    }
    Ok(repo_root().join("ci/criu"))
}

/// The test's cgroups: (directory of the init's cgroup, of the child's) per hierarchy,
/// with the limit file of each.
struct Cgroups {
    dirs: Vec<(PathBuf, PathBuf, &'static str)>,
    /// Per hierarchy: its controllers as `--cgroup-root` names them and the test's
    /// cgroup path in it.
    paths: Vec<(&'static str, String)>,
}

impl Cgroups {
    /// Below this process's own cgroup of the v1 pids hierarchy and of the unified one
    /// (those mounted), `crust-cgtest-<pid>-<name>/sub`.
    fn make(name: &str) -> Result<Cgroups, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let mut dirs = Vec::new();
        let mut paths = Vec::new();
        for line in mountinfo.lines() {
            let Some((head, tail)) = line.split_once(" - ") else { continue };
            let fields: Vec<&str> = head.split(' ').collect();
            let tail: Vec<&str> = tail.split(' ').collect();
            let (root, mount) = (fields[3], fields[4]);
            let (controllers, limit) = match (tail[0], tail.get(2)) {
                ("cgroup2", _) => ("", "cgroup.max.descendants"),
                ("cgroup", Some(options)) if options.split(',').filter(|o| *o != "rw" && *o != "ro").eq(["pids"]) => ("pids", "pids.max"),
                _ => continue,
            };
            if dirs.iter().any(|(_, _, l)| *l == limit) {
                continue;
            }
            let Some(path) = own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, c, p) = (parts.next()?, parts.next()?, parts.next()?);
                (c == controllers).then(|| p.to_string())
            }) else {
                continue;
            };
            let Some(below) = path.strip_prefix(root.trim_end_matches('/')) else { continue };
            let leaf = format!("crust-cgtest-{}-{name}", std::process::id());
            let base = Path::new(mount).join(below.trim_start_matches('/')).join(&leaf);
            paths.push((controllers, format!("{}/{leaf}", path.trim_end_matches('/'))));
            let sub = base.join("sub");
            std::fs::create_dir_all(&sub).map_err(|e| format!("create {}: {e}", sub.display()))?;
            std::fs::write(base.join(limit), "9").map_err(|e| format!("write {limit}: {e}"))?;
            std::fs::write(sub.join(limit), "4").map_err(|e| format!("write {limit}: {e}"))?;
            dirs.push((base, sub, limit));
        }
        if dirs.is_empty() {
            return Err("neither a v1 pids hierarchy nor the unified one is mounted".into());
        }
        Ok(Cgroups { dirs, paths })
    }

    fn remove(&self) {
        for (base, sub, _) in &self.dirs {
            let _ = std::fs::remove_dir(sub);
            let _ = std::fs::remove_dir(base);
            let moved = moved(base);
            let _ = std::fs::remove_dir(moved.join("sub"));
            let _ = std::fs::remove_dir(moved);
        }
    }

    /// The limits, as `file = value` lines (`moved`: below the new roots).
    fn limits(&self, moved_root: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (base, sub, limit) in &self.dirs {
            let (base, sub) = if moved_root { (moved(base), moved(base).join("sub")) } else { (base.clone(), sub.clone()) };
            for dir in [&base, &sub] {
                let value = std::fs::read_to_string(dir.join(limit)).map(|v| v.trim().to_string()).unwrap_or_else(|e| format!("unreadable: {e}"));
                out.push(format!("{} = {value}", dir.join(limit).display()));
            }
        }
        out
    }
}

/// Where `--cgroup-root` puts the test's cgroup `path` (a path or a directory).
fn moved<P: AsRef<Path>>(path: P) -> PathBuf {
    let path = path.as_ref();
    path.with_file_name(format!("{}-moved", path.file_name().unwrap_or_default().to_string_lossy()))
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What must come back: each process's cgroups, the init's view from inside its cgroup
/// namespace, the limits.
fn state(root: i32, cgroups: &Cgroups, moved_root: bool) -> Vec<String> {
    let child: i32 = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children")).unwrap().trim().parse().expect("one child");
    let mut out = Vec::new();
    for pid in [root, child] {
        out.push(std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap().replace('\n', " "));
        let inside = Command::new("nsenter").args(["-t", &root.to_string(), "-C", "cat", &format!("/proc/{pid}/cgroup")]).output().unwrap();
        out.push(format!("inside: {}", String::from_utf8_lossy(&inside.stdout).replace('\n', " ")));
    }
    out.extend(cgroups.limits(moved_root));
    out
}

/// `move_root`: the restore gets `--cgroup-root CONTROLLER:NEW` for each hierarchy and
/// the tree must come back below NEW.
fn cross(name: &str, dumper: &mut dyn FnMut() -> Command, restorer: &mut dyn FnMut() -> Command, move_root: bool) {
    if let Some(reason) = skip_reason() {
        eprintln!("{name}: skipped: {reason}");
        return;
    }
    let cgroups = match Cgroups::make(name) {
        Ok(cgroups) => cgroups,
        Err(reason) => {
            eprintln!("{name}: skipped: {reason}");
            return;
        }
    };
    subreaper();
    let dir = tempdir(name);
    let binary = compile(&dir, "cg_tree", &[]);
    let mut command = Command::new(&binary);
    command.args(cgroups.dirs.iter().map(|(base, ..)| base.join("cgroup.procs")));
    command.arg("--").args(cgroups.dirs.iter().map(|(_, sub, _)| sub.join("cgroup.procs")));
    let (mut launcher, text, _) = common::start_with_pipes(&mut command, 0);
    let root: i32 = text.trim().parse().expect("the launcher wrote the init's pid");
    assert!(launcher.wait().unwrap().success(), "launcher");
    // The child moves itself; wait until it is in its cgroup.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(cgroups.dirs[0].1.join("cgroup.procs")).unwrap_or_default().trim().parse::<i32>().is_ok() {
        assert!(std::time::Instant::now() < deadline, "the child did not join its cgroup");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut before = state(root, &cgroups, false);

    let images = dir.join("img");
    std::fs::create_dir_all(&images).unwrap();
    let log = |file: &str| std::fs::read_to_string(images.join(file)).unwrap_or_default();
    let dumped = dumper().args(["dump", "-t", &root.to_string(), "-D"]).arg(&images).args(["-o", "dump.log", "-v4", "--manage-cgroups"]).output().unwrap();
    assert!(dumped.status.success(), "dump: {}\n{}", String::from_utf8_lossy(&dumped.stderr), log("dump.log"));
    wait_exit(root);
    // Gone with the tree; the restore must make them again, with their limits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cgroups.dirs.iter().any(|(base, ..)| base.exists()) {
        cgroups.remove();
        assert!(std::time::Instant::now() < deadline, "the dumped tree's cgroups stay busy");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let pidfile = dir.join("restored.pid");
    let mut roots = Vec::new();
    if move_root {
        let leaf = format!("crust-cgtest-{}-{name}", std::process::id());
        for line in &mut before {
            *line = line.replace(&leaf, &format!("{leaf}-moved"));
        }
        for (controllers, path) in &cgroups.paths {
            roots.push("--cgroup-root".to_string());
            roots.push(format!("{controllers}:{}", moved(path).display()));
        }
    }
    let restored = restorer()
        .args(["restore", "-D"])
        .arg(&images)
        .args(&roots)
        .args(["-d", "--manage-cgroups", "--pidfile"])
        .arg(&pidfile)
        .args(["-o", "restore.log", "-v4"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "restore: {}\n{}", String::from_utf8_lossy(&restored.stderr), log("restore.log"));
    let restored_root: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let after = state(restored_root, &cgroups, move_root);
    common::signal(restored_root, libc::SIGKILL);
    wait_exit(restored_root);
    assert_eq!(after, before, "cgroups after the restore");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crust_dumps_and_restores_cgroups() {
    cross("crust-cg", &mut crust, &mut crust, false);
}

#[test]
fn crust_restores_cgroups_under_a_new_root() {
    cross("crust-cg-root", &mut crust, &mut crust, true);
}

#[test]
fn crust_dumps_criu_restores_cgroups() {
    match reference_criu() {
        Ok(criu) => cross("crust-to-criu-cg", &mut crust, &mut || Command::new(&criu), false),
        Err(reason) => eprintln!("crust_dumps_criu_restores_cgroups: skipped: {reason}"),
    }
}

#[test]
fn criu_dumps_crust_restores_cgroups() {
    match reference_criu() {
        Ok(criu) => cross("criu-to-crust-cg", &mut || Command::new(&criu), &mut crust, false),
        Err(reason) => eprintln!("criu_dumps_crust_restores_cgroups: skipped: {reason}"),
    }
}
