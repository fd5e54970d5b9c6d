//! A CRIU configuration file with `tcp-established` and `file-locks` in it, given with
//! `--config FILE` and through `CRIU_CONFIG_FILE`, checkpoints and restores a process
//! that holds an established TCP connection (its peer is the test) and a flock: the
//! restored process (same pid) still holds the lock and still answers on the
//! connection. The same dump without the file fails (the options really come from it).
//! CRIU's command line for the same (`dump --tcp-established --network-lock nftables`,
//! `restore --tcp-established`) does the same.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use common::{compile, crust, skip_reason, subreaper, tempdir, wait_exit};

fn has_nft() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("nft").is_file()))
}

/// One byte to the target, its answer back.
fn ask(peer: &mut TcpStream, byte: u8) -> u8 {
    peer.write_all(&[byte]).unwrap();
    let mut answer = [0u8; 1];
    peer.read_exact(&mut answer).unwrap();
    answer[0]
}

/// Whether someone holds a lock on `path` (a non-blocking exclusive flock fails).
fn locked(path: &Path) -> bool {
    let file = std::fs::File::open(path).unwrap();
    match file.try_lock() {
        Ok(()) => {
            file.unlock().unwrap();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(error) => panic!("try_lock {}: {error:?}", path.display()),
    }
}

/// Dumps and restores the target with the options taken from `config` by `how`
/// (`--config` or `CRIU_CONFIG_FILE`).
fn round_trip(dir: &Path, binary: &Path, config: &Path, how: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lock = dir.join(format!("{how}.lock"));
    let mut command = Command::new(binary);
    command.arg(&lock).arg(port.to_string());
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    let pid = child.id() as i32;
    assert_eq!(text.trim(), pid.to_string(), "target wrote its pid");
    let (mut peer, _) = listener.accept().unwrap();
    assert_eq!(ask(&mut peer, b'a'), b'b');
    assert!(locked(&lock), "the target holds its lock");
    let images = dir.join(format!("img-{how}"));
    let isolated = |command: &mut Command| {
        command.env("HOME", dir).env_remove("CRIU_CONFIG_FILE");
    };

    // Without the file: the lock fails the dump (and with --file-locks alone, the
    // connection), and the target runs on.
    for (extra, needed) in [(None, "--file-locks"), (Some("--file-locks"), "--tcp-established")] {
        let mut plain = crust();
        plain.args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).arg("--no-default-config").args(extra);
        isolated(&mut plain);
        let output = plain.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(needed), "dump without the file ({extra:?}): {stderr}");
    }
    assert_eq!(ask(&mut peer, b'b'), b'c', "the target answers after the refused dumps");

    let with_config = |command: &mut Command| {
        isolated(command);
        match how {
            "config" => {
                command.arg("--config").arg(config);
            }
            "env" => {
                command.env("CRIU_CONFIG_FILE", config).arg("--no-default-config");
            }
            // CRIU's own command lines for an established connection.
            _ => {
                let dumping = command.get_args().next().is_some_and(|verb| verb == "dump");
                command.arg("--no-default-config").args(["--tcp-established", "--file-locks"]);
                if dumping {
                    command.args(["--network-lock", "nftables"]);
                }
            }
        }
    };
    let mut dump = crust();
    dump.args(["dump", "-t", &pid.to_string(), "-D"]).arg(&images).args(["-o", "dump.log", "-v4"]);
    with_config(&mut dump);
    let output = dump.output().unwrap();
    assert!(
        output.status.success(),
        "dump with {how}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(images.join("dump.log")).unwrap_or_default()
    );
    let status = wait_exit(pid);
    assert!(libc::WIFSIGNALED(status), "the dump killed the target");
    assert!(!locked(&lock), "the lock went with the dumped target");

    let pidfile = images.join("restored.pid");
    let mut restore = crust();
    restore.args(["restore", "-d", "-D"]).arg(&images).arg("--pidfile").arg(&pidfile).args(["-o", "restore.log", "-v4"]);
    with_config(&mut restore);
    let output = restore.output().unwrap();
    assert!(
        output.status.success(),
        "restore with {how}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(images.join("restore.log")).unwrap_or_default()
    );
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap().trim(), pid.to_string(), "same pid");
    assert!(locked(&lock), "the restored target holds its lock again");
    assert_eq!(ask(&mut peer, b'x'), b'y', "the restored target answers on its connection");
    drop(peer);
    let status = wait_exit(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
}

#[test]
fn config_file_with_tcp_established_and_file_locks() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    if !has_nft() {
        eprintln!("skipped: needs nft (nftables) to lock TCP connections for --tcp-established");
        return;
    }
    subreaper();
    let dir = tempdir("config");
    let binary = compile(&dir, "tcp_lock", &[]);
    let config = dir.join("criu.conf");
    std::fs::write(&config, "# what a script written for criu keeps in its config\ntcp-established\nfile-locks   # locks too\n").unwrap();
    round_trip(&dir, &binary, &config, "config");
    round_trip(&dir, &binary, &config, "env");
    round_trip(&dir, &binary, &config, "command-line");
}

/// Which configuration files are read, and which wins: ~/.criu/default.conf unless
/// --config or --no-default-config; CRIU_CONFIG_FILE always; then --config; then the
/// command line. A bad value names its file and line, which shows what was read.
#[test]
fn config_files_in_criu_order() {
    let dir = tempdir("config-order");
    std::fs::create_dir_all(dir.join(".criu")).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    file(".criu/default.conf", "network-lock pf\n");
    let broken = file("broken.conf", "\nnetwork-lock pf\n");
    let good = file("good.conf", "tcp-established\n");
    let refused = file("refused.conf", "cpu-cap cpu\n");
    let accepted = file("accepted.conf", "cpu-cap none\n");
    let run = |verb: &[&str], args: &[&Path], env_file: Option<&Path>| {
        let mut command = crust();
        command.args(verb).env("HOME", &dir);
        for arg in args {
            command.arg(arg);
        }
        match env_file {
            Some(path) => command.env("CRIU_CONFIG_FILE", path),
            None => command.env_remove("CRIU_CONFIG_FILE"),
        };
        let output = command.output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).trim().to_string())
    };
    let check = ["check", "--feature", "ns_pid"];
    let (code, stderr) = run(&check, &[], None);
    assert_eq!(code, Some(1));
    assert!(stderr.ends_with(".criu/default.conf:1: invalid value for --network-lock: pf (iptables, nftables or skip)"), "{stderr}");
    assert_eq!(run(&check, &[Path::new("--no-default-config")], None).0, Some(0), "--no-default-config skips it");
    assert_eq!(run(&check, &[Path::new("--config"), &good], None).0, Some(0), "--config skips the default files");
    let (code, stderr) = run(&check, &[Path::new("--no-default-config")], Some(&broken));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("broken.conf:2:"), "CRIU_CONFIG_FILE is read even with --no-default-config: {stderr}");
    let (_, stderr) = run(&check, &[Path::new("--config"), &broken], None);
    assert!(stderr.contains("broken.conf:2:"), "{stderr}");
    // A later source wins. The restore of a directory that is not there fails on it,
    // unless a refused --cpu-cap cpu stops it first.
    let restore = ["restore", "-D", "/nonexistent", "--no-default-config"];
    let (_, stderr) = run(&restore, &[Path::new("--config"), &refused], None);
    assert!(stderr.contains("--cpu-cap cpu is not supported yet"), "the file applies: {stderr}");
    let (_, stderr) = run(&restore, &[Path::new("--config"), &refused, Path::new("--cpu-cap=none")], None);
    assert!(stderr.contains("images directory /nonexistent"), "the command line wins over --config: {stderr}");
    let (_, stderr) = run(&restore, &[Path::new("--config"), &accepted], Some(&refused));
    assert!(stderr.contains("images directory /nonexistent"), "--config wins over CRIU_CONFIG_FILE: {stderr}");
    let (_, stderr) = run(&restore, &[Path::new("--config"), &refused], Some(&accepted));
    assert!(stderr.contains("--cpu-cap cpu"), "--config wins over CRIU_CONFIG_FILE: {stderr}");
}
