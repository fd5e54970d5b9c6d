//! `--freeze-cgroup PATH`: the tree stopped through its cgroup's freezer before it is
//! seized, so that no task forks or clones while crust seizes the others.
//!
//! - v1 (`freezer.state`): `FROZEN` written, then the state read in short steps (200 µs
//!   doubling to 5 ms; `FROZEN` written again every 10 reads, a v1 freeze can stall in
//!   FREEZING) until it reads `FROZEN`. A frozen v1 task takes PTRACE_INTERRUPT's
//!   stop only once thawed, so the seize interrupts every thread, thaws, then waits.
//! - unified (`cgroup.freeze`): `1` written, then `cgroup.events` waited on with
//!   poll(POLLPRI) until it says `frozen 1`.
//! (CRIU reads `freezer.state` every 100 ms: on this host the freeze takes 4.5 ms (v1)
//! and 8.5 ms (v2), so its every runc checkpoint sleeps ~100 ms.)
//!
//! The state before the dump is kept: [`Freezer`]'s Drop puts it back (thawed, or
//! frozen again for a tree that was frozen), on every path; a guard process forked
//! before the freeze puts it back if crust is killed (SIGKILL) meanwhile.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{cg_io, dump::FreezerOrigin, CgroupError};
use crate::sys;

/// Which freezer a cgroup has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// v1 `freezer.state`: THAWED, FREEZING, FROZEN.
    V1,
    /// Unified `cgroup.freeze`: 0 or 1, `frozen` in `cgroup.events`.
    Unified,
}

impl Kind {
    fn file(self) -> &'static str {
        match self {
            Kind::V1 => "freezer.state",
            Kind::Unified => "cgroup.freeze",
        }
    }

    fn thawed(self) -> &'static str {
        match self {
            Kind::V1 => "THAWED",
            Kind::Unified => "0",
        }
    }

    fn frozen(self) -> &'static str {
        match self {
            Kind::V1 => "FROZEN",
            Kind::Unified => "1",
        }
    }
}

/// A cgroup crust froze; Drop puts back the state it had.
#[derive(Debug)]
pub(crate) struct Freezer {
    dir: PathBuf,
    kind: Kind,
    origin: String,
    dev_inode: (u64, u64),
    /// A guard process that puts the state back if crust dies (SIGKILL) while the
    /// cgroup is frozen (`sys::spawn_state_guard`): the write end of its pipe, its pid.
    guard: Option<(std::os::fd::OwnedFd, i32)>,
}

impl Freezer {
    /// Freezes the cgroup at `dir` (a path of crust's mount namespace) and waits until it
    /// is frozen, at most `timeout` (then thaws it and fails).
    pub(crate) fn freeze(dir: &Path, timeout: Duration) -> Result<Freezer, CgroupError> {
        let kind = if dir.join("freezer.state").exists() {
            Kind::V1
        } else if dir.join("cgroup.freeze").exists() {
            Kind::Unified
        } else {
            return Err(CgroupError::Refused(format!(
                "--freeze-cgroup {}: neither a v1 freezer cgroup (freezer.state) nor a unified one (cgroup.freeze)",
                dir.display()
            )));
        };
        let origin = read(dir, kind.file())?;
        let dev_inode = sys::cgroup::dev_inode(dir).map_err(cg_io(format!("stat {}", dir.display())))?;
        let mut freezer = Freezer { dir: dir.to_path_buf(), kind, origin, dev_inode, guard: None };
        freezer.guard = Some(freezer.spawn_guard()?);
        let started = Instant::now();
        write(dir, kind.file(), kind.frozen())?;
        match kind {
            Kind::V1 => freezer.wait_v1(timeout)?,
            Kind::Unified => freezer.wait_unified(timeout)?,
        }
        log::info!("froze cgroup {} ({}) in {:?}", dir.display(), kind.file(), started.elapsed());
        Ok(freezer)
    }

    /// The guard that puts the state back if crust dies (SIGKILL) with the cgroup frozen.
    fn spawn_guard(&self) -> Result<(std::os::fd::OwnedFd, i32), CgroupError> {
        let path = self.dir.join(self.kind.file());
        let file = std::fs::OpenOptions::new().write(true).open(&path).map_err(cg_io(format!("open {}", path.display())))?;
        let (read, write) = std::io::pipe().map_err(cg_io("pipe"))?;
        let read = std::os::fd::OwnedFd::from(read);
        let file = std::os::fd::OwnedFd::from(file);
        let pid = sys::spawn_state_guard(&read, &file, self.put_back().as_bytes()).map_err(cg_io("fork the freezer's guard"))?;
        Ok((std::os::fd::OwnedFd::from(write), pid))
    }

    /// The state to put back: the one before the dump.
    fn put_back(&self) -> &'static str {
        if self.origin == self.kind.thawed() {
            self.kind.thawed()
        } else {
            self.kind.frozen()
        }
    }

    fn wait_v1(&self, timeout: Duration) -> Result<(), CgroupError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(200);
        for round in 1.. {
            let state = read(&self.dir, "freezer.state")?;
            if state == "FROZEN" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.timed_out(timeout, &state));
            }
            if round % 10 == 0 {
                write(&self.dir, "freezer.state", "FROZEN")?;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        Ok(())
    }

    fn wait_unified(&self, timeout: Duration) -> Result<(), CgroupError> {
        let path = self.dir.join("cgroup.events");
        let mut events = File::open(&path).map_err(cg_io(format!("open {}", path.display())))?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut text = String::new();
            events.rewind().and_then(|()| events.read_to_string(&mut text)).map_err(cg_io(format!("read {}", path.display())))?;
            if text.lines().any(|line| line.trim() == "frozen 1") {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timed_out(timeout, text.lines().find(|l| l.starts_with("frozen")).unwrap_or("frozen ?")));
            }
            sys::cgroup::wait_changed(&events, (deadline - now).min(Duration::from_millis(50))).map_err(cg_io(format!("poll {}", path.display())))?;
        }
    }

    fn timed_out(&self, timeout: Duration, state: &str) -> CgroupError {
        CgroupError::Refused(format!(
            "--freeze-cgroup {}: not frozen within {:?} ({} reads {state:?}); thawed again (--timeout sets the wait)",
            self.dir.display(),
            timeout,
            self.kind.file()
        ))
    }

    /// The tasks (host tids) in the cgroup and every cgroup below it.
    pub(crate) fn tasks(&self) -> Result<Vec<i32>, CgroupError> {
        let file = match self.kind {
            Kind::V1 => "tasks",
            Kind::Unified => "cgroup.threads",
        };
        let mut out = Vec::new();
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let text = std::fs::read_to_string(dir.join(file)).map_err(cg_io(format!("read {}", dir.join(file).display())))?;
            out.extend(text.split_whitespace().filter_map(|t| t.parse::<i32>().ok()));
            let entries = std::fs::read_dir(&dir).map_err(cg_io(format!("list {}", dir.display())))?;
            pending.extend(entries.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Thaws the cgroup now (its tasks are seized and interrupted: a v1 freezer delivers
    /// their stops only once they run).
    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        write(&self.dir, self.kind.file(), self.kind.thawed())
    }

    /// Whether a v1 freezer holds back the stops of its tasks until thawed.
    pub(crate) fn delays_stops(&self) -> bool {
        self.kind == Kind::V1
    }

    /// What cgroup.img records for this cgroup: its state before the dump.
    pub(crate) fn origin(&self) -> FreezerOrigin {
        let value = match self.kind {
            // A v1 freeze under way counts as frozen.
            Kind::V1 if self.origin != "THAWED" => "FROZEN".to_string(),
            _ => self.origin.clone(),
        };
        FreezerOrigin { dir: self.dev_inode, file: self.kind.file(), value }
    }

    /// The cgroup's path.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let state = self.put_back();
        if let Err(error) = write(&self.dir, self.kind.file(), state) {
            log::warn!("--freeze-cgroup {}: put back {state}: {error}", self.dir.display());
        }
        if let Some((pipe, pid)) = self.guard.take() {
            let _ = std::io::Write::write_all(&mut std::fs::File::from(pipe), b"d");
            let _ = sys::wait_thread(pid);
        }
    }
}

fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    Ok(std::fs::read_to_string(&path).map_err(cg_io(format!("read {}", path.display())))?.trim().to_string())
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(cg_io(format!("write {value} into {}", path.display())))
}
