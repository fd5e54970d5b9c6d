//! The container flavor's raw calls. Running a closure inside a namespace of another
//! process: a scoped thread `setns`es into `/proc/PID/ns/KIND` and runs it there, so the
//! harness's other threads stay where they are (threads may enter network, UTS and
//! cgroup namespaces; a mount or user namespace needs a single-threaded caller).
//! `uname`, `flock` of the run's slot lock, `chown` of a test's directory, `kill`, and
//! the probe for `pidfd_open(PIDFD_THREAD)` (every flavor's requirements).
//!
//! Unsafe here: `setns`, `uname`, `flock`, `chown`, `kill`, `pidfd_open`. Guarantee: `setns` gets an fd
//! this module opened and one `CLONE_NEW*` flag, and changes only the calling thread,
//! which ends with the closure; `uname` writes into a zeroed `utsname` on the stack;
//! `flock`, `kill` and `pidfd_open` take integers (the pidfd is closed at once); `chown` a
//! NUL-terminated path that outlives the call.
#![allow(unsafe_code)]

use anyhow::Context;
use std::os::fd::AsRawFd;

/// A namespace a thread may enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// `net`.
    Net,
    /// `uts`.
    Uts,
    /// `cgroup`.
    Cgroup,
}

impl Namespace {
    fn file(self) -> &'static str {
        match self {
            Namespace::Net => "net",
            Namespace::Uts => "uts",
            Namespace::Cgroup => "cgroup",
        }
    }

    fn flag(self) -> libc::c_int {
        match self {
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP,
        }
    }
}

/// Runs `work` in a thread that entered `kind` of process `pid`.
#[doc(alias = "setns")]
pub fn in_namespace_of<T: Send>(
    pid: i32,
    kind: Namespace,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let path = format!("/proc/{pid}/ns/{}", kind.file());
    let namespace = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns with an fd we own and one namespace flag; it changes this
                // thread only, which ends once `work` returns.
                if unsafe { libc::setns(namespace.as_raw_fd(), kind.flag()) } != 0 {
                    return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {path}"));
                }
                work()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {path} panicked"))?
    })
}

/// `uname()`'s nodename and domainname of the calling thread's UTS namespace.
#[doc(alias = "uname")]
pub fn host_and_domain_name() -> anyhow::Result<(String, String)> {
    // SAFETY: utsname is plain bytes; all-zero is a valid value.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we pass, which lives for the call.
    if unsafe { libc::uname(&mut names) } != 0 {
        return Err(std::io::Error::last_os_error()).context("uname");
    }
    let text = |field: &[libc::c_char]| {
        let bytes: Vec<u8> = field.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok((text(&names.nodename), text(&names.domainname)))
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(true)` when this process now holds the lock,
/// `Ok(false)` when another does.
#[doc(alias = "flock")]
pub fn try_lock(file: &std::fs::File) -> std::io::Result<bool> {
    // SAFETY: flock on an fd we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// `chown(path, uid, gid)`.
pub fn chown(path: &std::path::Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")?;
    // SAFETY: c_path is NUL-terminated and outlives the call.
    if unsafe { libc::chown(c_path.as_ptr(), uid, gid) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("chown {uid}:{gid} {}", path.display()));
    }
    Ok(())
}

/// `kill(pid, SIGKILL)`.
#[doc(alias = "kill")]
pub fn kill_hard(pid: i32) {
    // SAFETY: kill takes integers only.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Whether the kernel takes `pidfd_open(pid, PIDFD_THREAD)` (Linux 6.9; the flag's value
/// is O_EXCL), with which crust reaches the fds of a process whose leader thread exited.
pub fn has_pidfd_thread() -> bool {
    // SAFETY: pidfd_open takes two integers; the fd it returns is ours and closed here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id() as libc::c_long, libc::O_EXCL as libc::c_long) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd was just returned to us and nothing else holds it.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) });
    true
}
