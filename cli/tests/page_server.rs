//! Dumps over CRIU's page server protocol (`dump --page-server`, `crust page-server`):
//! the target (`tests/data/incremental.c`, 32 MiB of stamped pages) is pre-dumped over
//! the wire, changes half its pages, and is dumped over the wire again with
//! `--prev-images-dir`; the second page server gets only the changed half (the rest
//! are PE_PARENT runs). The sending side's directories hold no pages. The images of
//! both sides put together restore, and the target checks every page. With the
//! reference CRIU (`ci/criu`) installed, the same runs across: crust's dump to CRIU's
//! page server and CRIU's dump to crust's, each restored by crust.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{compile, crust, signal, skip_reason, start_with_pipes, subreaper, tempdir, wait_exit, KillOnDrop};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ sits in the repository").to_path_buf()
}

/// `ci/criu` when the reference root is installed.
fn reference_criu() -> Option<PathBuf> {
    let root = std::env::var_os("CRUST_CRIU_ROOT").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".cache/criu-root"));
    (cfg!(target_arch = "x86_64") && root.join("usr/sbin/criu").exists()).then(|| repo_root().join("ci/criu"))
}

/// A free TCP port on loopback (bound, then let go for the server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A page server that is killed and reaped if the test fails before it ends.
struct Server(Child);

impl Server {
    fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts a page server (`server` is `crust` or `ci/criu`) into `dir` on `port` and
/// waits until it listens (its `--status-fd 1`).
fn start_server(server: &mut Command, dir: &Path, port: u16, parent: Option<&str>, log: &Path) -> Server {
    server.args(["page-server", "--port", &port.to_string(), "--address", "127.0.0.1", "-v4", "-o"]).arg(log).arg("-D").arg(dir);
    if let Some(parent) = parent {
        server.args(["--prev-images-dir", parent]);
    }
    server.args(["--status-fd", "1"]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = server.spawn().unwrap();
    let mut byte = [0u8; 1];
    let _ = child.stdout.take().unwrap().read(&mut byte);
    Server(child)
}

fn bytes_of(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.metadata().unwrap().len()).sum()
}

/// Copies every file of `from` into `to` (the sending side's images beside the pages).
fn merge(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn pre_dump_and_dump_over_the_wire_restore_every_page() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("page-server");
    let binary = compile(&dir, "incremental", &[]);
    let out = dir.join("out");
    let mut command = Command::new(&binary);
    command.arg(&out);
    let (_child, text, mut pipes) = start_with_pipes(&mut command, 1);
    let pid: i32 = text.trim().parse().unwrap();
    let mut target = KillOnDrop(pid);
    let mut modified = pipes.remove(0);
    let (src, dst) = (dir.join("src"), dir.join("dst"));

    let port = free_port();
    let mut server = start_server(&mut crust(), &dst.join("1"), port, None, &dir.join("server-1.log"));
    let pre = crust().args(["pre-dump", "-t", &pid.to_string(), "--page-server", "--port", &port.to_string(), "-D"]).arg(src.join("1")).output().unwrap();
    assert!(pre.status.success(), "pre-dump: {}", String::from_utf8_lossy(&pre.stderr));
    assert!(server.wait().success(), "page server 1");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "pre-dump left the target running");
    signal(pid, libc::SIGUSR2);
    modified.read_exact(&mut [0u8; 1]).unwrap();

    let port = free_port();
    let mut server = start_server(&mut crust(), &dst.join("2"), port, Some("../1"), &dir.join("server-2.log"));
    let dumped = crust()
        .args(["dump", "-t", &pid.to_string(), "--page-server", "--port", &port.to_string(), "--prev-images-dir", "../1", "-D"])
        .arg(src.join("2"))
        .output()
        .unwrap();
    assert!(dumped.status.success(), "dump: {}", String::from_utf8_lossy(&dumped.stderr));
    assert!(server.wait().success(), "page server 2");
    wait_exit(pid);
    target.disarm();
    for side in ["1", "2"] {
        assert_eq!(bytes_of(&src.join(side), "pages-"), 0, "no pages on the sending side ({side})");
    }
    let (full, changed) = (bytes_of(&dst.join("1"), "pages-"), bytes_of(&dst.join("2"), "pages-"));
    assert!(full >= 32 << 20, "the pre-dump sent every page ({full} bytes)");
    assert!((16 << 20..20 << 20).contains(&changed), "the dump sent the changed half only: {changed} bytes against {full}");

    merge(&src.join("1"), &dst.join("1"));
    merge(&src.join("2"), &dst.join("2"));
    let restored = crust().args(["restore", "-d", "-D"]).arg(dst.join("2")).output().unwrap();
    assert!(restored.status.success(), "restore: {}", String::from_utf8_lossy(&restored.stderr));
    let mut target = KillOnDrop(pid);
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0, "restored target's check");
    target.disarm();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n");
}

/// One dump by `dumper` to a page server run by `server`, restored by crust.
fn across(name: &str, dumper: &Path, server: &Path) {
    subreaper();
    let dir = tempdir(name);
    let binary = compile(&dir, "incremental", &[]);
    let out = dir.join("out");
    let mut command = Command::new(&binary);
    command.arg(&out);
    let (_child, text, _pipes) = start_with_pipes(&mut command, 1);
    let pid: i32 = text.trim().parse().unwrap();
    let mut target = KillOnDrop(pid);
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    // CRIU makes neither directory.
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    let port = free_port();
    let mut page_server = start_server(&mut Command::new(server), &dst, port, None, &dir.join("server.log"));
    let dumped = Command::new(dumper)
        .args(["dump", "-t", &pid.to_string(), "--page-server", "--address", "127.0.0.1", "--port", &port.to_string(), "-v4", "-o"])
        .arg(dir.join("dump.log"))
        .arg("-D")
        .arg(&src)
        .output()
        .unwrap();
    assert!(dumped.status.success(), "{name}: dump: {}", String::from_utf8_lossy(&dumped.stderr));
    assert!(page_server.wait().success(), "{name}: page server");
    wait_exit(pid);
    target.disarm();
    assert!(bytes_of(&dst, "pages-") >= 32 << 20, "{name}: the pages went to the page server");
    merge(&src, &dst);
    let restored = crust().args(["restore", "-d", "-D"]).arg(&dst).output().unwrap();
    assert!(restored.status.success(), "{name}: restore: {}", String::from_utf8_lossy(&restored.stderr));
    let mut target = KillOnDrop(pid);
    signal(pid, libc::SIGUSR1);
    assert_eq!(wait_exit(pid), 0, "{name}: restored target's check");
    target.disarm();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PASS\n", "{name}");
}

#[test]
fn page_servers_of_crust_and_criu_take_each_others_pages() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let Some(criu) = reference_criu() else {
        eprintln!("skipped: reference criu not installed (run ci/criu-reference.sh)");
        return;
    };
    let crust_binary = PathBuf::from(env!("CARGO_BIN_EXE_crust"));
    across("page-server-to-criu", &crust_binary, &criu);
    across("page-server-from-criu", &criu, &crust_binary);
}
