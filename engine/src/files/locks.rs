//! File locks: flock, POSIX (fcntl) and OFD locks, read from the `lock:` lines of
//! /proc/PID/fdinfo/FD (which lists the locks of that open file description and the
//! POSIX locks its process owns on the file) into filelocks.img entries, and taken again
//! by the owning process once its fds are installed.

use crate::sys;
use super::{file_io, FileError};
use crust_images::pb;


/// CRIU's lock kinds (`file_lock_entry.flag`): POSIX and flock as the kernel's FL_*
/// values, OFD locks as CRIU numbers them (4; the kernel's FL_OFDLCK is 1024, which
/// crust wrote before 2026-12-06 and still reads).
pub(crate) const FL_POSIX: u32 = 1;
pub(crate) const FL_FLOCK: u32 = 2;
pub(crate) const FL_OFDLCK: u32 = 4;
const FL_OFDLCK_KERNEL: u32 = 1024;

/// One `lock:` line: kind, read or write, owner pid, start and length (0: to EOF).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockLine {
    pub(crate) flag: u32,
    pub(crate) write: bool,
    pub(crate) pid: i32,
    pub(crate) start: i64,
    pub(crate) len: i64,
}

impl LockLine {
    /// The lock in words: `a POSIX write lock on bytes 0..EOF`.
    pub(crate) fn describe(&self) -> String {
        let kind = match self.flag {
            FL_POSIX => "POSIX",
            FL_FLOCK => "flock",
            _ => "OFD",
        };
        let mode = if self.write { "write" } else { "read" };
        let end = if self.len == 0 { "EOF".to_string() } else { (self.start + self.len - 1).to_string() };
        format!("a {kind} {mode} lock on bytes {}..{end} (owner pid {})", self.start, self.pid)
    }
}

/// Parses the `lock:` lines of an fdinfo text. Pure. `Err` names an unsupported lock.
pub(crate) fn parse_lock_lines(fdinfo: &str) -> Result<Vec<LockLine>, FileError> {
    let mut out = Vec::new();
    for line in fdinfo.lines().filter_map(|l| l.strip_prefix("lock:")) {
        // "1: POSIX  ADVISORY  WRITE 4567 00:2a:1234 0 EOF"; a blocked waiter starts "-> ".
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.get(1) == Some(&"->") {
            continue;
        }
        let bad = || FileError::refused(format!("lock line {line:?}"));
        let flag = match *words.get(1).ok_or_else(bad)? {
            "POSIX" => FL_POSIX,
            "FLOCK" => FL_FLOCK,
            "OFDLCK" => FL_OFDLCK,
            other => return Err(FileError::refused(format!("{other} lock"))),
        };
        if words.get(2) != Some(&"ADVISORY") {
            return Err(FileError::refused(format!("{} lock", words.get(2).unwrap_or(&"?"))));
        }
        let write = match *words.get(3).ok_or_else(bad)? {
            "WRITE" => true,
            "READ" => false,
            other => return Err(FileError::refused(format!("{other} lock"))),
        };
        let pid = words.get(4).and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let start: i64 = words.get(6).and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let len = match *words.get(7).ok_or_else(bad)? {
            "EOF" => 0,
            end => end.parse::<i64>().map_err(|_| bad())? - start + 1,
        };
        out.push(LockLine { flag, write, pid, start, len });
    }
    Ok(out)
}

/// Takes one lock again on `fd` of this process.
pub(crate) fn take_lock(lock: &pb::FileLockEntry) -> Result<(), FileError> {
    let fd = lock.fd;
    let write = lock.r#type == libc::F_WRLCK as u32;
    match lock.flag {
        FL_FLOCK => sys::fd::flock(fd, if write { libc::LOCK_EX } else { libc::LOCK_SH }),
        FL_POSIX | FL_OFDLCK | FL_OFDLCK_KERNEL => {
            let command = if lock.flag == FL_POSIX { libc::F_SETLK } else { libc::F_OFD_SETLK };
            sys::fd::fcntl_lock(fd, command, if write { libc::F_WRLCK } else { libc::F_RDLCK }, lock.start, lock.len)
        }
        other => return Err(FileError::refused(format!("fd {fd}: lock kind {other} is not supported"))),
    }
    .map_err(file_io(format!("fd {fd}: take lock {}..+{}", lock.start, lock.len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines() {
        let text = "pos:\t0\nflags:\t02\nlock:\t1: POSIX  ADVISORY  WRITE 4567 00:2a:1234 10 19\nlock:\t2: FLOCK  ADVISORY  READ  4567 00:2a:1234 0 EOF\nlock:\t3: OFDLCK ADVISORY  WRITE -1 00:2a:1234 0 EOF\n";
        let locks = parse_lock_lines(text).unwrap();
        assert_eq!(locks[0], LockLine { flag: FL_POSIX, write: true, pid: 4567, start: 10, len: 10 });
        assert_eq!(locks[1], LockLine { flag: FL_FLOCK, write: false, pid: 4567, start: 0, len: 0 });
        assert_eq!(locks[2].flag, FL_OFDLCK);
        assert!(parse_lock_lines("lock:\t1: LEASE  ACTIVE    READ 1 00:2a:1 0 EOF\n").is_err());
    }
}
