//! `crust dump --leave-running` with the copy-on-write snapshot, on a process whose
//! threads keep writing while their pages are copied (`tests/data/stamper.c`): the image
//! is the memory of one instant (the restored process, continuing from that instant's
//! registers, finds every page where it left it), the original keeps running with its
//! memory intact, also when the dump fails or crust is killed halfway through the copy.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, crust, signal, subreaper, tempdir, wait_exit, KillOnDrop};

/// Why this machine cannot run these tests, if it cannot.
fn skip_reason() -> Option<String> {
    if !Path::new("/proc/sys/vm/unprivileged_userfaultfd").exists() {
        return Some("kernel without userfaultfd".into());
    }
    common::skip_reason()
}

fn build_stamper(dir: &Path) -> PathBuf {
    compile(dir, "stamper", &["-pthread"])
}

/// Starts the stamper with a ready pipe on fd 3 and waits until it closes it.
fn start_stamper(binary: &Path, out: &Path, args: &[&str]) -> i32 {
    let mut command = Command::new(binary);
    command.arg(out).args(args);
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    assert_eq!(text.trim(), child.id().to_string(), "stamper wrote its pid");
    child.id() as i32
}

/// Asks the stamper to finish (one more full generation, every page checked) and
/// returns its verdict.
fn verdict(pid: i32, out: &Path) -> String {
    signal(pid, libc::SIGUSR1);
    let status = wait_exit(pid);
    let text = std::fs::read_to_string(out).unwrap_or_default();
    assert!(libc::WIFEXITED(status), "stamper {pid} did not exit normally ({status:#x}): {text}");
    text
}

fn state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or_default()
        .to_string()
}

/// Pages the dump left to the copy after release, from its -v4 log.
/// The pages the copy-on-write copy wrote after the release (`copy-on-write: N pages
/// copied after release ...`).
fn pages_copied_after_release(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("pages copied after release"))?;
    let before = line.split(" pages copied after release").next()?;
    before.split_whitespace().last()?.parse().ok()
}

/// `churn`: the target drops pages while they are copied, which gives the snapshot up
/// (the dump is done again frozen).
fn dump_and_restore(name: &str, stamper_args: &[&str], churn: bool) {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir(name);
    let binary = build_stamper(&dir);
    let out = dir.join("stamper.out");
    let pid = start_stamper(&binary, &out, stamper_args);
    // The original, then the restored process (same pid): killed if an assertion fails.
    let mut guard = KillOnDrop(pid);
    let images = dir.join("img");
    let status = crust()
        .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .args(["-o", "dump.log", "-v4"])
        .status()
        .unwrap();
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert!(status.success(), "dump: {log}");
    // The process was armed: its pages to copy after the release were known while
    // frozen, or its big areas were left to be found after it.
    assert!(
        log.contains("pages left to copy after release") || log.contains("pages of the big areas found after release"),
        "the copy-on-write snapshot was used: {log}"
    );
    if !churn {
        let copied = pages_copied_after_release(&log).unwrap_or(0);
        assert!(copied > 0, "pages were copied while the target ran: {log}");
    }
    assert!(!state(pid).contains("stopped") && !state(pid).contains("tracing"), "{}", state(pid));
    // The original, which ran on during the copy, still finds its memory as it left it.
    assert_eq!(verdict(pid, &out), "PASS\n", "the original after the dump");
    std::fs::remove_file(&out).unwrap();
    // The restored process goes on from the registers of the freeze: its memory must be
    // that same instant's.
    let status = crust().args(["restore", "-d", "-D"]).arg(&images).args(["-o", "restore.log", "-v4"]).status().unwrap();
    assert!(status.success(), "restore: {}", std::fs::read_to_string(images.join("restore.log")).unwrap_or_default());
    assert_eq!(verdict(pid, &out), "PASS\n", "the restored process; dump log: {log}");
    guard.disarm();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshot_while_threads_write_is_one_instant() {
    dump_and_restore("instant", &["64", "2"], false);
}

/// A thread keeps dropping pages the snapshot has not copied yet (madvise DONTNEED):
/// the dump notices, is done again frozen, and is still one instant.
#[test]
fn snapshot_with_dropped_pages_is_one_instant() {
    dump_and_restore("churn", &["64", "2", "churn"], true);
}

#[test]
fn failure_or_death_during_the_copy_leaves_the_target_intact() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("fault");
    let binary = build_stamper(&dir);
    for step in ["pages", "pages-killed"] {
        let out = dir.join(format!("{step}.out"));
        let pid = start_stamper(&binary, &out, &["64", "2"]);
        let mut guard = KillOnDrop(pid);
        let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let output = crust()
            .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
            .arg(dir.join(format!("img-{step}")))
            .args(["--fault-inject", step])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if step == "pages" {
            assert!(stderr.contains("fault injected after step pages"), "{stderr}");
        } else {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(output.status.signal(), Some(libc::SIGKILL), "crust killed itself mid-copy: {stderr}");
        }
        assert!(!output.status.success());
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(), maps_before, "maps after {step}");
        // No area is left registered with crust's userfaultfd.
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
        assert!(
            !smaps.lines().any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw")),
            "{step}: an area is still write-protect registered"
        );
        assert!(!state(pid).contains("stopped") && !state(pid).contains("tracing"), "{step}: {}", state(pid));
        assert_eq!(verdict(pid, &out), "PASS\n", "after a fault at {step}");
        guard.disarm();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
