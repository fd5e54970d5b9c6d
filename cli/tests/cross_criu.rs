//! Cross restores with the reference CRIU 4.2 (`ci/criu`, installed by
//! `ci/criu-reference.sh`): crust dumps and CRIU restores, CRIU dumps and crust
//! restores, a process tree with state of many kinds (`tests/data/interop.c`: memory,
//! threads asleep in syscalls, a read the restore must restart, pipe and socket data, a
//! file offset, a pty's control characters, a child in a group of its own). The
//! program checks itself after the restore. Without the reference CRIU the tests say
//! `skipped: <reason>`; under `CI=true` a missing reference fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, crust, signal, skip_reason, subreaper, tempdir, wait_exit};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ sits in the repository").to_path_buf()
}

/// `ci/criu` when the reference root is installed; otherwise why the test is skipped
/// (and a failure under `CI=true`).
fn reference_criu(test: &str) -> Option<PathBuf> {
    let root = std::env::var_os("CRUST_CRIU_ROOT").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".cache/criu-root"));
    let reason = if let Some(reason) = skip_reason() {
        reason
    } else if !cfg!(target_arch = "x86_64") {
        "the reference root is an x86_64 one".to_string()
    } else if !root.join("usr/sbin/criu").exists() {
        format!("reference criu not installed ({} missing; run ci/criu-reference.sh)", root.join("usr/sbin/criu").display())
    } else {
        return Some(repo_root().join("ci/criu"));
    };
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true") || skip_reason().is_some(), "{test}: CI=true needs the reference criu: {reason}");
    eprintln!("{test}: skipped: {reason}");
    None
}

/// The children of `pid` (its threads' children too).
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    out
}

/// Dumps the interop program with `dumper` and restores it with `restorer`, then lets
/// it check itself.
fn cross(name: &str, dumper: &mut dyn FnMut() -> Command, restorer: &mut dyn FnMut() -> Command) {
    subreaper();
    let dir = tempdir(name);
    let binary = compile(&dir, "interop", &["-lpthread"]);
    let out = dir.join("interop.out");
    let mut command = Command::new(&binary);
    command.arg(&out);
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    let pid = child.id() as i32;
    assert_eq!(text.trim(), pid.to_string(), "the program wrote its pid");
    let grandchildren = children(pid);
    assert_eq!(grandchildren.len(), 1, "one child of {pid}");

    let images = dir.join("img");
    std::fs::create_dir_all(&images).unwrap();
    let dumped = dumper().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["-o", "dump.log", "-v4"]).output().unwrap();
    let log = |file: &str| std::fs::read_to_string(images.join(file)).unwrap_or_default();
    assert!(dumped.status.success(), "dump: {}\n{}", String::from_utf8_lossy(&dumped.stderr), log("dump.log"));
    // The dump killed the tree: reap it (the child was orphaned to this subreaper), so
    // that its pids are free again.
    wait_exit(pid);
    for &grandchild in &grandchildren {
        wait_exit(grandchild);
    }

    let pidfile = dir.join("restored.pid");
    let restored = restorer()
        .args(["restore", "-D"])
        .arg(&images)
        .args(["-d", "--pidfile"])
        .arg(&pidfile)
        .args(["-o", "restore.log", "-v4"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "restore: {}\n{}", String::from_utf8_lossy(&restored.stderr), log("restore.log"));
    let root: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(root, pid, "restored under its pid");
    signal(root, libc::SIGUSR1);
    let status = wait_exit(root);
    let verdict = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(verdict, "PASS\n", "the restored program's check (wait status {status:#x})");
    assert_eq!(status, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crust_dumps_criu_restores() {
    let Some(criu) = reference_criu("crust_dumps_criu_restores") else { return };
    cross("crust-to-criu", &mut crust, &mut || Command::new(&criu));
}

#[test]
fn criu_dumps_crust_restores() {
    let Some(criu) = reference_criu("criu_dumps_crust_restores") else { return };
    cross("criu-to-crust", &mut || Command::new(&criu), &mut crust);
}
