//! The harness must fail a restore that is not one: `fake-engine.sh` kills the target at
//! dump and re-runs the program under the same pid at restore. Needs root (ptrace-free,
//! but ns_last_pid and the subreaper's view of others' pids); otherwise reports skipped.

use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"))
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
    assert!(!output.status.success(), "the harness passed a fake engine");
    let summary = stdout.lines().last().unwrap_or("");
    assert!(summary.starts_with("zdtm: 0 passed, "), "something passed with a fake engine: {summary}");
}
