//! A process in a mount and UTS namespace of its own (`tests/data/mnt_tree.c`: its root
//! a bind of a directory, binds of a host directory, of a host file, a read-only bind,
//! a bind of its root's own directory and a file bind out of the bound host directory,
//! pivot_root, host and domain name) is dumped into CRIU's images and restored into a
//! new mount namespace with `--root` and the external mounts given back by key. The
//! restored process checks its own view (names, fds, paths, cwd, EROFS) and the test
//! checks its mountinfo from outside. Refusals leave the target running (dump) or
//! nothing behind (restore), in one line naming the mount or the option.

mod common;

use std::fs;
use std::path::Path;

use common::mnt_tree::{launch, make_tree, DUMP_KEYS};
use common::{crust, signal, skip_reason, subreaper, tempdir, wait_exit, KillOnDrop};

/// The mountpoints and per-mount options of `pid`'s namespace.
fn mounts_of(pid: i32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields[4].to_string(), fields[5].to_string())
        })
        .collect()
}

#[test]
fn binds_and_names_come_back_in_a_mount_namespace_of_their_own() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("mounts");
    let Some(tree) = make_tree(&dir) else {
        eprintln!("skipped: needs a static C library (cc -static)");
        return;
    };
    let pid = launch(&tree);
    let mut guard = KillOnDrop(pid);
    let before = mounts_of(pid);
    assert_eq!(before.len(), 6, "{before:?}");

    // Without keys for its external mounts the dump refuses in one line, naming the
    // first one, and the target runs on.
    let images = dir.join("img");
    let output = crust().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dump without keys succeeded");
    assert!(stderr.contains("(/data, ext4 ") && stderr.contains("pass --external mnt[/data]:KEY"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(mounts_of(pid), before, "the target's mounts after the refused dump");
    // Released, it runs on (back into its sleep, or on its way there): not stopped.
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(matches!(state.split(' ').nth(2), Some("S" | "R")), "the target runs on: {state}");

    let dumped = crust()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .args(DUMP_KEYS)
        .args(["-v4", "-o", "dump.log"])
        .output()
        .unwrap();
    assert!(dumped.status.success(), "dump: {} {:?}", String::from_utf8_lossy(&dumped.stderr), fs::read_to_string(images.join("dump.log")));
    wait_exit(pid);
    guard.disarm();
    // CRIU's numbering: UTS 9 and mount 10, the first of the tree's own namespaces.
    assert!(images.join("mountpoints-10.img").exists() && images.join("utsns-9.img").exists());

    // Restore refusals: no --root; a key without a path. Nothing is left running.
    let keys = tree.restore_keys();
    let output = crust().args(["restore", "-d", "-D"]).arg(&images).args(&keys).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("give its root with --root"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let output = crust().args(["restore", "-d", "-D"]).arg(&images).arg("--root").arg(&tree.root).args(&keys[..4]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("is external with key \"ro\": pass --external mnt[ro]:PATH"), "{stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing left of pid {pid}");

    let restored = crust()
        .args(["restore", "-d", "-D"])
        .arg(&images)
        .arg("--root")
        .arg(&tree.root)
        .args(&keys)
        .args(["-v4", "-o", "restore.log"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "restore: {} {:?}", String::from_utf8_lossy(&restored.stderr), fs::read_to_string(images.join("restore.log")));
    let mut guard = KillOnDrop(pid);
    // Its namespace holds its own mounts alone, with their flags.
    let after = mounts_of(pid);
    let points: Vec<&str> = after.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(points, ["/", "/data", "/etc/bound", "/ro", "/inner", "/alias"], "{after:?}");
    assert!(after[3].1.starts_with("ro,nosuid"), "/ro read-only, nosuid: {after:?}");
    assert!(after[5].1.starts_with("ro,"), "/alias read-only: {after:?}");
    assert!(after[1].1.starts_with("rw,"), "/data writable: {after:?}");
    assert_ne!(fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(), fs::read_link("/proc/self/ns/mnt").unwrap());
    assert_eq!(fs::read_link(format!("/proc/{pid}/root")).unwrap(), Path::new("/"));

    signal(pid, libc::SIGUSR1);
    let status = wait_exit(pid);
    guard.disarm();
    let result = fs::read_to_string(tree.hostdir.join("result")).unwrap_or_default();
    assert_eq!(result, "PASS\n", "restored program's verdict (status {status:#x}), log: {:?}", fs::read_to_string(tree.root.join("log")));
    assert_eq!(status, 0);
    // Its write went to the host's file, at the offset it had.
    assert_eq!(fs::read_to_string(tree.hostdir.join("f")).unwrap(), "datA\n");
}
