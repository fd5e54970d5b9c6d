//! Lazy restore (`crust lazy-pages`, `crust restore --lazy-pages`): the target
//! (`tests/data/incremental.c`, 32 MiB of pages each stamped with its index) is dumped,
//! restored with its private anonymous memory left to the daemon, and checks every
//! page; the daemon says it served them (on faults and prefetched) and exits once
//! they are all in. A restore without a daemon fails in one line before it creates
//! anything. Skipped where the kernel has no userfaultfd.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{compile, crust, signal, skip_reason, start_with_pipes, subreaper, tempdir, wait_exit, KillOnDrop};

/// Why this kernel cannot restore lazily, if it cannot.
fn no_userfaultfd() -> Option<String> {
    // SAFETY: userfaultfd(2) takes flags only; the fd it returns is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
    if fd < 0 {
        return Some(format!("no userfaultfd here: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd as i32) };
    None
}

#[test]
fn lazy_restore_fills_every_page() {
    if let Some(reason) = skip_reason().or_else(no_userfaultfd) {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("lazy-pages");
    let binary = compile(&dir, "incremental", &[]);
    let out = dir.join("out");
    let mut command = Command::new(&binary);
    command.arg(&out);
    let (_child, text, _pipes) = start_with_pipes(&mut command, 1);
    let pid: i32 = text.trim().parse().unwrap();
    let mut target = KillOnDrop(pid);
    let images = dir.join("img");
    let dumped = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).output().unwrap();
    assert!(dumped.status.success(), "dump: {}", String::from_utf8_lossy(&dumped.stderr));
    wait_exit(pid);
    target.disarm();

    // No daemon: one line, nothing created.
    let refused = crust().args(["restore", "--lazy-pages", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a lazy restore without a daemon succeeded");
    assert!(stderr.contains("lazy-pages daemon"), "names the daemon: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing restored");

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_crust"))
        .args(["lazy-pages", "-v4", "-o", "lazy.log", "--status-fd", "1", "-D"])
        .arg(&images)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = daemon.stdout.take().unwrap().read(&mut [0u8; 1]);
    let restored = crust().args(["restore", "--lazy-pages", "-d", "-D"]).arg(&images).output().unwrap();
    if !restored.status.success() {
        let _ = daemon.kill();
        let _ = daemon.wait();
        panic!("restore --lazy-pages: {}", String::from_utf8_lossy(&restored.stderr));
    }
    let mut target = KillOnDrop(pid);
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0, "restored target's check");
    target.disarm();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
    assert!(daemon.wait().unwrap().success(), "the daemon ends once every page is in");
    let log = std::fs::read_to_string(images.join("lazy.log")).unwrap();
    let summary = log.lines().find(|l| l.contains("lazy pages: 1 processes")).unwrap_or_else(|| panic!("the daemon's summary: {log}"));
    let served: u64 = ["pages on faults", "prefetched"]
        .iter()
        .map(|what| {
            let before = &summary[..summary.find(what).unwrap_or_else(|| panic!("{what} in {summary}"))];
            before.split_whitespace().last().and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| panic!("a count before {what} in {summary}"))
        })
        .sum();
    assert!(served >= 8192, "the daemon served the 32 MiB (8192 pages): {summary}");
}
