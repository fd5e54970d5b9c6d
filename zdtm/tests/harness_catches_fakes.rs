//! The harness must fail a restore that is not one: `fake-engine.sh` kills the target at
//! dump and re-runs the program under the same pid at restore. Needs root (ptrace-free,
//! but ns_last_pid and the subreaper's view of others' pids); otherwise reports skipped.
//! The re-run programs are nobody's restore and run on after the harness gave up on
//! them: the harness must also kill them (and fail the test for them), so nothing of
//! the run is left once it exits.

use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"))
}

/// Pids of the processes running a program from `bin_dir`, as `pid (exe)`.
fn running_from(bin_dir: &Path) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            exe.starts_with(bin_dir).then(|| (pid, exe.display().to_string()))
        })
        .collect()
}

#[test]
fn rerun_instead_of_restore_fails_every_test() {
    if !is_root() {
        println!("skipped: needs root (writes /proc/sys/kernel/ns_last_pid)");
        return;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workdir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zdtm-fake");
    let output = Command::new(env!("CARGO_BIN_EXE_zdtm-runner"))
        .args(["run", "--filter", "a", "--engine"])
        .arg(manifest.join("tests/fake-engine.sh"))
        .arg("--workdir")
        .arg(&workdir)
        .output()
        .expect("run zdtm-runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    let left = running_from(&workdir.join("bin"));
    for (pid, _) in &left {
        // SAFETY: kill takes integers only; the pid runs one of this run's test programs.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "test programs still running after the harness exited: {left:?}");
    assert!(!output.status.success(), "the harness passed a fake engine");
    let summary = stdout.lines().last().unwrap_or("");
    assert!(summary.starts_with("zdtm: 0 passed, "), "something passed with a fake engine: {summary}");
}
