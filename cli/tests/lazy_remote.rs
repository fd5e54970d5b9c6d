//! Lazy migration on one machine (`dump --lazy-pages`, `lazy-pages --page-server`): the
//! target (`tests/data/incremental.c`, 32 MiB of pages each stamped with its index) runs
//! as the init of a pid namespace of its own. It is pre-dumped over a page server,
//! restamps every other page, and is dumped with `--lazy-pages --prev-images-dir`: its
//! pages stay in the frozen source (PE_LAZY), which compares them with the pre-dump's
//! digests when the destination asks (`CHANGED`) and sends only the changed half. The
//! destination restores into a new pid namespace (the source still holds the old pids)
//! while the daemon fetches those pages from the source and takes the others from the
//! pre-dump, and the target checks every page. The source's dump ends (killing the
//! frozen original) once the daemon has every page. With the reference CRIU
//! (`ci/criu`) installed, CRIU's lazy-pages daemon and restore take crust's source too.
//! Skipped where the kernel has no userfaultfd.

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

/// A free TCP port on loopback (bound, then let go for the server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A background crust or CRIU that is killed and reaped if the test fails first.
struct Background(Child);

impl Background {
    /// Spawns `command` with `--status-fd 1` and waits for its ready byte.
    fn ready(command: &mut Command) -> Background {
        command.args(["--status-fd", "1"]).stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut byte = [0u8; 1];
        let _ = child.stdout.take().unwrap().read(&mut byte);
        Background(child)
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The target as the init of a new pid namespace: the spawned process unshares its
/// pid namespace, forks the target (the namespace's init) and exits; returns its pid
/// here and the pipe it closes after SIGUSR2's restamp. Its parent is then this
/// test (a subreaper).
fn start_in_pid_namespace(binary: &Path, out: &Path) -> (i32, std::io::PipeReader) {
    let (mut pid_r, pid_w) = std::io::pipe().unwrap();
    let pid_w = std::os::fd::OwnedFd::from(pid_w);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&pid_w);
    let mut command = Command::new(binary);
    command.arg(out);
    // SAFETY: unshare, fork, write and _exit are async-signal-safe; the forked child
    // goes on to the exec, the other ends at once.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                child => {
                    let bytes = child.to_ne_bytes();
                    libc::write(raw, bytes.as_ptr().cast(), bytes.len());
                    libc::_exit(0)
                }
            }
        });
    }
    let (mut first, text, mut pipes) = start_with_pipes(&mut command, 1);
    drop(pid_w);
    assert_eq!(text.trim(), "1", "the target is its namespace's init");
    assert!(first.wait().unwrap().success(), "the process that made the namespace");
    let mut bytes = [0u8; 4];
    pid_r.read_exact(&mut bytes).unwrap();
    (i32::from_ne_bytes(bytes), pipes.remove(0))
}

fn bytes_of(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.metadata().unwrap().len()).sum()
}

/// Copies every file of `from` into `to` (the sending side's images beside the pages).
fn merge(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The source side of a run: pre-dump over a page server into `dst/1`, restamp, `dump
/// --lazy-pages` into `src/2` (serving on `port`); `dst/2` gets its images and the
/// parent link.
struct Source {
    /// The frozen original, killed if the test fails before the source's dump ends.
    original: KillOnDrop,
    dump: Background,
    dir: common::TempDir,
    out: PathBuf,
    pid: i32,
    port: u16,
}

fn lazy_source(name: &str) -> Source {
    subreaper();
    let dir = tempdir(name);
    let binary = compile(&dir, "incremental", &[]);
    let out = dir.join("out");
    let (pid, mut modified) = start_in_pid_namespace(&binary, &out);
    let target = KillOnDrop(pid);
    let (src, dst) = (dir.join("src"), dir.join("dst"));

    let port = free_port();
    let mut server = Background::ready(crust().args(["page-server", "--address", "127.0.0.1", "--port", &port.to_string(), "-D"]).arg(dst.join("1")));
    let pre = crust().args(["pre-dump", "-t", &pid.to_string(), "--page-server", "--address", "127.0.0.1", "--port", &port.to_string(), "-D"]).arg(src.join("1")).output().unwrap();
    assert!(pre.status.success(), "{name}: pre-dump: {}", String::from_utf8_lossy(&pre.stderr));
    assert!(server.wait().success(), "{name}: page server");
    signal(pid, libc::SIGUSR2);
    modified.read_exact(&mut [0u8; 1]).unwrap();

    let port = free_port();
    let dump = Background::ready(
        crust()
            .args(["dump", "-t", &pid.to_string(), "--lazy-pages", "--address", "127.0.0.1", "--port", &port.to_string(), "--prev-images-dir", "../1"])
            .args(["-v4", "-o", "dump.log", "-D"])
            .arg(src.join("2")),
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "{name}: the source holds the frozen target");
    merge(&src.join("1"), &dst.join("1"));
    merge(&src.join("2"), &dst.join("2"));
    std::os::unix::fs::symlink("../1", dst.join("2/parent")).unwrap();
    assert!(bytes_of(&dst.join("2"), "pages-") < 1 << 20, "{name}: the changed half stayed at the source");
    Source { original: target, dir, out, pid, dump, port }
}

/// After a restore: the restored target checks every page; the source's dump ends, its
/// frozen original gone.
fn check(name: &str, mut source: Source, mut restored: KillOnDrop, sent: std::ops::Range<u64>) {
    let restored_pid = restored.0;
    signal(restored_pid, libc::SIGUSR1);
    assert_eq!(wait_exit(restored_pid), 0, "{name}: restored target's check");
    restored.disarm();
    assert_eq!(std::fs::read_to_string(&source.out).unwrap(), "PASS\n", "{name}: every page");
    assert!(source.dump.wait().success(), "{name}: the source's dump ends once every page is fetched");
    // The dump killed it; this subreaper reaps it.
    wait_exit(source.pid);
    source.original.disarm();
    let log = std::fs::read_to_string(source.dir.join("src/2/dump.log")).unwrap();
    let sent_range = sent;
    let line = log.lines().find(|l| l.contains("pages sent in")).unwrap_or_else(|| panic!("{name}: the source's summary: {log}"));
    let pages: u64 = line.split("lazy pages: ").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(sent_range.contains(&pages), "{name}: the source sent {sent_range:?} pages: {line}");
}

#[test]
fn lazy_migration_fetches_the_changed_half_from_the_source() {
    if let Some(reason) = skip_reason().or_else(no_userfaultfd) {
        eprintln!("skipped: {reason}");
        return;
    }
    let source = lazy_source("lazy-remote");
    let images = source.dir.join("dst/2");
    let mut daemon = Background::ready(
        Command::new(env!("CARGO_BIN_EXE_crust"))
            .args(["lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", &source.port.to_string(), "-v4", "-o", "lazy.log", "-D"])
            .arg(&images),
    );
    let pidfile = source.dir.join("restored.pid");
    let restored = crust().args(["restore", "--lazy-pages", "-d", "--pidfile"]).arg(&pidfile).arg("-D").arg(&images).output().unwrap();
    assert!(restored.status.success(), "restore --lazy-pages: {}", String::from_utf8_lossy(&restored.stderr));
    let restored = KillOnDrop(std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap());
    assert!(daemon.wait().success(), "the daemon ends once every page is in");
    let log = std::fs::read_to_string(images.join("lazy.log")).unwrap();
    let summary = log.lines().find(|l| l.contains("from the source")).unwrap_or_else(|| panic!("the daemon's summary: {log}"));
    let fetched: u64 = summary.split(" from the source").next().and_then(|s| s.split_whitespace().last()).and_then(|n| n.parse().ok()).unwrap();
    assert!((4096..4096 + 256).contains(&fetched), "the daemon fetched the changed half (4096 pages): {summary}");
    // Only the changed half crosses: the source compares with the parent's digests.
    check("lazy-remote", source, restored, 4096..4096 + 256);
}

#[test]
fn criu_lazy_pages_and_restore_take_crust_s_source() {
    if let Some(reason) = skip_reason().or_else(no_userfaultfd) {
        eprintln!("skipped: {reason}");
        return;
    }
    let Some(criu) = reference_criu() else {
        eprintln!("skipped: reference criu not installed (run ci/criu-reference.sh)");
        return;
    };
    let source = lazy_source("lazy-remote-criu");
    let images = source.dir.join("dst/2");
    let mut daemon = Background::ready(
        Command::new(&criu)
            .args(["lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", &source.port.to_string(), "-v4", "-o", "lazy.log", "-D"])
            .arg(&images),
    );
    let pidfile = source.dir.join("restored.pid");
    let restored = Command::new(&criu)
        .args(["restore", "--lazy-pages", "-d", "-v4", "-o", "restore.log", "--pidfile"])
        .arg(&pidfile)
        .arg("-D")
        .arg(&images)
        .output()
        .unwrap();
    assert!(restored.status.success(), "criu restore --lazy-pages: {}", String::from_utf8_lossy(&restored.stderr));
    let restored = KillOnDrop(std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap());
    assert!(daemon.wait().success(), "criu lazy-pages ends once every page is in");
    // CRIU's daemon fetches every page left at the source.
    check("lazy-remote-criu", source, restored, 8192..8192 + 256);
}
