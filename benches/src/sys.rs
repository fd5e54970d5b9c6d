//! The few raw process calls the harness needs that std lacks: pipes kept across exec,
//! wait4 with resource usage, signals to a process group, becoming a child subreaper.
//! Each wraps one libc call and checks its result.
#![allow(unsafe_code)]

use std::io;
use std::time::Duration;

/// `pipe(2)` without `O_CLOEXEC`: both ends are inherited by the next exec'd child.
/// Returns `(read_end, write_end)`.
pub fn inheritable_pipe() -> io::Result<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints for the kernel to fill.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// `close(2)`.
pub fn close(fd: i32) {
    // SAFETY: closing an fd this harness opened and owns; no Rust object wraps it.
    unsafe { libc::close(fd) };
}

/// Reads `fd` until end of file (every writer closed it).
pub fn read_until_eof(fd: i32) -> io::Result<()> {
    let mut buffer = [0u8; 64];
    loop {
        // SAFETY: buffer is valid for writes of its length.
        let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        match n {
            0 => return Ok(()),
            n if n > 0 => continue,
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// What `wait4(2)` reports about a child that ended.
#[derive(Debug, Clone, Copy)]
pub struct ChildUsage {
    /// Exit code, or 128 + signal number.
    pub code: i32,
    /// Peak resident set size of the child (and its waited-for descendants), KiB.
    pub max_rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// `wait4(pid, &status, 0, &rusage)`: waits for one child and returns its usage.
#[doc(alias = "wait4")]
pub fn wait_child(pid: i32) -> io::Result<ChildUsage> {
    let mut status = 0i32;
    // SAFETY: rusage is plain old data; zeroes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc >= 0 {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok(ChildUsage { code, max_rss_kib: usage.ru_maxrss as u64, cpu: time(usage.ru_utime) + time(usage.ru_stime) })
}

/// `waitpid(-1, WNOHANG)` until no ended child is left; returns how many were reaped.
pub fn reap_ended_children() -> usize {
    let mut reaped = 0;
    loop {
        let mut status = 0;
        // SAFETY: status is valid for writes.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if rc <= 0 {
            return reaped;
        }
        reaped += 1;
    }
}

/// `kill(pid, signal)`; true when the signal was sent.
pub fn send_signal(pid: i32, signal: i32) -> bool {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: restored processes whose restorer exits
/// (`restore -d`) become our children, so we can reap them.
#[doc(alias = "PR_SET_CHILD_SUBREAPER")]
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    // SAFETY: isatty takes an fd number.
    unsafe { libc::isatty(1) == 1 }
}

/// `madvise(MADV_POPULATE_WRITE)` over `bytes`: every page faulted in writable at once
/// (what crust's restorer does before it reads pages into an area).
pub fn populate_write(bytes: &mut [u8]) -> io::Result<()> {
    let page = 4096usize;
    let start = (bytes.as_mut_ptr() as usize).div_ceil(page) * page;
    let end = (bytes.as_mut_ptr() as usize + bytes.len()) / page * page;
    if end <= start {
        return Ok(());
    }
    // SAFETY: the range lies inside `bytes`, which this call borrows mutably; populating
    // changes no byte.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resets this process's peak resident set (`/proc/self/clear_refs` 5): a child spawned
/// later would otherwise report it as its own peak (exec records the old memory's).
pub fn reset_peak_rss() -> io::Result<()> {
    std::fs::write("/proc/self/clear_refs", b"5")
}
