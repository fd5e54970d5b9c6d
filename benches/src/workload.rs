//! The processes a benchmark checkpoints: `workloads/workload.c`, started in its own
//! session with stdio on /dev/null, ready when it closes the ready pipe, and verified after
//! restore by the summary it writes on SIGUSR1 (memory checksum, threads, children, fds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::sys;

/// The workload binary built by `build.rs`.
pub fn workload_binary() -> PathBuf {
    PathBuf::from(env!("CRUST_BENCH_WORKLOAD"))
}

/// One kind of process to checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Name in the table: `idle`, `anon-1G`, `vmas-10000`, ...
    pub name: String,
    /// The workload program's KIND argument.
    pub kind: &'static str,
    /// Its COUNT argument (bytes for `anon`).
    pub count: u64,
    /// Dumped with `--leave-running`: the original must still be intact after the dump
    /// (checked before it is killed for the restore).
    pub leave_running: bool,
}

impl Workload {
    /// An idle small process.
    pub fn idle() -> Workload {
        Workload { name: "idle".into(), kind: "idle", count: 0, leave_running: false }
    }

    /// `bytes` of touched anonymous memory (distinct non-zero pages).
    pub fn anon(bytes: u64) -> Workload {
        Workload { name: format!("anon-{}", size_label(bytes)), kind: "anon", count: bytes, leave_running: false }
    }

    /// The same, dumped with `--leave-running` (named `anon-1G-R`).
    pub fn anon_leave_running(bytes: u64) -> Workload {
        Workload { name: format!("anon-{}-R", size_label(bytes)), leave_running: true, ..Workload::anon(bytes) }
    }

    /// Any other kind with a count: `vmas`, `threads`, `tree`, `fds`.
    pub fn counted(kind: &'static str, count: u64) -> Workload {
        Workload { name: format!("{kind}-{count}"), kind, count, leave_running: false }
    }

    /// Anonymous memory size, for the time-against-size plot.
    pub fn anon_bytes(&self) -> Option<u64> {
        (self.kind == "anon").then_some(self.count)
    }
}

/// `64M`, `1G`, ...
pub fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{}G", bytes >> 30)
    } else {
        format!("{}M", bytes >> 20)
    }
}

/// Parses `64M`, `1G`, `4096K`, or plain bytes.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = digits.parse().with_context(|| format!("size {text:?}: expected e.g. 64M or 1G"))?;
    Ok(value << shift)
}

/// A started workload process.
pub struct Running {
    /// Its pid (and session and process group id).
    pub pid: i32,
    /// The summary it wrote when ready.
    pub expected: String,
    result_path: PathBuf,
    /// Waits for the original process from the start, so a dump that kills it and waits
    /// for it to be gone never waits on a zombie we hold (we are its parent).
    waiter: Option<std::thread::JoinHandle<()>>,
    /// Already killed and reaped.
    killed: bool,
}

impl Running {
    /// Starts `workload` and waits until it is ready. `scratch` holds its summary files
    /// (not the images directory: nothing of the harness must end up in the images).
    pub fn start(workload: &Workload, scratch: &Path) -> anyhow::Result<Running> {
        let result_path = scratch.join(format!("{}.summary", workload.name));
        for path in [result_path.clone(), ready_path(&result_path)] {
            let _ = std::fs::remove_file(path);
        }
        let (ready_read, ready_write) = sys::inheritable_pipe().context("ready pipe")?;
        let spawned = Command::new(workload_binary())
            .arg(ready_read.to_string())
            .arg(ready_write.to_string())
            .arg(&result_path)
            .arg(workload.kind)
            .arg(workload.count.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        sys::close(ready_write);
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                sys::close(ready_read);
                return Err(error).context("start workload");
            }
        };
        let pid = child.id() as i32;
        let read = sys::read_until_eof(ready_read);
        sys::close(ready_read);
        read.context("wait for the workload's ready pipe")?;
        let expected = std::fs::read_to_string(ready_path(&result_path))
            .with_context(|| format!("workload {} (pid {pid}) died before it was ready", workload.name))?;
        let waiter = std::thread::spawn(move || {
            let _ = sys::wait_child(pid);
        });
        Ok(Running { pid, expected, result_path, waiter: Some(waiter), killed: false })
    }

    /// Reaps the workload after a dump killed it (it was our child).
    pub fn reap_after_dump(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            sys::send_signal(self.pid, libc::SIGKILL);
            let _ = waiter.join();
        }
        // The rest of a tree was killed by the dump too and came to us (subreaper): reap
        // it, or its pids stay taken and the restore finds them busy.
        self.reap_group();
    }

    /// Reaps ended children until no process of the workload's process group is left.
    fn reap_group(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            sys::reap_ended_children();
            if !sys::send_signal(-self.pid, 0) && !sys::send_signal(self.pid, 0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Asks the (restored) process for its summary and compares it with the one it gave
    /// when ready.
    pub fn verify(&self, timeout: Duration) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.result_path);
        if !sys::send_signal(self.pid, libc::SIGUSR1) {
            bail!("restored pid {} is not there to verify", self.pid);
        }
        let started = Instant::now();
        let mut last_signal = Instant::now();
        let mut resent = false;
        loop {
            if let Ok(summary) = std::fs::read_to_string(&self.result_path) {
                if summary == self.expected && resent {
                    bail!("restored pid {} lost the SIGUSR1 sent right after restore; a second one was answered", self.pid);
                }
                if summary == self.expected {
                    return Ok(());
                }
                bail!("restored pid {} differs: before {:?}, after {:?}", self.pid, self.expected.trim(), summary.trim());
            }
            if started.elapsed() > timeout {
                bail!("restored pid {} wrote no summary within {timeout:?} of SIGUSR1", self.pid);
            }
            if !resent && last_signal.elapsed() > Duration::from_secs(5) {
                sys::send_signal(self.pid, libc::SIGUSR1);
                last_signal = Instant::now();
                resent = true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills the process, its session's process group, and reaps whatever ended.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        self.killed = true;
        sys::send_signal(-self.pid, libc::SIGKILL);
        sys::send_signal(self.pid, libc::SIGKILL);
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.join();
        }
        // Restored processes became our children (subreaper): reap them.
        self.reap_group();
        for path in [self.result_path.clone(), ready_path(&self.result_path)] {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.killed {
            self.kill_now();
        }
    }
}

fn ready_path(result_path: &Path) -> PathBuf {
    let mut name = result_path.as_os_str().to_owned();
    name.push(".ready");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(size_label(256 << 20), "256M");
        assert_eq!(size_label(1 << 30), "1G");
        assert!(parse_size("lots").is_err());
    }
}
