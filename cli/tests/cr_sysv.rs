//! A process of crust's own IPC namespace attaches a System V segment: the segment is the
//! host's, so the dump does not take it along. Restore attaches it again while it exists,
//! and is a one-line error naming it, leaving nothing running, once it is gone.

mod common;

use std::path::Path;
use std::process::Command;

use common::{compile, crust, signal, skip_reason, start_with_pipes, subreaper, tempdir, wait_exit};

#[allow(unsafe_code)]
fn remove_segment(id: i32) {
    // SAFETY: IPC_RMID reads no buffer.
    unsafe {
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}

/// Starts the program; returns its pid and segment id.
fn start(binary: &Path, out: &Path) -> (i32, i32) {
    let mut command = Command::new(binary);
    command.arg(out);
    let (child, text, _) = start_with_pipes(&mut command, 0);
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
    let dir = tempdir("sysv-host");
    let binary = compile(&dir, "sysv_attach", &[]);
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
    signal(pid, libc::SIGUSR1);
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
    let binary = compile(&dir, "mqueue", &["-lrt"]);
    let (child, text, _) = start_with_pipes(&mut Command::new(&binary), 0);
    let pid = child.id() as i32;
    assert_eq!(text.trim(), pid.to_string(), "program wrote its pid");
    let output = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(dir.join("img")).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dump with a POSIX queue succeeded");
    assert!(stderr.contains("POSIX message queues (crust-test)"), "the error names the queue: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z"), "the target runs on");
    signal(pid, libc::SIGKILL);
    wait_exit(pid);
    let _ = std::fs::remove_dir_all(&dir);
}
