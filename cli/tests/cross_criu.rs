//! Cross restores with the reference CRIU 4.2 (`ci/criu`, installed by
//! `ci/criu-reference.sh`): crust dumps and CRIU restores, CRIU dumps and crust
//! restores, a process tree with state of many kinds (`tests/data/interop.c`: memory,
//! threads asleep in syscalls, a read the restore must restart, pipe and socket data, a
//! file offset, a pty's control characters, a child in a group of its own). The
//! program checks itself after the restore. An established TCP connection goes across
//! too (`tests/data/tcp_lock.c`): the restoring tool lifts the dumping tool's lock,
//! named by the inventory (CRIU's nftables table for the dump, or its iptables rules).
//! Without the reference CRIU the tests say `skipped: <reason>`; under `CI=true` a
//! missing reference fails.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{compile, crust, signal, skip_reason, subreaper, tempdir, wait_exit};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ sits in the repository").to_path_buf()
}

/// `ci/criu` when the reference root is installed; otherwise why the test is skipped
/// (and a failure under `CI=true`).
fn reference_criu(test: &str) -> Option<PathBuf> {
    let root = std::env::var_os("CRUST_CRIU_ROOT").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".cache/criu-root"));
    let reason = if let Some(reason) = skip_reason() {
        reason
    } else if !cfg!(target_arch = "x86_64") {
        "the reference root is an x86_64 one".to_string()
    } else if !root.join("usr/sbin/criu").exists() {
        format!("reference criu not installed ({} missing; run ci/criu-reference.sh)", root.join("usr/sbin/criu").display())
    } else {
        return Some(repo_root().join("ci/criu"));
    };
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true") || skip_reason().is_some(), "{test}: CI=true needs the reference criu: {reason}");
    eprintln!("{test}: skipped: {reason}");
    None
}

/// The children of `pid` (its threads' children too).
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    out
}

/// The names /proc/PID/maps gives the shared writable areas of `pid` (`rw-s`).
fn shared_area_names(pid: i32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.get(1) == Some(&"rw-s"))
        .map(|fields| fields[5..].join(" "))
        .collect()
}

/// Dumps the interop program with `dumper` and restores it with `restorer`, then lets
/// it check itself. `shared_name`: what /proc/PID/maps must call its shared anonymous
/// area after the restore (crust maps shared anonymous memory again, CRIU a memfd).
fn cross(name: &str, dumper: &mut dyn FnMut() -> Command, restorer: &mut dyn FnMut() -> Command, shared_name: &str) {
    subreaper();
    let dir = tempdir(name);
    let binary = compile(&dir, "interop", &["-lpthread"]);
    let out = dir.join("interop.out");
    let mut command = Command::new(&binary);
    command.arg(&out);
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    let pid = child.id() as i32;
    assert_eq!(text.trim(), pid.to_string(), "the program wrote its pid");
    let grandchildren = children(pid);
    assert_eq!(grandchildren.len(), 1, "one child of {pid}");
    assert_eq!(shared_area_names(pid), ["/dev/zero (deleted)"], "the program's shared anonymous area");

    let images = dir.join("img");
    std::fs::create_dir_all(&images).unwrap();
    let dumped = dumper().args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["-o", "dump.log", "-v4"]).output().unwrap();
    let log = |file: &str| std::fs::read_to_string(images.join(file)).unwrap_or_default();
    assert!(dumped.status.success(), "dump: {}\n{}", String::from_utf8_lossy(&dumped.stderr), log("dump.log"));
    // The dump killed the tree: reap it (the child was orphaned to this subreaper), so
    // that its pids are free again.
    wait_exit(pid);
    for &grandchild in &grandchildren {
        wait_exit(grandchild);
    }

    let pidfile = dir.join("restored.pid");
    let restored = restorer()
        .args(["restore", "-D"])
        .arg(&images)
        .args(["-d", "--pidfile"])
        .arg(&pidfile)
        .args(["-o", "restore.log", "-v4"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "restore: {}\n{}", String::from_utf8_lossy(&restored.stderr), log("restore.log"));
    let root: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(root, pid, "restored under its pid");
    assert_eq!(shared_area_names(root), [shared_name], "the shared anonymous area after the restore");
    signal(root, libc::SIGUSR1);
    let status = wait_exit(root);
    let verdict = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(verdict, "PASS\n", "the restored program's check (wait status {status:#x})");
    assert_eq!(status, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crust_dumps_criu_restores() {
    let Some(criu) = reference_criu("crust_dumps_criu_restores") else { return };
    // CRIU maps shared anonymous memory from a memfd named /dev/zero, crust's dumps as its own.
    cross("crust-to-criu", &mut crust, &mut || Command::new(&criu), "/memfd:/dev/zero (deleted)");
}

#[test]
fn criu_dumps_crust_restores() {
    let Some(criu) = reference_criu("criu_dumps_crust_restores") else { return };
    cross("criu-to-crust", &mut || Command::new(&criu), &mut crust, "/dev/zero (deleted)");
}

/// How the dump locked its connection, as the inventory says, and whether that lock is
/// there now (CRIU's nftables table for the dump, or its iptables rule for the port).
fn lock_present(images: &Path, port: u16) -> (u32, bool) {
    let inventory = crust_images::read_entries::<crust_images::pb::InventoryEntry>(&images.join("inventory.img")).unwrap().remove(0);
    let method = inventory.network_lock_method.expect("the inventory names the lock method");
    let present = match method {
        1 => {
            let run_id = inventory.dump_criu_run_id.expect("nftables names its table by the run id");
            let tables = Command::new("nft").args(["list", "tables"]).output().unwrap();
            String::from_utf8_lossy(&tables.stdout).contains(&format!("table inet CRIU-{}", &run_id[..21]))
        }
        0 => {
            let rules = Command::new("iptables").args(["-w", "-S"]).output().unwrap();
            String::from_utf8_lossy(&rules.stdout).lines().any(|rule| rule.contains(&format!("--dport {port} ")) || rule.contains(&format!("--sport {port} ")))
        }
        _ => false,
    };
    (method, present)
}

/// tests/data/tcp_lock.c, connected to a listener of the test, dumped with
/// `--tcp-established` by `dumper` (with `dump_extra`) and restored by `restorer`: the
/// dump leaves the connection locked, the restore lifts that lock and the restored
/// process answers on its connection. Returns the lock method the inventory named.
/// `fail_first`: a first restore is made to fail (a pre-restore hook that fails); it
/// must name each lock it leaves (`the TCP lock ...`) and the command that lifts it,
/// and leave the connection locked for the restore that follows.
fn cross_tcp(name: &str, dumper: &mut dyn FnMut() -> Command, dump_extra: &[&str], restorer: &mut dyn FnMut() -> Command, fail_first: Option<&[&str]>) -> u32 {
    subreaper();
    let dir = tempdir(name);
    let binary = compile(&dir, "tcp_lock", &[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut command = Command::new(&binary);
    command.arg(dir.join("lock")).arg(port.to_string());
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    let pid = child.id() as i32;
    assert_eq!(text.trim(), pid.to_string(), "the program wrote its pid");
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut ask = |byte: u8| {
        peer.write_all(&[byte]).unwrap();
        let mut answer = [0u8; 1];
        peer.read_exact(&mut answer).map(|_| answer[0])
    };
    assert_eq!(ask(b'a').unwrap(), b'b');

    let images = dir.join("img");
    std::fs::create_dir_all(&images).unwrap();
    let dumped = dumper()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .args(["-o", "dump.log", "-v4", "--tcp-established", "--file-locks"])
        .args(dump_extra)
        .output()
        .unwrap();
    let log = |file: &str| std::fs::read_to_string(images.join(file)).unwrap_or_default();
    assert!(dumped.status.success(), "dump: {}\n{}", String::from_utf8_lossy(&dumped.stderr), log("dump.log"));
    wait_exit(pid);
    let (method, locked) = lock_present(&images, port);
    assert!(locked, "the dump left the connection locked (network_lock_method {method})");

    if let Some(expected) = fail_first {
        let hook = dir.join("fail.sh");
        std::fs::write(&hook, "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" != pre-restore ]\n").unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let failed = restorer().args(["restore", "-d", "--tcp-established", "--file-locks", "-D"]).arg(&images).arg("--action-script").arg(&hook).output().unwrap();
        assert_eq!(failed.status.code(), Some(1), "the hook fails the restore");
        let stderr = String::from_utf8_lossy(&failed.stderr);
        for text in expected {
            let text = text.replace("PORT", &port.to_string());
            assert!(stderr.contains(&text), "the failed restore's message has {text:?}:\n{stderr}");
        }
        assert!(lock_present(&images, port).1, "a failed restore keeps the lock");
    }

    let pidfile = dir.join("restored.pid");
    let restored = restorer()
        .args(["restore", "-D"])
        .arg(&images)
        .args(["-d", "--pidfile"])
        .arg(&pidfile)
        .args(["-o", "restore.log", "-v4", "--tcp-established", "--file-locks"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "restore: {}\n{}", String::from_utf8_lossy(&restored.stderr), log("restore.log"));
    let root: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(root, pid, "restored under its pid");
    let (_, locked) = lock_present(&images, port);
    let answer = ask(b'x');
    if locked || answer.is_err() {
        signal(root, libc::SIGKILL);
        wait_exit(root);
    }
    assert!(!locked, "the restore lifted the dump's lock (network_lock_method {method})\n{}", log("restore.log"));
    assert_eq!(answer.unwrap(), b'y', "the restored process answers on its connection");
    drop(peer);
    let status = wait_exit(root);
    assert_eq!(status, 0, "the restored process saw its peer close and ended");
    method
}

#[test]
fn crust_dumps_criu_restores_a_tcp_connection() {
    let Some(criu) = reference_criu("crust_dumps_criu_restores_a_tcp_connection") else { return };
    let method = cross_tcp("tcp-crust-to-criu", &mut crust, &[], &mut || Command::new(&criu), None);
    assert_eq!(method, 1, "crust locks with nftables, in CRIU's table");
}

#[test]
fn criu_dumps_crust_restores_a_tcp_connection_locked_with_nftables() {
    let Some(criu) = reference_criu("criu_dumps_crust_restores_a_tcp_connection_locked_with_nftables") else { return };
    cross_tcp("tcp-criu-nft-to-crust", &mut || Command::new(&criu), &["--network-lock", "nftables"], &mut crust, Some(&["the TCP lock table inet CRIU-", "nft delete table inet CRIU-"]));
}

#[test]
fn criu_dumps_crust_restores_a_tcp_connection_locked_with_iptables() {
    let Some(criu) = reference_criu("criu_dumps_crust_restores_a_tcp_connection_locked_with_iptables") else { return };
    if Command::new("iptables").arg("--version").output().is_err() {
        eprintln!("criu_dumps_crust_restores_a_tcp_connection_locked_with_iptables: skipped: needs iptables (ci/setup.sh installs it)");
        return;
    }
    // The program's connection goes to 127.0.0.1:PORT; CRIU locks each direction.
    let expected: &[&str] = &[
        "restore failed: the TCP lock rule `iptables -A INPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.1 --sport PORT --destination 127.0.0.1",
        "restore failed: the TCP lock rule `iptables -A OUTPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.1 --sport",
        "--destination 127.0.0.1 --dport PORT -j DROP` stays",
        "to let them go: iptables -w -t filter -D INPUT --protocol tcp",
        "to let them go: iptables -w -t filter -D OUTPUT --protocol tcp",
    ];
    let method = cross_tcp("tcp-criu-ipt-to-crust", &mut || Command::new(&criu), &[], &mut crust, Some(expected));
    assert_eq!(method, 0, "CRIU's default lock is iptables");
}
