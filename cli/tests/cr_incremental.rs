//! `crust pre-dump`, then `crust dump --prev-images-dir`: the target keeps running after
//! the pre-dump and changes half its pages; the dump writes only those (the rest are
//! PE_PARENT runs read from the pre-dump), and the restore brings every page back with
//! the content it had at the dump. Without the pre-dump the restore fails, naming it.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn crust() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crust"))
}

fn skip_reason() -> Option<String> {
    if !std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines().any(|l| l.starts_with("Uid:\t0\t")) {
        return Some("needs root (ptrace, clone3 set_tid)".into());
    }
    if Command::new("cc").arg("--version").stdout(Stdio::null()).status().map(|s| !s.success()).unwrap_or(true) {
        return Some("needs a C compiler (cc)".into());
    }
    None
}

#[allow(unsafe_code)]
fn subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

#[allow(unsafe_code)]
fn wait_exit(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer for the call.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid {pid}");
    status
}

#[allow(unsafe_code)]
fn signal(pid: i32, sig: i32) {
    // SAFETY: no pointers.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn dir_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.metadata().unwrap().len()).sum()
}

#[test]
fn dump_after_pre_dump_writes_only_changed_pages() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir: PathBuf = std::env::temp_dir().join(format!("crust-cr-incremental-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("incremental");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/incremental.c");
    assert!(Command::new("cc").args(["-O2", "-o"]).arg(&binary).arg(&source).status().unwrap().success(), "compile incremental.c");
    let out = dir.join("out");

    let (mut ready, ready_w) = std::io::pipe().unwrap();
    let (mut modified, modified_w) = std::io::pipe().unwrap();
    let (ready_w, modified_w) = (OwnedFd::from(ready_w), OwnedFd::from(modified_w));
    let (r, m) = (ready_w.as_raw_fd(), modified_w.as_raw_fd());
    let mut command = Command::new(&binary);
    command.arg(&out).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: the closure only calls dup2, which is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if libc::dup2(r, 3) < 0 || libc::dup2(m, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop((ready_w, modified_w, command));
    let mut text = String::new();
    ready.read_to_string(&mut text).unwrap();
    let pid: i32 = text.trim().parse().unwrap();
    assert_eq!(pid, child.id() as i32);

    let pre = dir.join("pre");
    assert!(crust().args(["pre-dump", "-t", &pid.to_string(), "-D"]).arg(&pre).status().unwrap().success(), "pre-dump");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "pre-dump left the target running");
    signal(pid, libc::SIGUSR2);
    let mut byte = [0u8; 1];
    modified.read_exact(&mut byte).unwrap();

    let images = dir.join("img");
    let dumped = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["--prev-images-dir", "../pre", "--track-mem"]).output().unwrap();
    assert!(dumped.status.success(), "dump: {}", String::from_utf8_lossy(&dumped.stderr));
    wait_exit(pid);
    let (full, incremental) = (dir_bytes(&pre, "pages-"), dir_bytes(&images, "pages-"));
    assert!(full >= 32 << 20, "the pre-dump holds every page ({full} bytes)");
    assert!(incremental >= 16 << 20 && incremental < 20 << 20, "the dump holds the changed half only: {incremental} bytes against {full}");
    assert_eq!(std::fs::read_link(images.join("parent")).unwrap(), Path::new("../pre"));

    // Without its parent the dump cannot be restored: one line naming what is missing.
    std::fs::rename(&pre, dir.join("pre.away")).unwrap();
    let failed = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "restore without the pre-dump succeeded");
    assert!(stderr.contains("parent"), "the error names the parent dump: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing left of pid {pid}");
    std::fs::rename(dir.join("pre.away"), &pre).unwrap();

    let restored = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    assert!(restored.status.success(), "restore: {}", String::from_utf8_lossy(&restored.stderr));
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0, "restored target's check");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
    let _ = std::fs::remove_dir_all(&dir);
}
