//! End-to-end checks of `crust dump` and `crust restore` on a real C process: a fault
//! injected after every dump step leaves the target running unchanged, and a dump and
//! restore bring back the same process (same pid, same memory, still responding).

mod common;

use std::path::Path;

use common::{compile, crust, signal, skip_reason, subreaper, tempdir, wait_exit};

fn build_target(dir: &Path) -> std::path::PathBuf {
    compile(dir, "pattern", &[])
}

/// Starts the pattern target (`out`, `mib` MiB) and waits until it is ready.
fn start_target(binary: &Path, out: &Path, mib: u32) -> i32 {
    let mut command = std::process::Command::new(binary);
    command.arg(out).arg(mib.to_string());
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    assert_eq!(text.trim(), child.id().to_string(), "target wrote its pid");
    child.id() as i32
}

fn state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn failed_dump_leaves_target_running_unchanged() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("fault");
    let binary = build_target(&dir);
    for step in ["seize", "collect", "parasite", "memory", "files", "images", "pages"] {
        let out = dir.join(format!("{step}.out"));
        let pid = start_target(&binary, &out, 16);
        let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let output = crust()
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(dir.join(format!("img-{step}")))
            .args(["--fault-inject", step])
            .output()
            .unwrap();
        assert!(!output.status.success(), "dump with a fault after {step} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("fault injected after step {step}")), "{stderr}");
        assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(), maps_before, "maps after {step}");
        assert!(!state(pid).contains("stopped") && !state(pid).contains("tracing"), "{step}: {}", state(pid));
        signal(pid, libc::SIGUSR1);
        let status = wait_exit(pid);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n", "after a fault at {step}");
        assert_eq!(status, 0);
    }
}

#[test]
fn dump_and_restore_keep_pid_and_memory() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("roundtrip");
    let binary = build_target(&dir);
    let out = dir.join("roundtrip.out");
    let pid = start_target(&binary, &out, 64);
    let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let images = dir.join("img");
    let status = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["-o", "dump.log", "-v4"]).status().unwrap();
    assert!(status.success(), "dump: {}", std::fs::read_to_string(images.join("dump.log")).unwrap_or_default());
    // The target is gone (killed by the dump): reap it so its pid is free.
    let killed = wait_exit(pid);
    assert!(libc::WIFSIGNALED(killed) && libc::WTERMSIG(killed) == libc::SIGKILL, "target killed by the dump");
    let status = crust().args(["restore", "-d", "-D"]).arg(&images).args(["-o", "restore.log", "-v4"]).status().unwrap();
    assert!(status.success(), "restore: {}", std::fs::read_to_string(images.join("restore.log")).unwrap_or_default());
    let maps_after = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert_eq!(merge_maps(&maps_after), merge_maps(&maps_before));
    signal(pid, libc::SIGUSR1);
    let status = wait_exit(pid);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

/// maps with adjacent lines of identical properties merged (the kernel merges such
/// areas when they are mapped again one by one).
fn merge_maps(text: &str) -> Vec<String> {
    let mut out: Vec<(u64, u64, String)> = Vec::new();
    for line in text.lines() {
        let (range, rest) = line.split_once(' ').unwrap();
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let props: String = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(last) = out.last_mut() {
            if last.1 == start && last.2 == props && props.split(' ').nth(3) == Some("0") {
                last.1 = end;
                continue;
            }
        }
        out.push((start, end, props));
    }
    out.into_iter().map(|(s, e, p)| format!("{s:x}-{e:x} {p}")).collect()
}


/// A file the dump names but that is gone at restore time (here the program's own
/// binary) is a one-line error naming it, a non-zero exit, and nothing left running;
/// once the file is back, the same images restore.
#[test]
fn restore_names_a_missing_file_and_leaves_nothing() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("missing");
    let binary = build_target(&dir);
    let out = dir.join("missing.out");
    let pid = start_target(&binary, &out, 4);
    let images = dir.join("img");
    let status = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).status().unwrap();
    assert!(status.success(), "dump");
    wait_exit(pid);
    let away = dir.join("pattern.away");
    std::fs::rename(&binary, &away).unwrap();
    let output = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "restore without the binary succeeded");
    assert!(stderr.contains(&binary.display().to_string()), "the error names the missing file: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing left of pid {pid} after the failed restore");
    std::fs::rename(&away, &binary).unwrap();
    let status = crust().args(["restore", "-d", "-D"]).arg(&images).status().unwrap();
    assert!(status.success(), "restore once the file is back");
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
}
