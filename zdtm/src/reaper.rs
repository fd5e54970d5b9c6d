//! The harness as a child subreaper: every process it starts, and everything they leave
//! behind (daemonized tests, restored trees), ends up as its child, and a background thread
//! reaps each one the moment it exits and files the status by pid.
//!
//! Unsafe here: `prctl(PR_SET_CHILD_SUBREAPER)`, `waitid`/`waitpid`, `kill`. Guarantee: the
//! reaper thread is the only caller of `waitpid` in the harness process once a child has
//! started, so nobody else may use `std::process::Child::wait`; wait through
//! [`Reaper::wait_exit`] instead, and start children with [`Reaper::spawn`]: std waits
//! for a child whose exec failed itself (and panics if it finds it gone), so the reaper
//! only looks at an exited child (`WNOWAIT`) while no spawn is in progress and reaps it
//! after the spawn is over.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

#[derive(Default)]
struct Exits {
    by_pid: HashMap<i32, ExitStatus>,
}

/// Handle on the reaper thread. Clone freely.
#[derive(Clone)]
pub struct Reaper {
    shared: Arc<(Mutex<Exits>, Condvar)>,
    /// Held while `std::process::Command::spawn` runs (it may wait for its child).
    spawning: Arc<Mutex<()>>,
}

impl Reaper {
    /// Makes this process a child subreaper and starts the reaping thread.
    #[doc(alias = "PR_SET_CHILD_SUBREAPER")]
    pub fn start() -> anyhow::Result<Self> {
        // SAFETY: prctl with integer arguments only; no memory is passed to the kernel.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            anyhow::bail!(
                "prctl(PR_SET_CHILD_SUBREAPER): {}",
                std::io::Error::last_os_error()
            );
        }
        let reaper = Reaper {
            shared: Arc::new((Mutex::new(Exits::default()), Condvar::new())),
            spawning: Arc::new(Mutex::new(())),
        };
        let thread_reaper = reaper.clone();
        std::thread::Builder::new()
            .name("zdtm-reaper".into())
            .spawn(move || thread_reaper.reap_forever())
            .map_err(|error| anyhow::anyhow!("spawn reaper thread: {error}"))?;
        Ok(reaper)
    }

    fn reap_forever(&self) {
        let (exits, wakeup) = &*self.shared;
        loop {
            // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid writes one siginfo_t into `info`, which lives on this stack;
            // WNOWAIT leaves the child a zombie.
            let rc = unsafe {
                libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT | libc::__WALL)
            };
            // SAFETY: waitid filled `info` for a child that changed state.
            let exited = if rc == 0 { unsafe { info.si_pid() } } else { 0 };
            if exited > 0 {
                // A spawn in progress may be about to wait for this very child itself.
                let spawning = self.spawning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                // Reaped and recorded under one lock: whoever sees the pid gone from
                // /proc and then forgets its exit (a restore about to bring the pid
                // back) finds the exit recorded, never recorded after it forgot.
                let mut guard = exits
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut raw_status = 0;
                // SAFETY: waitpid writes one int into `raw_status`, which lives on this stack.
                let pid = unsafe { libc::waitpid(exited, &mut raw_status, libc::WNOHANG | libc::__WALL) };
                if pid == exited {
                    let status = if libc::WIFSIGNALED(raw_status) {
                        ExitStatus::Signaled(libc::WTERMSIG(raw_status))
                    } else {
                        ExitStatus::Exited(libc::WEXITSTATUS(raw_status))
                    };
                    guard.by_pid.insert(pid, status);
                    wakeup.notify_all();
                }
                drop(guard);
                drop(spawning);
                continue;
            }
            // ECHILD (no children right now) or EINTR: nothing to reap yet. Idle on the
            // condvar; a new child wakes us through `child_started`, or the timeout does.
            let guard = exits
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = wakeup.wait_timeout(guard, Duration::from_millis(20));
        }
    }

    /// `command.spawn()`, safe against the reaper: while it runs the reaper reaps
    /// nothing, so when the exec fails std can wait for its child itself.
    pub fn spawn(&self, command: &mut std::process::Command) -> std::io::Result<std::process::Child> {
        let spawning = self.spawning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let child = command.spawn();
        drop(spawning);
        self.child_started();
        child
    }

    /// Tells the reaper a child was just started, so it stops idling.
    pub fn child_started(&self) {
        self.shared.1.notify_all();
    }

    /// Waits until `pid` has been reaped, or `timeout` passes (`None`). Takes the status
    /// out of the table, so the pid can be reused by a restore.
    pub fn wait_exit(&self, pid: i32, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let (exits, wakeup) = &*self.shared;
        let mut guard = exits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            if let Some(status) = guard.by_pid.remove(&pid) {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = wakeup
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Forgets any recorded exit of `pid` (used before a restore brings the pid back).
    pub fn forget(&self, pid: i32) {
        let mut guard = self
            .shared
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.by_pid.remove(&pid);
    }

    /// Whether `pid` is alive and our child (not yet reaped, not a zombie; a thread group
    /// whose leader exited counts as alive).
    pub fn is_alive_child(&self, pid: i32) -> bool {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return false;
        };
        let fields = crate::procfs::parse_key_values(&status);
        let parent_is_us =
            fields.get("PPid").map(String::as_str) == Some(&std::process::id().to_string());
        // A leader that exited while its other threads run also shows `Z`: alive.
        let threads: u32 = fields
            .get("Threads")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        let zombie = threads <= 1
            && fields
                .get("State")
                .is_some_and(|state| state.starts_with('Z'));
        parent_is_us && !zombie
    }

    /// Sends `signal` to `pid`, but only while it is still our child, so a recycled pid
    /// belonging to someone else is never hit.
    #[doc(alias = "kill")]
    pub fn signal_child(&self, pid: i32, signal: i32) -> bool {
        if !self.is_alive_child(pid) {
            return false;
        }
        // SAFETY: kill takes integers only.
        unsafe { libc::kill(pid, signal) == 0 }
    }

    /// SIGKILLs `pid` if it is still our child and waits for the reaper to collect it.
    pub fn kill_and_reap(&self, pid: i32) {
        self.signal_child(pid, libc::SIGKILL);
        // Still ours, alive or a zombie (killed already, say by `kill_tree`): wait until
        // the reaper has recorded its exit, or that exit would be recorded after the
        // `forget` below and taken later for the exit of a restored process with its pid.
        let ours = std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
            crate::procfs::parse_key_values(&status).get("PPid").map(String::as_str) == Some(&std::process::id().to_string())
        });
        if ours {
            let _ = self.wait_exit(pid, Duration::from_secs(10));
        }
        self.forget(pid);
    }
}
