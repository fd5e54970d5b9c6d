//! A process of crust's own IPC namespace attaches a System V segment: the segment is the
//! host's, so the dump does not take it along. Restore attaches it again while it exists,
//! and is a one-line error naming it, leaving nothing running, once it is gone.

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

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crust-cr-sysv-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
fn remove_segment(id: i32) {
    // SAFETY: IPC_RMID reads no buffer.
    unsafe {
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}

/// Starts the program with a ready pipe on fd 3; returns its pid and segment id.
fn start(binary: &Path, out: &Path) -> (i32, i32) {
    let (mut read, write) = std::io::pipe().unwrap();
    let write = OwnedFd::from(write);
    let raw = write.as_raw_fd();
    let mut command = Command::new(binary);
    command.arg(out).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: the closure only calls dup2, which is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(write);
    drop(command);
    let mut text = String::new();
    read.read_to_string(&mut text).unwrap();
    let words: Vec<i32> = text.split_whitespace().map(|w| w.parse().unwrap()).collect();
    assert_eq!(words.first().copied(), Some(child.id() as i32), "program wrote its pid: {text:?}");
    (words[0], words[1])
}

#[test]
fn host_segment_is_attached_again_and_its_absence_is_named() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("host");
    let binary = dir.join("sysv_attach");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sysv_attach.c");
    assert!(Command::new("cc").args(["-O2", "-o"]).arg(&binary).arg(&source).status().unwrap().success(), "compile sysv_attach.c");
    let out = dir.join("out");

    // While the segment exists, restore attaches it again.
    let (pid, id) = start(&binary, &out);
    let images = dir.join("img");
    assert!(crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).status().unwrap().success(), "dump");
    wait_exit(pid);
    let restored = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    if !restored.status.success() {
        remove_segment(id);
        panic!("restore with the segment present failed: {}", String::from_utf8_lossy(&restored.stderr));
    }
    #[allow(unsafe_code)]
    // SAFETY: no pointers.
    unsafe {
        libc::kill(pid, libc::SIGUSR1);
    }
    let status = wait_exit(pid);
    remove_segment(id);
    assert_eq!(status, 0, "restored program's exit status");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");

    // Once it is gone: one line naming it, non-zero exit, nothing left.
    let (pid, id) = start(&binary, &out);
    let images = dir.join("img2");
    assert!(crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).status().unwrap().success(), "dump");
    wait_exit(pid);
    remove_segment(id);
    let output = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "restore without the segment succeeded");
    assert!(stderr.contains(&format!("System V shared memory {id} no longer exists")), "the error names the segment: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing left of pid {pid} after the failed restore");
    let _ = std::fs::remove_dir_all(&dir);
}

/// POSIX message queues in the tree's own IPC namespace cannot be taken along: the dump
/// fails with one line naming them and the target runs on.
#[test]
fn posix_queues_in_the_namespace_fail_the_dump_by_name() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("mqueue");
    let binary = dir.join("mqueue");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mqueue.c");
    assert!(Command::new("cc").args(["-O2", "-o"]).arg(&binary).arg(&source).arg("-lrt").status().unwrap().success(), "compile mqueue.c");
    let (mut read, write) = std::io::pipe().unwrap();
    let write = OwnedFd::from(write);
    let raw = write.as_raw_fd();
    let mut command = Command::new(&binary);
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: the closure only calls dup2, which is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(write);
    drop(command);
    let mut text = String::new();
    read.read_to_string(&mut text).unwrap();
    let pid = child.id() as i32;
    assert_eq!(text.trim(), pid.to_string(), "program wrote its pid");
    let output = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(dir.join("img")).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dump with a POSIX queue succeeded");
    assert!(stderr.contains("POSIX message queues (crust-test)"), "the error names the queue: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z"), "the target runs on");
    #[allow(unsafe_code)]
    // SAFETY: no pointers.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_exit(pid);
    let _ = std::fs::remove_dir_all(&dir);
}
