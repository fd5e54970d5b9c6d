//! waitpid for traced threads and children: the one wrapper of its kind, since nix's
//! `WaitStatus` holds a `Signal`, which has no real-time signals, and a traced thread
//! stops with whatever signal it was sent.
#![allow(unsafe_code)]

use std::io;

/// How a waited-for thread changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEvent {
    /// Exited with a status.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// Stopped: the raw status word (signal in bits 8-15, ptrace event in bits 16-23).
    Stopped { signal: i32, event: i32 },
}

/// `waitpid(tid, __WALL)`: waits for the next change of a traced or child thread.
#[doc(alias = "waitpid")]
pub fn wait_thread(tid: i32) -> io::Result<WaitEvent> {
    let mut status = 0;
    loop {
        // SAFETY: the kernel writes the status word into `status`.
        let rc = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        break;
    }
    Ok(decode_status(status))
}

/// `waitpid(tid, __WALL | WNOHANG)`: the next change of a traced or child thread if
/// there is one already, without waiting.
pub fn try_wait_thread(tid: i32) -> io::Result<Option<WaitEvent>> {
    let mut status = 0;
    loop {
        // SAFETY: the kernel writes the status word into `status`.
        let rc = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        return Ok((rc != 0).then(|| decode_status(status)));
    }
}

/// `waitpid(-1, __WALL)`: waits for the next change of any traced task or child.
pub fn wait_any() -> io::Result<(i32, WaitEvent)> {
    let mut status = 0;
    let pid = loop {
        // SAFETY: the kernel writes the status word into `status`.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        break rc;
    };
    Ok((pid, decode_status(status)))
}

fn decode_status(status: i32) -> WaitEvent {
    if libc::WIFEXITED(status) {
        WaitEvent::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        WaitEvent::Signaled(libc::WTERMSIG(status))
    } else {
        WaitEvent::Stopped { signal: (status >> 8) & 0xff, event: (status >> 16) & 0xff }
    }
}

