//! What the end-to-end tests of `crust` share: the binary, the skip check, a child
//! subreaper, C targets compiled from `tests/data`, and starting one with pipes on
//! chosen fd numbers.
#![allow(dead_code)] // each test file uses a part
#![allow(unsafe_code)]

pub mod mnt_tree;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `crust` binary under test.
pub fn crust() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crust"))
}

/// Why this machine cannot run these tests, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines().any(|l| l.starts_with("Uid:\t0\t")) {
        return Some("needs root (ptrace, clone3 set_tid)".into());
    }
    if Command::new("cc").arg("--version").stdout(Stdio::null()).status().map(|s| !s.success()).unwrap_or(true) {
        return Some("needs a C compiler (cc)".into());
    }
    None
}

/// Makes the test process the child subreaper of what it starts (restored processes
/// end up as its children and are reaped by `wait_exit`).
pub fn subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// A fresh scratch directory for test `name`.
pub fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("crust-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A test's scratch directory: removed when the test ends well (images hold memory and
/// add up), kept with its path printed when the test fails, for a look at its logs.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for a look: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Compiles `tests/data/NAME.c` (with `extra` flags) into `dir/NAME`.
pub fn compile(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let binary = dir.join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}.c"));
    let status = Command::new("cc").args(["-O2", "-o"]).arg(&binary).arg(&source).args(extra).status().unwrap();
    assert!(status.success(), "compile {name}.c");
    binary
}

/// Starts `command` with a pipe's write end on fd 3 (closed by the target once it is
/// ready) and the write ends of `more` pipes on fds 4, 5, ...; returns the child, what
/// it wrote on fd 3, and the read ends of the other pipes.
pub fn start_with_pipes(command: &mut Command, more: usize) -> (Child, String, Vec<std::io::PipeReader>) {
    assert!(more < 16, "at most 16 pipes");
    let (mut ready, ready_w) = std::io::pipe().unwrap();
    let mut writers = vec![OwnedFd::from(ready_w)];
    let mut readers = Vec::new();
    for _ in 0..more {
        let (r, w) = std::io::pipe().unwrap();
        writers.push(OwnedFd::from(w));
        readers.push(r);
    }
    let raw: Vec<i32> = writers.iter().map(|w| w.as_raw_fd()).collect();
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure only calls fcntl and dup2, which are async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            // Each write end first goes above the target numbers, so that placing one
            // never closes another still to be placed, and dup2 never meets an fd
            // already at its number (which would keep close-on-exec).
            let mut high = [0i32; 16];
            for (index, &fd) in raw.iter().enumerate() {
                high[index] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3 + raw.len() as i32);
                if high[index] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (index, &fd) in high[..raw.len()].iter().enumerate() {
                if libc::dup2(fd, 3 + index as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(writers);
    let mut text = String::new();
    ready.read_to_string(&mut text).unwrap();
    (child, text, readers)
}

/// Waits for child (or adopted) `pid` and returns its raw wait status.
pub fn wait_exit(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer for the call.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid {pid}");
    status
}

/// A child that is SIGKILLed and reaped when this guard drops (a failed assertion then
/// leaves nothing running); `disarm` once the test has ended it itself.
pub struct KillOnDrop(pub i32);

impl KillOnDrop {
    /// The test reaped the process itself.
    pub fn disarm(&mut self) {
        self.0 = 0;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 0 {
            signal(self.0, libc::SIGKILL);
            let mut status = 0;
            // SAFETY: status is a valid out-pointer for the call.
            unsafe { libc::waitpid(self.0, &mut status, 0) };
        }
    }
}

/// `kill(pid, sig)`.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: no pointers.
    unsafe {
        libc::kill(pid, sig);
    }
}
