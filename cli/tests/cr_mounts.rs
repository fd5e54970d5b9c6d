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
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{crust, signal, skip_reason, start_with_pipes, subreaper, tempdir, wait_exit, KillOnDrop};

/// The tree's files: ROOT (with the static program), the host directory, file and
/// read-only directory bound into it.
struct Tree {
    root: PathBuf,
    hostdir: PathBuf,
    hostfile: PathBuf,
    rodir: PathBuf,
}

fn make_tree(dir: &Path) -> Option<Tree> {
    let root = dir.join("root");
    for sub in ["data", "etc", "ro", "inner", "sub"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    fs::write(root.join("etc/bound"), "").unwrap();
    fs::write(root.join("alias"), "").unwrap();
    fs::write(root.join("sub/x"), "inner\n").unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mnt_tree.c");
    let status = Command::new("cc").args(["-O2", "-static", "-o"]).arg(root.join("mnt_tree")).arg(&source).status().unwrap();
    if !status.success() {
        return None;
    }
    let hostdir = dir.join("hostdir");
    fs::create_dir_all(&hostdir).unwrap();
    fs::write(hostdir.join("f"), "data\n").unwrap();
    fs::write(hostdir.join("alias-source"), "alias\n").unwrap();
    let hostfile = dir.join("hostfile");
    fs::write(&hostfile, "bound\n").unwrap();
    let rodir = dir.join("rodir");
    fs::create_dir_all(&rodir).unwrap();
    fs::write(rodir.join("file"), "ro\n").unwrap();
    Some(Tree { root, hostdir, hostfile, rodir })
}

/// Starts the tree; returns its pid once it is ready.
fn launch(tree: &Tree) -> i32 {
    let mut command = Command::new(tree.root.join("mnt_tree"));
    command.arg("launch").args([&tree.root, &tree.hostdir, &tree.hostfile, &tree.rodir]);
    let (child, text, _) = start_with_pipes(&mut command, 0);
    let pid: i32 = text.trim().parse().unwrap_or_else(|_| panic!("mnt_tree did not get ready: {text:?}, log: {:?}", fs::read_to_string(tree.root.join("log"))));
    assert_eq!(pid, child.id() as i32);
    pid
}

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
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(state.split(' ').nth(2) == Some("S"), "the target sleeps on: {state}");

    let dumped = crust()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .args(["--external", "mnt[/data]:data", "--ext-mount-map", "/etc/bound:bound", "--external", "mnt[/ro]:ro", "-v4", "-o", "dump.log"])
        .output()
        .unwrap();
    assert!(dumped.status.success(), "dump: {} {:?}", String::from_utf8_lossy(&dumped.stderr), fs::read_to_string(images.join("dump.log")));
    wait_exit(pid);
    guard.disarm();
    // CRIU's numbering: UTS 9 and mount 10, the first of the tree's own namespaces.
    assert!(images.join("mountpoints-10.img").exists() && images.join("utsns-9.img").exists());

    // Restore refusals: no --root; a key without a path. Nothing is left running.
    let keys = ["--external", "mnt[data]:", "--ext-mount-map", "bound:", "--external", "mnt[ro]:"];
    let with_paths = |keys: &[&str]| -> Vec<String> {
        let paths = [&tree.hostdir, &tree.hostfile, &tree.rodir];
        let mut out = Vec::new();
        for (index, pair) in keys.chunks(2).enumerate() {
            out.push(pair[0].to_string());
            out.push(format!("{}{}", pair[1], paths[index].display()));
        }
        out
    };
    let output = crust().args(["restore", "-d", "-D"]).arg(&images).args(with_paths(&keys)).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("give its root with --root"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let output = crust().args(["restore", "-d", "-D"]).arg(&images).arg("--root").arg(&tree.root).args(with_paths(&keys[..4])).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("is external with key \"ro\": pass --external mnt[ro]:PATH"), "{stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing left of pid {pid}");

    let restored = crust()
        .args(["restore", "-d", "-D"])
        .arg(&images)
        .arg("--root")
        .arg(&tree.root)
        .args(with_paths(&keys))
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
